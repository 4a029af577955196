"""Shared fixtures. Backends: the SmolLM2 llama.cpp engine (loaded once per session) and the Ollama target,
which is a real Ollama when ``OLLAMA_HOST`` is set, else ``tests/ollama_server.py`` on real llama.cpp."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import ollama_server` however pytest is started


def pytest_report_header(config):  # noqa: ANN001, ARG001
    host = os.environ.get("OLLAMA_HOST")
    return f"ollama target: {'real Ollama at ' + host if host else 'the test server (tests/ollama_server.py)'}"


def _needs_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama-cpp-python not importable ({exc}); llama.cpp-backed tests need it")


@pytest.fixture(scope="session")
def llama_engine():
    """A prepared LlamaCppBackend on the demo GGUF, shared by the session (the load costs ~0.5 s)."""
    _needs_llama_cpp()
    from bench.backends.llamacpp import LlamaCppBackend
    from bench.catalog import model
    from ollama_server import DEMO_TAG

    # 1 thread: llama.cpp thread barriers crawl on a shared, contended 2-core box
    engine = LlamaCppBackend(n_threads=1, warmup=False)
    engine.prepare(model(DEMO_TAG))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def llama_runner():
    """The Ollama test server's llama.cpp engine on the demo GGUF (loaded by the server's first request)."""
    _needs_llama_cpp()
    from bench.backends.llamacpp import gguf_path
    from bench.catalog import model
    from ollama_runner import LlamaEngine
    from ollama_server import DEMO_TAG

    engine = LlamaEngine(str(gguf_path(model(DEMO_TAG))))
    yield engine
    engine.close()


@dataclasses.dataclass(frozen=True)
class OllamaTarget:
    host: str
    model: object  # ModelEntry with backend "ollama"
    real: bool
    server: object | None  # the OllamaTestServer, None for a real Ollama

    @property
    def label(self) -> str:
        return f"real Ollama at {self.host}" if self.real else f"the test server at {self.host}"


@pytest.fixture(scope="session")
def ollama_target(request):
    """Where the integration tests send requests; says which (stderr and the report header)."""
    from bench.catalog import ModelEntry, models

    from ollama_server import DEMO_TAG, OllamaTestServer

    host = os.environ.get("OLLAMA_HOST")
    if host:
        import ollama

        tag = os.environ.get("BENCH_TEST_MODEL", DEMO_TAG)
        listed = {m.model: m for m in ollama.Client(host=host).list().models}
        if tag not in listed:
            pytest.skip(f"{tag} is not on the real Ollama at {host} (pull it or set BENCH_TEST_MODEL)")
        base = models().get(tag) or ModelEntry(tag, "ollama", tag, "unknown", "?", "?", 0, "", False)
        entry = dataclasses.replace(base, backend="ollama", digest=listed[tag].digest.removeprefix("sha256:"),
                                    size_bytes=int(listed[tag].size or 0))
        target = OllamaTarget(host, entry, True, None)
        sys.stderr.write(f"\nusing {target.label} (model {tag}, digest taken from the server)\n")
        yield target
        return
    engine = request.getfixturevalue("llama_runner")
    with OllamaTestServer(engine) as srv:
        entry = dataclasses.replace(models()[DEMO_TAG], backend="ollama")
        target = OllamaTarget(srv.host, entry, False, srv)
        sys.stderr.write(f"\nusing {target.label}\n")
        yield target


@pytest.fixture
def scripted_server():
    """A fresh no-LLM test server for fault tests (fast, deterministic)."""
    from ollama_server import OllamaTestServer

    with OllamaTestServer(scripted_reply="The answer is <ANS> 42 </ANS> and that is all .") as srv:
        yield srv


@pytest.fixture(scope="session")
def paced_ollama():
    """URL of a paced, scripted Ollama-API server in its own process (see runner_support.paced_ollama_server)."""
    from runner_support import paced_ollama_server

    with paced_ollama_server() as host:
        yield host


@pytest.fixture(autouse=True)
def _no_real_ollama_registry(monkeypatch):
    """Pulls never ask registry.ollama.ai from a test; tests that want a registry point this at their own."""
    monkeypatch.setenv("BENCH_OLLAMA_REGISTRY", "off")


@pytest.fixture(scope="session", autouse=True)
def _signing_key_outside_home(tmp_path_factory):
    """Runs that seal their folder (pipeline, nightly) sign with a throw-away key, never the user's own."""
    import os

    key_dir = tmp_path_factory.mktemp("signing")
    old = os.environ.get("BENCH_SIGNING_KEY")
    os.environ["BENCH_SIGNING_KEY"] = str(key_dir / "signing_key")
    yield
    if old is None:
        os.environ.pop("BENCH_SIGNING_KEY", None)
    else:
        os.environ["BENCH_SIGNING_KEY"] = old
