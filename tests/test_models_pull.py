"""bench.models: pull with progress, digest verification, check, and the `bench models` CLI."""

from __future__ import annotations

import pytest

from bench.catalog import models
from bench.cli import main as cli_main
from bench.errors import BackendError, DigestMismatch
from bench.models import check, pull, refuse_on_mismatch

from ollama_server import OllamaTestServer, served_from_catalog

TAG = "qwen2.5:0.5b-instruct-q4_1"  # a paper model the test registry can "pull"
ENTRY = models()[TAG]


def run_cli(argv: list[str]) -> int:
    """The exit code of `bench ARGV` (main() may return or sys.exit)."""
    try:
        cli_main(argv)
    except SystemExit as exc:
        return exc.code or 0
    return 0


class RecordingBar:
    """A tqdm stand-in that records what the pull reported."""

    bars: list["RecordingBar"] = []

    def __init__(self, total, **kw):
        self.total, self.n, self.kw, self.closed = total, 0, kw, False
        RecordingBar.bars.append(self)

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


@pytest.fixture
def registry_server():
    RecordingBar.bars = []
    with OllamaTestServer(None, scripted_reply="ok", registry=[served_from_catalog(TAG, engine_tag=None)], pull_steps=5) as srv:
        yield srv


def test_pull_streams_progress_and_verifies(registry_server):
    assert TAG not in registry_server.models
    results = pull(registry_server.host, [TAG], progress=RecordingBar)
    assert [(r.tag, r.status, r.digest) for r in results] == [(TAG, "ok", ENTRY.digest)]
    [bar] = RecordingBar.bars
    assert bar.total == ENTRY.size_bytes and bar.n == ENTRY.size_bytes and bar.closed
    assert ENTRY.digest[:12] in bar.kw["desc"]
    assert TAG in registry_server.models
    assert [r.status for r in check(registry_server.host, [TAG])] == ["ok"]


def test_pull_refuses_a_changed_digest(registry_server):
    registry_server.set_digest(TAG, "e" * 64)  # the tag was re-pushed upstream
    with pytest.raises(DigestMismatch) as err:
        pull(registry_server.host, [TAG], progress=RecordingBar)
    msg = str(err.value)
    assert "\n" not in msg and "e" * 64 in msg and ENTRY.digest in msg
    [r] = pull(registry_server.host, [TAG], progress=RecordingBar, allow_digest_override=True)
    assert r.status == "override" and r.ok


def test_pull_unknown_model_fails_with_reason(registry_server):
    with pytest.raises(BackendError, match="file does not exist"):
        pull(registry_server.host, ["llama3.2:1b-instruct-q4_0"], progress=RecordingBar)


def test_pull_error_mid_stream(registry_server):
    registry_server.inject("error_in_stream", after_chunks=3, message="max retries exceeded", paths=("/api/pull",))
    with pytest.raises(BackendError, match="max retries exceeded"):
        pull(registry_server.host, [TAG], progress=RecordingBar)
    assert all(b.closed for b in RecordingBar.bars)


def test_pull_unreachable():
    with pytest.raises(BackendError, match="failed"):
        pull("http://127.0.0.1:9", [TAG], progress=RecordingBar)


def test_check_reports_missing_and_mismatch(registry_server):
    registry_server.set_digest("smollm2:135m-instruct-q4_1", "d" * 64)
    registry_server.add_model(served_from_catalog("qwen2.5:0.5b-instruct-q4_0", digest="c" * 64, engine_tag=None))
    results = check(registry_server.host, [TAG, "qwen2.5:0.5b-instruct-q4_0"])
    assert [(r.tag, r.status) for r in results] == [(TAG, "missing"), ("qwen2.5:0.5b-instruct-q4_0", "mismatch")]
    with pytest.raises(BackendError, match="missing"):
        refuse_on_mismatch(results)
    with pytest.raises(DigestMismatch, match="c" * 64):
        refuse_on_mismatch(results[1:])


def test_check_llamacpp_model_by_file_digest():
    [r] = check(None, ["smollm2:135m-instruct-q4_1"])
    assert r.status == "ok" and r.digest == models()["smollm2:135m-instruct-q4_1"].digest


def test_cli_models_list(capsys):
    assert run_cli(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2:135m-instruct-q4_1" in out and TAG in out


def test_cli_models_pull_and_check(registry_server, capsys):
    assert run_cli(["models", "pull", "--host", registry_server.host, "--model", TAG]) == 0
    assert f"ok       {TAG}" in capsys.readouterr().out
    assert run_cli(["models", "check", "--host", registry_server.host, "--model", TAG]) == 0
    capsys.readouterr()
    registry_server.set_digest(TAG, "e" * 64)
    assert run_cli(["models", "check", "--host", registry_server.host, "--model", TAG]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "e" * 64 in err and err.count("\n") == 1
