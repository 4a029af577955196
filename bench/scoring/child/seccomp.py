"""A seccomp filter for the sandbox: no sockets but Unix ones, no new namespaces, no mounts, no tracing, no bpf,
no io_uring, no memfd.

No IP (or vsock, netlink, packet) socket means no network even where no network namespace can be made (a
container without CAP_SYS_ADMIN). Without Landlock (the stock Raspberry Pi OS kernel has none) a program could
otherwise create a user namespace, become root in it and mount a tmpfs of its own, escaping the size of /tmp; the
other calls are kernel surface a HumanEval answer never needs. Denied calls fail with EPERM; ``clone3`` with ENOSYS
so the C library falls back to ``clone``, whose flags the filter can see. Syscall numbers from the kernel's tables
(x86_64 syscall_64.tbl, asm-generic unistd.h for arm64).
"""

from __future__ import annotations

import ctypes
import os
import struct

_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}  # AUDIT_ARCH_*
_DENIED = {  # name: (x86_64, aarch64)
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "chroot": (161, 51), "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "bpf": (321, 280), "perf_event_open": (298, 241), "add_key": (248, 217), "request_key": (249, 218),
    "keyctl": (250, 219), "userfaultfd": (323, 282), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "memfd_create": (319, 279), "memfd_secret": (447, 447),  # memory-backed files would escape the tmpfs's size
}
_CLONE, _CLONE3, _SOCKET = (56, 220), (435, 435), (41, 198)
_AF_UNIX = 1
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_NEW_NAMESPACE = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
_X32_BIT = 0x40000000
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions; jumps to the labelled returns are resolved at the end."""
    arch = list(_ARCH).index(machine)
    code: list[tuple] = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, _ARCH[machine]), (_RET, 0, 0, _KILL),
                         (_LD_W_ABS, 0, 0, 0)]
    if machine == "x86_64":
        code.append((_JGE, "deny", 0, _X32_BIT))
    code += [(_JEQ, "deny", 0, numbers[arch]) for numbers in _DENIED.values()]
    code += [(_JEQ, "nosys", 0, _CLONE3[arch]), (_JEQ, "socket", 0, _SOCKET[arch]), (_JEQ, 0, "allow", _CLONE[arch]),
             (_LD_W_ABS, 0, 0, 16), (_JSET, "deny", "allow", _NEW_NAMESPACE)]
    labels = {"socket": len(code)}
    code += [(_LD_W_ABS, 0, 0, 16), (_JEQ, "allow", "deny", _AF_UNIX)]  # socket(domain, ...): Unix only
    labels.update(allow=len(code), deny=len(code) + 1, nosys=len(code) + 2)
    code += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _EPERM), (_RET, 0, 0, _ENOSYS)]
    return [(op, _jump(jt, labels, i), _jump(jf, labels, i), k) for i, (op, jt, jf, k) in enumerate(code)]


def _jump(target: int | str, labels: dict[str, int], at: int) -> int:
    return target if isinstance(target, int) else labels[target] - at - 1


def install() -> str:
    """Install the filter on this process (after no_new_privs); raises OSError if the kernel refuses."""
    machine = os.uname().machine
    if machine not in _ARCH:
        raise OSError(f"no seccomp filter for {machine}")
    blob = b"".join(struct.pack("=HBBI", *ins) for ins in program(machine))
    prog = _Program(len(blob) // 8, blob)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return "seccomp: Unix sockets only; no namespaces, mounts, tracing, bpf, io_uring or memfd"
