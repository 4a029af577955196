"""Landlock (Linux >= 5.13): forbid filesystem writes outside one directory, for a process and its descendants.

Called in the sandbox child between fork and exec; the restriction survives exec. Plain ctypes, no dependency.
"""

from __future__ import annotations

import ctypes
import os

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same numbers on x86_64 and arm64
_PR_SET_NO_NEW_PRIVS = 38
# WRITE_FILE, REMOVE_DIR, REMOVE_FILE, MAKE_CHAR/DIR/REG/SOCK/FIFO/BLOCK/SYM; reading and executing stay allowed.
_WRITE_BITS = (1, 4, 5, 6, 7, 8, 9, 10, 11, 12)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 if unsupported."""
    try:
        return max(0, _libc().syscall(_SYS_CREATE_RULESET, None, 0, 1))
    except (OSError, AttributeError):
        return 0


def restrict_writes_to(path: str) -> bool:
    """Allow writes only beneath ``path`` from now on; False if the kernel cannot."""
    abi = abi_version()
    if abi < 1:
        return False
    rights = sum(1 << bit for bit in _WRITE_BITS)
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= 1 << 14  # TRUNCATE
    libc = _libc()
    attr = _RulesetAttr(rights)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return False
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneath(rights, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            return False
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) == 0
    finally:
        os.close(fd)
        os.close(ruleset)
