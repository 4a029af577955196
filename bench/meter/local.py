"""Start a meter daemon as a child process for the length of a ``with`` block (the runner and demo use it with
the ``sim`` driver). The child is the real daemon, ``python -m bench meter serve``, on a real Unix socket."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from bench.errors import MeterError
from bench.meter.client import MeterClient, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalDaemon:
    """Handle on a spawned daemon."""

    socket_path: str
    pid: int
    log_dir: str | None
    stderr_path: str

    def connect(self, timeout_s: float = 15.0) -> MeterClient:
        return connect(self.socket_path, timeout_s)


def serve_command(driver: str, options: Mapping[str, Any], socket_path: str, log_dir: str | None = None,
                  extra_args: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "-v", "meter", "serve", "--driver", driver, "--socket", socket_path]
    for key, value in options.items():
        cmd += ["--opt", f"{key}={value}"]
    if log_dir:
        cmd += ["--log-dir", str(log_dir)]
    return cmd + list(extra_args)


@contextlib.contextmanager
def spawn_daemon(driver: str, options: Mapping[str, Any], socket_path: str, log_dir: str | None = None,
                 startup_timeout_s: float = 30.0, extra_args: tuple[str, ...] = ()) -> Iterator[LocalDaemon]:
    """Run the daemon for the block: returns once the socket answers the hello; SIGTERM (then SIGKILL) on exit."""
    cmd = serve_command(driver, options, socket_path, log_dir, extra_args)
    err = tempfile.NamedTemporaryFile(prefix="bench-meter-", suffix=".stderr", delete=False)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                            preexec_fn=_die_with_parent)
    log.info("spawned meter daemon pid %d: %s", proc.pid, " ".join(cmd))
    try:
        _wait_ready(proc, socket_path, startup_timeout_s, err.name)
        yield LocalDaemon(socket_path, proc.pid, log_dir, err.name)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("meter daemon pid %d ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()
        err.close()


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when its parent dies, so a SIGKILLed run leaves no orphan daemon."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's exit handler is the only cleanup


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "(no output)"
    except OSError:
        return "(no output)"


def _wait_ready(proc: subprocess.Popen, socket_path: str, timeout_s: float, stderr_path: str) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        if proc.poll() is not None:
            raise MeterError(f"meter daemon exited with {proc.returncode} at start: {_last_line(stderr_path)}")
        if os.path.exists(socket_path):
            try:
                connect(socket_path, timeout_s=2.0).close()
                return
            except MeterError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            raise MeterError(f"meter daemon did not answer on {socket_path} within {timeout_s:g} s: {_last_line(stderr_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
