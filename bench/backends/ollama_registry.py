"""Ask the Ollama registry which digest a tag has now, without pulling it.

Ollama cannot pull by digest (ollama/ollama#6886) and a pull overwrites the local manifest of the tag (and, unless
``OLLAMA_NOPRUNE`` is set, deletes the blobs it no longer uses: server/images.go PullModel), so a tag re-pushed
upstream would replace a local copy that matched the catalog. Reading the registry's manifest first tells whether a
pull would bring the catalog's model, and lets ``bench models pull`` refuse before anything local changes.

The digest Ollama lists in ``/api/tags`` is the sha256 of the manifest file it writes, which is the registry's
manifest decoded into its ``Manifest`` struct and re-encoded with Go's ``json.Marshal`` (server/images.go
PullModel, server/manifest.go, server/layer.go at v0.6.0); ``manifest_digest`` encodes it the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_REGISTRY = "https://registry.ollama.ai"
REGISTRY_ENV = "BENCH_OLLAMA_REGISTRY"  # another registry (a mirror, the tests' registry), or "off"
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class ModelPath:
    """server/modelpath.go ParseModelPath: ``[registry/][namespace/]repository[:tag]``."""

    registry: str
    namespace: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, name: str) -> "ModelPath":
        parts = name.split("/")
        registry, namespace = "registry.ollama.ai", "library"
        if len(parts) == 3:
            registry, namespace, repo = parts
        elif len(parts) == 2:
            namespace, repo = parts
        else:
            repo = parts[-1]
        repo, _, tag = repo.partition(":")
        return cls(registry, namespace, repo, tag or "latest")


def registry_base() -> str | None:
    """The registry to ask (``$BENCH_OLLAMA_REGISTRY``, default Ollama's), None when checking is off."""
    value = os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY).strip()
    return None if value.lower() in ("", "off", "none") else value.rstrip("/")


def manifest_url(base: str, tag: str) -> str:
    path = ModelPath.parse(tag)
    return f"{base}/v2/{path.namespace}/{path.repository}/manifests/{path.tag}"


def _go_string(value: object) -> str:
    """A JSON string as Go's encoder writes it (HTML-safe escapes, U+2028/9 escaped, UTF-8 kept)."""
    text = json.dumps("" if value is None else str(value), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _go_layer(layer: object) -> str:
    layer = layer if isinstance(layer, dict) else {}
    out = (f'{{"mediaType":{_go_string(layer.get("mediaType"))},"digest":{_go_string(layer.get("digest"))},'
           f'"size":{int(layer.get("size") or 0)}')
    if layer.get("from"):
        out += f',"from":{_go_string(layer["from"])}'
    return out + "}"


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest file Ollama writes for a registry manifest (its struct's fields, in order, no spaces)."""
    layers = manifest.get("layers")
    encoded_layers = "null" if layers is None else "[" + ",".join(_go_layer(x) for x in layers) + "]"
    text = (f'{{"schemaVersion":{int(manifest.get("schemaVersion") or 0)},'
            f'"mediaType":{_go_string(manifest.get("mediaType"))},"config":{_go_layer(manifest.get("config"))},'
            f'"layers":{encoded_layers}}}')
    return text.encode("utf-8")


def manifest_digest(manifest: dict) -> str:
    """The bare-hex digest ``/api/tags`` would list after pulling this manifest."""
    return hashlib.sha256(manifest_bytes(manifest)).hexdigest()


class RegistryUnavailable(Exception):
    """The registry could not be asked (offline, no such tag, an unexpected reply); the message is one line."""


def remote_digest(tag: str, base: str, timeout_s: float = 10.0) -> str:
    """The digest a pull of ``tag`` would bring now."""
    url = manifest_url(base, tag)
    req = urllib.request.Request(url, headers={"Accept": MANIFEST_MEDIA_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            manifest = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise RegistryUnavailable(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    except ValueError:
        raise RegistryUnavailable(f"{url}: the reply is not a JSON manifest") from None
    if not isinstance(manifest, dict):
        raise RegistryUnavailable(f"{url}: the reply is not a JSON manifest")
    return manifest_digest(manifest)


__all__ = ["DEFAULT_REGISTRY", "REGISTRY_ENV", "ModelPath", "RegistryUnavailable", "manifest_bytes",
           "manifest_digest", "manifest_url", "registry_base", "remote_digest"]
