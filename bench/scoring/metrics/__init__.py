"""`evaluate` metric modules: load with ``evaluate.load(str(metric_path("bench_score")))``."""

from __future__ import annotations

from pathlib import Path


def metric_path(name: str) -> Path:
    """Directory of a shipped metric module, for `evaluate.load`."""
    return Path(__file__).resolve().parent / name
