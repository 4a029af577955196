"""Runs inside the sandbox subprocess (never imported by the toolkit): confine, then exec the program.

Order: read the nonce, restrict filesystem writes to the working directory (Landlock, when the kernel has it),
disable process creation, network and other escape hatches at the Python level, then exec the program in a fresh
namespace (like `code_eval`/human-eval: ``__name__`` is not ``"__main__"``). Only if exec returns normally is the
nonce written to ``.result``; the program never sees the nonce, so it cannot fake a pass.
"""

import builtins
import ctypes
import os
import sys

NONCE = os.environ.pop("BENCH_SANDBOX_NONCE", "")
WORKDIR = os.getcwd()
ACTIONS = []


def _landlock(path):
    """Forbid every filesystem write outside ``path`` (Landlock ABI >= 1), for this process and its children."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, VERSION)
    if abi < 1:
        return "landlock unavailable"
    write_rights = 0
    for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12):  # WRITE_FILE, REMOVE_DIR/FILE, MAKE_* (not EXECUTE/READ_*)
        write_rights |= 1 << bit
    if abi >= 2:
        write_rights |= 1 << 13  # REFER
    if abi >= 3:
        write_rights |= 1 << 14  # TRUNCATE

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(write_rights)
    ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return "landlock ruleset failed"
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    rule = PathBeneath(write_rights, fd)
    if libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) != 0:  # LANDLOCK_RULE_PATH_BENEATH
        return "landlock rule failed"
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    if libc.syscall(446, ruleset, 0) != 0:
        return "landlock restrict failed"
    os.close(fd)
    os.close(ruleset)
    return "landlock"


def _refuse(name):
    def refused(*args, **kwargs):
        raise PermissionError(f"{name} is disabled in the scoring sandbox")

    return refused


def _guard():
    """Python-level lockdown: no new processes, no sockets, no signals to others, no ctypes."""
    import posix
    import shutil
    import socket
    import subprocess

    for module in (os, posix):
        for name in ("fork", "forkpty", "vfork", "system", "popen", "posix_spawn", "posix_spawnp", "kill",
                     "killpg", "setsid", "setpgid", "setuid", "setgid", "putenv", "fchdir", "chroot",
                     "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
                     "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"):
            if hasattr(module, name):
                setattr(module, name, _refuse(f"os.{name}"))
    subprocess.Popen = _refuse("subprocess.Popen")
    shutil.rmtree = _refuse("shutil.rmtree")
    socket.socket = _refuse("socket.socket")
    socket.create_connection = _refuse("socket.create_connection")
    socket.getaddrinfo = _refuse("socket.getaddrinfo")
    for name in ("ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "resource", "psutil"):
        sys.modules[name] = None
    builtins.help = None
    sys.stdin = None


def main():
    ACTIONS.append(_landlock(WORKDIR))
    with open(".protections", "w", encoding="utf-8") as fh:
        fh.write(",".join(ACTIONS))
    with open("program.py", encoding="utf-8", errors="replace") as fh:
        source = fh.read()
    code = compile(source, "program.py", "exec")
    _guard()
    namespace = {}
    exec(code, namespace)
    with open(".result", "w", encoding="utf-8") as fh:
        fh.write(NONCE)


main()
