"""Checks before a night spends hours running: each failure is exit 2 with a reason naming what to fix."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.errors import BenchError
from bench.nightly.outcome import NightFailed
from bench.spec import Spec


def output_disk(out: Path, min_free_mb: float) -> None:
    """The folder the night writes to exists, is writable, and has room for SQLite, the meter log and the report."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out, prefix=".nightly-probe-") as probe:  # EROFS / ENOSPC surface here
        probe.write(b"x")
        probe.flush()
    free = shutil.disk_usage(out).free
    if free < min_free_mb * 2**20:
        raise NightFailed(f"disk full: {free / 2**20:.0f} MiB free under {out} (a night needs {min_free_mb:g} MiB; "
                          f"--min-free-mb)")


def services(spec: Spec) -> None:
    """The meter daemon (unless the run starts its own) and the Ollama server the spec names answer."""
    if spec.meter.driver is None:
        from bench.meter.address import resolve
        from bench.meter.client import connect

        try:
            connect(resolve(spec.meter.socket)).close()
        except BenchError as exc:
            raise NightFailed(f"meter absent: {exc} (start it: systemctl start edge-llm-bench-meter)") from None
    if spec.backend.kind == "ollama":
        from bench.backends import backend_for

        try:
            backend_for(spec).describe()
        except BenchError as exc:
            raise NightFailed(f"Ollama unreachable: {exc}") from None
