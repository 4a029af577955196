"""A meter daemon started for the length of a ``with`` block: the runner's own daemon when the spec names a
driver (the demo's ``sim``), and the tests'. The child is the real daemon, ``python -m bench.meter --config``,
on a real Unix socket, with ``parent_pid`` set so it stops within a second of this process ending, however it
ends (even SIGKILL). Nothing is left behind: its private directory (config, socket) is removed by whichever of
the two ends last, and its stderr goes to a file unlinked as soon as it is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Mapping

from bench.errors import MeterError
from bench.meter import config as meter_config
from bench.meter.address import MeterAddress
from bench.meter.client import MeterClient, connect
from bench.meter.config import RUNTIME_CONFIG, RUNTIME_SOCKET, DaemonConfig
from bench.meter.daemon import remove_runtime_dir

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LocalDaemon:
    """Handle on a spawned daemon."""

    config: DaemonConfig
    process: subprocess.Popen = field(compare=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def socket_path(self) -> str:
        return str(self.config.socket_path)

    @property
    def address(self) -> MeterAddress:
        return MeterAddress(path=self.socket_path)

    def connect(self, timeout_s: float = 15.0, **options: Any) -> MeterClient:
        return connect(self.address, timeout_s, **options)


def _tail(err: BinaryIO) -> str:
    err.flush()
    err.seek(0)
    lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


@contextlib.contextmanager
def spawn_daemon(driver: str, options: Mapping[str, Any], socket_path: str | None = None,
                 log_dir: str | os.PathLike | None = None, *, startup_timeout_s: float = 30.0,
                 **settings: Any) -> Iterator[LocalDaemon]:
    """Run a daemon for the block (``settings``: more ``DaemonConfig`` fields); returns once it answers the hello.
    Without ``socket_path`` it gets a private one (short: a Unix socket path is limited to ~100 bytes)."""
    runtime = tempfile.mkdtemp(prefix="bench-meter-")
    cfg = DaemonConfig(driver=driver, options={k: str(v) for k, v in options.items()},
                       socket_path=socket_path or os.path.join(runtime, RUNTIME_SOCKET),
                       log_dir=str(log_dir) if log_dir else None, parent_pid=os.getpid(), runtime_dir=runtime,
                       **settings)
    path = meter_config.dump(cfg, os.path.join(runtime, RUNTIME_CONFIG))
    with tempfile.TemporaryFile(prefix="bench-meter-", suffix=".stderr") as err:  # unlinked already
        proc = subprocess.Popen([sys.executable, "-m", "bench.meter", "--config", str(path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        log.info("spawned meter daemon pid %d (%s driver, socket %s)", proc.pid, driver, cfg.socket_path)
        try:
            _wait_ready(proc, cfg, startup_timeout_s, err)
            yield LocalDaemon(cfg, proc)
        finally:
            _stop(proc)
            remove_runtime_dir(runtime)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("meter daemon pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, STOP_TIMEOUT_S)
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen, cfg: DaemonConfig, timeout_s: float, err: BinaryIO) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    address = MeterAddress(path=cfg.socket_path)
    while True:
        if proc.poll() is not None:
            raise MeterError(f"meter daemon exited with {proc.returncode} at start: {_tail(err)}")
        if os.path.exists(str(cfg.socket_path)):
            try:
                connect(address, timeout_s=2.0).close()
                return
            except MeterError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise MeterError(f"meter daemon did not answer on {cfg.socket_path} within {timeout_s:g} s: {_tail(err)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
