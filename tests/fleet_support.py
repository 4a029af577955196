"""Helpers for the fleet tests: an Ollama test server serving several catalog tags, a fleet spec against it,
per-host signing keys and the fleet's allowed_signers."""

from __future__ import annotations

from pathlib import Path

from runner_support import paced_ollama_server

MODELS = ("qwen2.5:0.5b-instruct-q4_0", "llama3.2:1b-instruct-q4_K_M")
REPLY = "<ANS>A</ANS> #### 42 w1 w2 w3"


def scripted_ollama(models=MODELS, delay_s: float = 0.01):
    """The paced Ollama test server answering under each of ``models`` (several blocks, no LLM)."""
    return paced_ollama_server(delay_s, REPLY, tuple(models))


def fleet_spec(host: str, socket_path: str, *, name: str = "fleet-test", models=MODELS,
               datasets=("commonsenseqa", "gsm8k"), limit: int = 2, idle_s: float = 0.5) -> str:
    """A small fleet experiment against the Ollama test server at ``host``, metered by the daemon at
    ``socket_path`` (each host's own, as on a Pi)."""
    import tomli_w

    return tomli_w.dumps({
        "experiment": {"name": name},
        "backend": {"kind": "ollama", "host": host, "timeout_s": 30, "warmup": False},
        "options": {"temperature": 0.0},
        "models": {"tags": list(models)},
        "datasets": {d: {"source": "fixtures", "selection": "all", "limit": limit} for d in datasets},
        "meter": {"socket": socket_path},
        "idle": {"duration_s": idle_s},
        "cooldown": {"max_wait_s": 0},
    })


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
