"""Confinement the sandbox's first process applies to itself, as root in fresh namespaces, before untrusted code.

`build_root` makes a new root of two tmpfs mounts (a read-only skeleton, and ``/tmp``, the only writable place,
whose size caps the total bytes a program can write) with the interpreter, its packages, the system libraries and
four device nodes bind-mounted read-only at their usual paths, then pivots into it: nothing else of the host
filesystem (home directories, keys, /etc, /proc, result folders) exists for the program. `drop_privileges` then
switches to an unused uid/gid with no supplementary groups, or, inside a user namespace, drops every capability.
"""

from __future__ import annotations

import ctypes
import os
import resource

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # syscall numbers (glibc has no wrapper)
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP = 38, 24
_CAP_LAST = 63


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


class _Root:
    """A new root being filled with bind mounts of host paths, each at its host path."""

    def __init__(self, libc, root: str):
        self.libc, self.root, self.bound = libc, root, []

    def mirror(self, path: str, writable: bool = False, depth: int = 0) -> None:
        """Make ``path`` visible, recreating the symlinks on its way (``/lib -> usr/lib``) inside the new root."""
        if depth > 8:
            raise OSError(f"too many symlinks on the way to {path}")
        parts = [p for p in os.path.normpath(path).split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            source = os.path.join(current, part)
            if os.path.islink(source):
                if not os.path.lexists(self.root + source):
                    os.makedirs(self.root + current, exist_ok=True)
                    os.symlink(os.readlink(source), self.root + source)
                resolved = os.path.normpath(os.path.join(current, os.readlink(source)))
                return self.mirror(os.path.join(resolved, *parts[i + 1:]), writable, depth + 1)
            current = source
        if os.path.exists(current) and not any(current == b or current.startswith(b + "/") for b in self.bound):
            self._bind(current, writable)
            self.bound.append(current)

    def _bind(self, source: str, writable: bool) -> None:
        target = self.root + source
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "ab").close()
        _mount(self.libc, source, target, None, MS_BIND | MS_REC)
        flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if writable else MS_RDONLY | MS_NODEV)
        _mount(self.libc, None, target, None, flags)


def build_root(root: str, read: list[str], devices: list[str], tmp_bytes: int, uid: int, gid: int) -> None:
    """Turn the (empty) directory ``root`` into this mount namespace's whole filesystem, then pivot into it."""
    libc = _libc()
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    # /tmp before the host paths: an interpreter or packages that live under the host's /tmp (a checkout there)
    # are then bound on top of the new /tmp, not hidden under it.
    os.makedirs(root + "/tmp", exist_ok=True)
    _mount(libc, "tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={tmp_bytes},nr_inodes=1024,mode=0700,uid={uid},gid={gid}")
    tree = _Root(libc, root)
    for path in sorted(read, key=len):  # shorter first: a path inside one already bound needs no mount of its own
        tree.mirror(path)
    for device in devices:
        tree.mirror(device, writable=True)
    _enter(libc, root)
    _mount(libc, None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir("/tmp")


def _enter(libc, root: str) -> None:
    """Make ``root`` this process's ``/``: pivot_root and detach the old root; where pivot_root is refused (Docker's
    default seccomp profile lacks it), chroot: with no capability left afterwards, and no /proc, there is no way back."""
    os.chdir(root)
    syscall = _PIVOT_ROOT.get(os.uname().machine)
    if syscall is not None and libc.syscall(syscall, b".", b".") == 0:
        _check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:
        os.chroot(".")
    os.chdir("/")


def drop_privileges(uid: int | None) -> str:
    """Become ``uid`` (and the same gid), no groups; with ``None`` (a user namespace) drop every capability."""
    libc = _libc()
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        how = "an unused uid, no groups"
    else:
        for cap in range(_CAP_LAST + 1):
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the kernel's last capability: harmless
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        _check(libc.capset(header, data), "capset")
        how = "user namespace, no capabilities"
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    return how


def set_limits(memory_bytes: int, cpu_s: int, file_bytes: int, processes: int) -> None:
    """Address space, CPU seconds, file size, no core dumps, few open files, and ``processes`` tasks for the uid."""
    for which, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_s),
                         (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_NPROC, processes)):
        resource.setrlimit(which, (value, value))
