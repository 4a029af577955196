"""Landlock (Linux >= 5.13): limit what this process and its descendants may read and write, by path.

Plain ctypes, no dependency. `restrict` handles every filesystem right the kernel knows, so whatever is not
granted beneath one of the given paths is refused: reads outside the interpreter, its packages and the system
libraries, and every write outside the sandbox's own tmpfs. From ABI 4 it also refuses TCP bind/connect, and from
ABI 6 signals and abstract Unix sockets that leave the sandbox.
"""

from __future__ import annotations

import ctypes
import os

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same numbers on x86_64 and arm64
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # ABI 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)  # rights a rule on a non-directory may hold
READ = EXECUTE | READ_FILE | READ_DIR
_NET_TCP = 0b11  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPES = 0b11  # ABSTRACT_UNIX_SOCKET, SIGNAL (ABI 6)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 if it is not built in or not enabled at boot."""
    try:
        return max(0, _libc().syscall(_SYS_CREATE_RULESET, None, 0, 1))
    except (OSError, AttributeError):
        return 0


def all_fs_rights(abi: int) -> int:
    return (1 << _FS_BITS_BY_ABI[min(abi, 5)]) - 1


def restrict(read: list[str], write: list[str]) -> list[str]:
    """Allow reading beneath ``read`` and everything beneath ``write``, nothing else; returns what it enforced.

    Raises OSError when the kernel refuses: the caller must not run untrusted code then.
    """
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    every = all_fs_rights(abi)
    attr = _RulesetAttr(every, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    libc = _libc()
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for paths, rights in ((read, READ), (write, every)):
            for path in paths:
                _add_rule(libc, ruleset, path, rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    enforced = [f"landlock abi {abi}: reads and writes by path"]
    if abi >= 4:
        enforced.append("landlock: no tcp")
    if abi >= 6:
        enforced.append("landlock: signals and abstract sockets scoped")
    return enforced


def _add_rule(libc, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_ONLY
        rule = _PathBeneath(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
