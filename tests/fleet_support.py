"""Helpers for the fleet tests: an Ollama test server serving several catalog tags, a fleet spec against it,
per-host signing keys and the fleet's allowed_signers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

from runner_support import ROOT

MODELS = ("qwen2.5:0.5b-instruct-q4_0", "llama3.2:1b-instruct-q4_K_M")
REPLY = "<ANS>A</ANS> #### 42 w1 w2 w3"


@contextlib.contextmanager
def scripted_ollama(models=MODELS, delay_s: float = 0.01, port: int | None = None):
    """tests/ollama_server.py in its own process: a scripted reply, paced per word, under each catalog tag."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, str(ROOT / "tests" / "ollama_server.py"), "--port", str(port), "--scripted", REPLY,
           "--script-delay", str(delay_s)] + [a for m in models for a in ("--alias", m)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if "listening on" not in proc.stdout.readline():
            raise RuntimeError("the Ollama test server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


FLEET_SPEC = """# A small fleet experiment: {n_models} paper models x {n_ds} fixture datasets x {limit} items.
[experiment]
name = "{name}"
[backend]
kind = "ollama"
host = "{host}"
timeout_s = 30
warmup = false
[options]
temperature = 0.0
[models]
tags = [{tags}]
{datasets}
[meter]
socket = "{socket}"
[idle]
duration_s = {idle_s}
[cooldown]
max_wait_s = 0
"""


def fleet_spec(host: str, socket_path: str, *, name: str = "fleet-test", models=MODELS,
               datasets=("commonsenseqa", "gsm8k"), limit: int = 2, idle_s: float = 0.5) -> str:
    blocks = "".join(f'[datasets.{d}]\nsource = "fixtures"\nselection = "all"\nlimit = {limit}\n' for d in datasets)
    return FLEET_SPEC.format(name=name, host=host, tags=", ".join(f'"{m}"' for m in models), datasets=blocks,
                             socket=socket_path, idle_s=idle_s, n_models=len(models), n_ds=len(datasets), limit=limit)


def host_keys(key_dir: Path, hosts) -> tuple[dict[str, Path], Path]:
    """One signing key per host (principal ``<host>@edge-llm-bench``) and the fleet's allowed_signers."""
    from bench.fleet.shardfolder import host_principal
    from bench.provenance.signing import create_key

    keys, lines = {}, []
    for h in hosts:
        key = create_key(key_dir / h / "signing_key", host_principal(h))
        keys[h] = key.path
        lines.append(key.signers_line())
    signers = key_dir / "allowed_signers"
    signers.write_text("".join(lines), "utf-8")
    return keys, signers
