"""bench models: pulls as Ollama 0.6.0 streams them (a line per blob, then verify, write, success), the local copy
checked first and never pulled over, the registry asked before a pull, and the ``bench models`` CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.backends.ollama_registry import manifest_digest
from bench.catalog import models
from bench.cli import main as cli_main
from bench.errors import BackendError, DigestMismatch
from bench.models import check, pull, refuse_on_mismatch

from ollama_registry import Registry, make_image
from ollama_server import OllamaTestServer, served_from_catalog

TAG = "qwen2.5:0.5b-instruct-q4_1"  # a paper model the test registry serves
CATALOG = models()[TAG]


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


@dataclasses.dataclass
class World:
    """A registry, an Ollama server that pulls from it, and the catalog entry pinning the registry's first push."""

    registry: Registry
    server: OllamaTestServer
    entry: object
    image: object

    def pulls(self) -> int:
        return sum(1 for p, _ in self.server.requests if p == "/api/pull")


@pytest.fixture
def world(monkeypatch):
    RecordingBar.bars = []
    image = make_image(family="qwen2", parameter_size="494M", quantization_level="Q4_1", seed="v1")
    with Registry(blob_part=512) as registry, OllamaTestServer(models=[], registry=registry) as server:
        digest = registry.push(TAG, image)
        monkeypatch.setenv("BENCH_OLLAMA_REGISTRY", registry.url)
        yield World(registry, server, dataclasses.replace(CATALOG, digest=digest), image)


def test_manifest_digest_is_what_ollama_lists_for_a_real_model():
    """The bytes Ollama wrote for gemma:2b (``cat ~/.ollama/models/manifests/registry.ollama.ai/library/gemma/2b``
    after ``ollama pull gemma:2b``, Ollama 0.1.48: shayansm2/llm-zoomcamp-playground week2/hw.md) hash to the ID
    ``ollama list`` shows for gemma:2b, b50d6c999e59 (attogram/ollama-bash-lib demos/list.md). Served indented, with
    its fields reordered, it still gives that digest: Ollama re-encodes the manifest (server/images.go PullModel)."""
    written = ('{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":'
               '{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:887433b89a901c156f7e'
               '6944442f3c9e57f3c55d6ed52042cbb7303aea994290","size":483},"layers":[{"mediaType":"application/vnd.'
               'ollama.image.model","digest":"sha256:c1864a5eb19305c40519da12cc543519e48a0697ecd30e15d5ac228644957d'
               '12","size":1678447520},{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:097a36493'
               'f718248845233af1d3fefe7a303f864fae13bc31a3a9704229378ca","size":8433},{"mediaType":"application/vnd.'
               'ollama.image.template","digest":"sha256:109037bec39c0becc8221222ae23557559bc594290945a2c4221ab4f303b8'
               '871","size":136},{"mediaType":"application/vnd.ollama.image.params","digest":"sha256:22a838ceb7fb227'
               '55a3b0ae9b4eadde629d19be1f651f73efb8c6b4e2cd0eea0","size":84}]}')
    served = json.loads(written)
    reordered = {"layers": served["layers"], "config": served["config"], "mediaType": served["mediaType"],
                 "schemaVersion": 2, "annotations": {"unknown": "dropped by Go's decoder"}}
    assert manifest_digest(served).startswith("b50d6c999e59")
    assert manifest_digest(json.loads(json.dumps(reordered, indent=2))).startswith("b50d6c999e59")


def test_a_pull_shows_one_bar_per_blob_and_verifies_the_manifest_digest(world):
    [r] = pull(world.server.host, [world.entry], progress=RecordingBar)
    assert (r.tag, r.status, r.digest) == (TAG, "ok", world.entry.digest)
    blobs = world.image.blobs()
    assert len(RecordingBar.bars) == len(blobs) == 5  # weights, template, system, params, config
    for bar, blob in zip(RecordingBar.bars, blobs):
        assert bar.total == blob.size and bar.n == blob.size and bar.closed
        assert blob.digest[7:19] in bar.kw["desc"]
    assert [r.status for r in check(world.server.host, [world.entry])] == ["ok"]


def test_the_pull_stream_is_ollamas(world):
    """server/images.go PullModel and server/download.go, step by step."""
    import httpx

    lines = [json.loads(x) for x in httpx.post(f"{world.server.host}/api/pull", json={"model": TAG},
                                               timeout=30).text.splitlines()]
    statuses = [x["status"] for x in lines]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest",
                                                                    "success"]
    per_blob = [x for x in lines if "digest" in x]
    assert {x["digest"] for x in per_blob} == {b.digest for b in world.image.blobs()}
    for x in per_blob:
        assert x["status"] == f"pulling {x['digest'][7:19]}" and x["total"] > 0
        assert x.get("completed", 1) > 0  # omitempty: a zero ``completed`` is left out
    again = [json.loads(x) for x in httpx.post(f"{world.server.host}/api/pull", json={"model": TAG},
                                               timeout=30).text.splitlines()]
    cached = [x for x in again if "digest" in x]  # download.go: a blob already present is one line, all done
    assert len(cached) == 5 and all(x["completed"] == x["total"] for x in cached)


def test_a_matching_local_copy_is_never_pulled_over(world):
    pull(world.server.host, [world.entry], progress=RecordingBar)
    before = (dict(world.server.store.manifests), dict(world.server.store.blobs))
    repushed = world.registry.push(TAG, make_image(family="qwen2", parameter_size="494M", seed="v2"))
    [r] = pull(world.server.host, [world.entry], progress=RecordingBar)
    assert world.pulls() == 1 and (world.server.store.manifests, world.server.store.blobs) == before
    assert r.status == "ok" and r.digest == world.entry.digest
    assert "re-pushed" in r.note and repushed in r.note and "\n" not in r.note


def test_the_cli_reports_a_re_pushed_tag_in_one_line_and_keeps_the_local_copy(world, monkeypatch, capsys):
    monkeypatch.setattr("bench.catalog.models", lambda: {**models(), TAG: world.entry})
    assert run_cli(["models", "pull", "--host", world.server.host, "--model", TAG]) == 0
    capsys.readouterr()
    local = dict(world.server.store.manifests)
    repushed = world.registry.push(TAG, make_image(family="qwen2", parameter_size="494M", seed="v2"))
    assert run_cli(["models", "pull", "--host", world.server.host, "--model", TAG]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"ok       {TAG}") and repushed in out[0] and "kept" in out[0]
    assert world.server.store.manifests == local and world.pulls() == 1


def test_a_re_pushed_tag_is_refused_before_pulling(world):
    other = dataclasses.replace(world.entry, digest="e" * 64)  # the catalog pins something the registry no longer has
    [r] = pull(world.server.host, [other], progress=RecordingBar)
    assert r.status == "mismatch" and r.digest == world.entry.digest and world.pulls() == 0
    with pytest.raises(DigestMismatch) as err:
        refuse_on_mismatch([r])
    msg = str(err.value)
    assert "\n" not in msg and "e" * 64 in msg and world.entry.digest in msg and "not pulled" in msg
    [r] = pull(world.server.host, [other], progress=RecordingBar, allow_digest_override=True)
    assert r.status == "override" and r.ok and world.pulls() == 1


def test_without_the_registry_a_pull_is_verified_afterwards(world, monkeypatch):
    monkeypatch.setenv("BENCH_OLLAMA_REGISTRY", "http://127.0.0.1:9")  # unreachable: pull, then check the digest
    other = dataclasses.replace(world.entry, digest="e" * 64)
    [r] = pull(world.server.host, [other], progress=RecordingBar)
    assert r.status == "mismatch" and r.digest == world.entry.digest and "registry not checked" in r.note


@pytest.mark.parametrize("noprune, kept", [(False, False), (True, True)])
def test_a_pull_of_a_re_pushed_tag_prunes_the_old_blobs_unless_noprune(monkeypatch, noprune, kept):
    """server/images.go PullModel: "removing unused layers" deletes the old manifest's blobs, unless OLLAMA_NOPRUNE."""
    import httpx

    with Registry() as registry, OllamaTestServer(models=[], registry=registry, noprune=noprune) as server:
        old = make_image(seed="v1")
        registry.push(TAG, old)
        httpx.post(f"{server.host}/api/pull", json={"model": TAG}, timeout=30)
        registry.push(TAG, make_image(seed="v2"))
        steps = [json.loads(x)["status"] for x in
                 httpx.post(f"{server.host}/api/pull", json={"model": TAG}, timeout=30).text.splitlines()]
        assert ("removing unused layers" in steps) is not noprune
        weights = old.layers[0].digest
        assert (weights in server.store.blobs) is kept


def test_a_corrupt_blob_fails_the_pull(world):
    world.registry.corrupt(world.image.layers[0].digest)
    with pytest.raises(BackendError, match="digest mismatch, file must be downloaded again: want sha256:") as err:
        pull(world.server.host, [world.entry], progress=RecordingBar)
    assert "\n" not in str(err.value) and all(b.closed for b in RecordingBar.bars)
    assert TAG not in world.server.store.manifests


def test_pull_unknown_model_fails_with_reason(world):
    ghost = dataclasses.replace(models()["llama3.2:1b-instruct-q4_0"])
    with pytest.raises(BackendError, match="pull model manifest: file does not exist"):
        pull(world.server.host, [ghost], progress=RecordingBar)


def test_pull_error_mid_stream(world):
    world.server.inject("error_in_stream", after_chunks=3, message="max retries exceeded", paths=("/api/pull",))
    with pytest.raises(BackendError, match="max retries exceeded"):
        pull(world.server.host, [world.entry], progress=RecordingBar)
    assert all(b.closed for b in RecordingBar.bars)


def test_pull_unreachable():
    with pytest.raises(BackendError, match="unreachable"):
        pull("http://127.0.0.1:9", [TAG], progress=RecordingBar)


def test_check_reports_missing_and_mismatch():
    with OllamaTestServer(models=[served_from_catalog("qwen2.5:0.5b-instruct-q4_0", digest="c" * 64)]) as srv:
        results = check(srv.host, [TAG, "qwen2.5:0.5b-instruct-q4_0"])
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


def test_cli_models_check(capsys):
    with OllamaTestServer(models=[served_from_catalog(TAG)]) as srv:
        assert run_cli(["models", "check", "--host", srv.host, "--model", TAG]) == 0
        capsys.readouterr()
        srv.set_digest(TAG, "e" * 64)
        assert run_cli(["models", "check", "--host", srv.host, "--model", TAG]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "e" * 64 in err and err.count("\n") == 1
