"""The model store of the Ollama test server, and a registry to pull from, as Ollama 0.6.0 has them.

- An image is a manifest naming a config blob and layers (weights, template, params, ...), each blob addressed by
  the sha256 of its bytes (server/manifest.go, server/layer.go).
- The digest ``/api/tags`` lists is the sha256 of the manifest file, which is the registry's manifest decoded into
  Ollama's ``Manifest`` struct and re-encoded by Go's ``json.Marshal``: compact, fields in struct order, unknown
  fields dropped (server/images.go PullModel writes ``json.Marshal(manifest)``; server/manifest.go hashes the file).
  The registry here serves its manifests indented, as any registry may, so a client that hashed the bytes it
  received would get another digest than Ollama lists.
- A pull (server/images.go PullModel, server/download.go): "pulling manifest"; one "pulling <12 hex>" line per blob
  with that blob's digest and size, repeated as bytes arrive (download.go Wait ticks every 60 ms; ``completed`` is
  left out while 0, Go's omitempty), and a single line with ``completed == total`` for a blob already present; then
  "verifying sha256 digest" (a blob whose bytes do not hash to its digest is deleted and the pull fails with
  "digest mismatch, file must be downloaded again: want sha256:..., got sha256:..."); "writing manifest" (the tag
  now names the new manifest); "removing unused layers" unless OLLAMA_NOPRUNE is set, deleting blobs of the old
  manifest that no manifest uses any more; "success". A tag the registry lacks fails with
  "pull model manifest: file does not exist" (images.go makeRequestWithRetry maps 404 to os.ErrNotExist).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CHATML = ("{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
          "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)

    def layer(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """What a tag names: a config blob and layers."""

    config: Blob
    layers: tuple[Blob, ...]

    def manifest(self) -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "config": self.config.layer(),
                "layers": [b.layer() for b in self.layers]}

    def blobs(self) -> tuple[Blob, ...]:
        return self.layers + (self.config,)


def go_marshal_manifest(manifest: dict[str, Any]) -> bytes:
    """``json.Marshal`` of server.Manifest: compact, its fields in order, a layer's ``from`` only when set."""
    def layer(x: dict[str, Any]) -> dict[str, Any]:
        out = {"mediaType": x.get("mediaType", ""), "digest": x.get("digest", ""), "size": int(x.get("size", 0))}
        if x.get("from"):
            out["from"] = x["from"]
        return out

    ordered = {"schemaVersion": manifest.get("schemaVersion", 0), "mediaType": manifest.get("mediaType", ""),
               "config": layer(manifest.get("config") or {}), "layers": [layer(x) for x in manifest.get("layers") or []]}
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make_image(*, family: str = "llama", parameter_size: str = "135M", quantization_level: str = "Q4_1",
               weights: bytes = b"", system: str = SMOLLM_SYSTEM, template: str = CHATML,
               params: dict[str, Any] | None = None, seed: str = "") -> Image:
    """An image with a weights layer (small stand-in bytes), template, system and params layers, and the config
    Ollama reads details from (server/images.go ConfigV2). ``seed`` makes otherwise equal images differ."""
    weights = weights or hashlib.sha256(f"weights {family} {parameter_size} {quantization_level} {seed}".encode()).digest() * 64
    layers = [Blob("application/vnd.ollama.image.model", weights),
              Blob("application/vnd.ollama.image.template", template.encode()),
              Blob("application/vnd.ollama.image.system", system.encode()),
              Blob("application/vnd.ollama.image.params", json.dumps(params or {"stop": ["<|im_end|>"]}).encode())]
    config = {"model_format": "gguf", "model_family": family, "model_families": [family], "model_type": parameter_size,
              "file_type": quantization_level, "architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]}}
    return Image(Blob("application/vnd.docker.container.image.v1+json", json.dumps(config).encode()), tuple(layers))


def model_path(tag: str) -> tuple[str, str, str]:
    """(namespace, repository, tag) of a model name (server/modelpath.go ParseModelPath)."""
    parts = tag.split("/")
    namespace = parts[-2] if len(parts) >= 2 else "library"
    repo, _, name_tag = parts[-1].partition(":")
    return namespace, repo, name_tag or "latest"


class Registry:
    """The upstream registry over HTTP: ``/v2/<ns>/<repo>/manifests/<tag>`` and ``/v2/<ns>/<repo>/blobs/<digest>``.
    ``push`` (re-)publishes a tag; ``corrupt`` serves other bytes for a blob; ``blob_delay_s`` paces downloads."""

    def __init__(self, *, blob_part: int = 4096, blob_delay_s: float = 0.0) -> None:
        self.images: dict[tuple[str, str, str], Image] = {}
        self.blobs: dict[str, bytes] = {}
        self.corrupted: set[str] = set()
        self.blob_part = blob_part
        self.blob_delay_s = blob_delay_s
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RegistryHandler)
        self._httpd.daemon_threads = True
        self._httpd.registry = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "Registry":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def push(self, tag: str, image: Image) -> str:
        """Publish ``image`` under ``tag`` (replacing what was there); returns the digest Ollama will list."""
        self.images[model_path(tag)] = image
        for blob in image.blobs():
            self.blobs[blob.digest] = blob.data
        return hashlib.sha256(go_marshal_manifest(image.manifest())).hexdigest()

    def corrupt(self, digest: str) -> None:
        self.corrupted.add(digest)

    # -- client side (what Ollama's PullModel does against a registry) --

    def fetch_manifest(self, tag: str) -> dict[str, Any]:
        ns, repo, name_tag = model_path(tag)
        try:
            with urllib.request.urlopen(f"{self.url}/v2/{ns}/{repo}/manifests/{name_tag}", timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise FileNotFoundError("file does not exist") from None
            raise

    def download(self, tag: str, digest: str, on_bytes: Callable[[int, int], None]) -> bytes:
        """A blob's bytes, calling ``on_bytes(completed, total)`` as they arrive."""
        ns, repo, _ = model_path(tag)
        with urllib.request.urlopen(f"{self.url}/v2/{ns}/{repo}/blobs/{digest}", timeout=30) as resp:
            total = int(resp.headers["Content-Length"])
            data = b""
            on_bytes(0, total)
            while len(data) < total:
                part = resp.read(self.blob_part)
                if not part:
                    break
                data += part
                on_bytes(len(data), total)
            return data


class _RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        reg: Registry = self.server.registry  # type: ignore[attr-defined]
        reg.requests.append(self.path)
        parts = self.path.strip("/").split("/")
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "manifests":
            image = reg.images.get((parts[1], parts[2], parts[4]))
            if image is None:
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")
            return self._send(200, json.dumps(image.manifest(), indent=2).encode(), MANIFEST_MEDIA_TYPE)
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "blobs" and parts[4] in reg.blobs:
            data = reg.blobs[parts[4]]
            if parts[4] in reg.corrupted:
                data = bytes(len(data))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), reg.blob_part):
                if reg.blob_delay_s:
                    time.sleep(reg.blob_delay_s)
                self.wfile.write(data[i:i + reg.blob_part])
            return None
        return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Store:
    """The server's models directory: manifests by tag, blobs by digest (OLLAMA_MODELS)."""

    manifests: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    listed_digest: dict[str, str] = field(default_factory=dict)
    modified: dict[str, float] = field(default_factory=dict)

    def install(self, tag: str, image: Image, listed_digest: str | None = None) -> None:
        """Put an image in place as if pulled. ``listed_digest`` stands in for a real manifest whose bytes the tests
        do not have (the catalog's digests are ollama.com's): /api/tags then lists it instead of the hash."""
        for blob in image.blobs():
            self.blobs[blob.digest] = blob.data
        self.manifests[tag] = go_marshal_manifest(image.manifest())
        self.modified[tag] = time.time()
        if listed_digest:
            self.listed_digest[tag] = listed_digest
        else:
            self.listed_digest.pop(tag, None)

    def digest(self, tag: str) -> str:
        return self.listed_digest.get(tag) or hashlib.sha256(self.manifests[tag]).hexdigest()

    def manifest(self, tag: str) -> dict[str, Any]:
        return json.loads(self.manifests[tag])

    def size(self, tag: str) -> int:
        m = self.manifest(tag)
        return sum(int(x["size"]) for x in m["layers"]) + int(m["config"]["size"])

    def layer(self, tag: str, media_suffix: str) -> bytes | None:
        for x in self.manifest(tag)["layers"]:
            if x["mediaType"].endswith(media_suffix):
                return self.blobs.get(x["digest"])
        return None

    def config(self, tag: str) -> dict[str, Any]:
        return json.loads(self.blobs[self.manifest(tag)["config"]["digest"]])

    def remove(self, tag: str, prune: bool) -> None:
        old = self.manifest(tag)
        del self.manifests[tag]
        self.listed_digest.pop(tag, None)
        if prune:
            self._prune({x["digest"] for x in old["layers"]} | {old["config"]["digest"]})

    def _prune(self, candidates: set[str]) -> None:
        """server/images.go deleteUnusedLayers: delete the candidates no manifest uses."""
        for tag in self.manifests:
            m = self.manifest(tag)
            candidates -= {x["digest"] for x in m["layers"]} | {m["config"]["digest"]}
        for digest in candidates:
            self.blobs.pop(digest, None)

    def pull(self, tag: str, registry: Registry, emit: Callable[[dict], None], *, noprune: bool) -> None:
        """server/images.go PullModel, step by step; raises RuntimeError with Ollama's text on failure."""
        old: set[str] = set()
        if tag in self.manifests:
            m = self.manifest(tag)
            old = {x["digest"] for x in m["layers"]} | {m["config"]["digest"]}
        emit({"status": "pulling manifest"})
        try:
            manifest = registry.fetch_manifest(tag)
        except FileNotFoundError as exc:
            raise RuntimeError(f"pull model manifest: {exc}") from None
        layers = list(manifest["layers"]) + [manifest["config"]]
        downloaded: list[str] = []
        for x in layers:
            digest, short = x["digest"], x["digest"][7:19]
            if digest in self.blobs:  # download.go downloadBlob: a blob already present is a cache hit
                emit({"status": f"pulling {short}", "digest": digest, "total": x["size"], "completed": x["size"]})
                continue
            last = [0.0]

            def progress(done: int, total: int, digest: str = digest, short: str = short) -> None:
                now = time.monotonic()
                if done in (0, total) or now - last[0] >= 0.06:  # download.go Wait: a 60 ms ticker
                    last[0] = now
                    step = {"status": f"pulling {short}", "digest": digest, "total": total}
                    if done:
                        step["completed"] = done
                    emit(step)

            self.blobs[digest] = registry.download(tag, digest, progress)
            downloaded.append(digest)
        emit({"status": "verifying sha256 digest"})
        for digest in downloaded:
            got = "sha256:" + hashlib.sha256(self.blobs[digest]).hexdigest()
            if got != digest:
                del self.blobs[digest]
                raise RuntimeError(f"digest mismatch, file must be downloaded again: want {digest}, got {got}")
        emit({"status": "writing manifest"})
        self.manifests[tag] = go_marshal_manifest(manifest)
        self.listed_digest.pop(tag, None)
        self.modified[tag] = time.time()
        unused = old - {x["digest"] for x in layers}
        if not noprune and unused:
            emit({"status": "removing unused layers"})
            self._prune(unused)
        emit({"status": "success"})
