"""Pull the catalog's models into an Ollama server and verify them against the catalog's digests.

Ollama cannot pull by digest (ollama/ollama#6886) and library tags can be re-pushed (#5169), so a pull is
followed by a check of ``/api/tags`` digests against the catalog; a mismatch refuses (``DigestMismatch``).
llama.cpp models (``backend = "llamacpp"``) are checked by the sha256 of their GGUF file instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from bench.backends._common import check_digest, normalize_digest, sha256_file
from bench.catalog import ModelEntry, model as catalog_model
from bench.errors import BackendError, DigestMismatch

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"


@dataclass(frozen=True)
class ModelCheck:
    """The verdict on one model: ``status`` is ``ok``, ``missing``, ``mismatch`` or ``override``."""

    tag: str
    status: str
    digest: str | None
    catalog_digest: str
    where: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "override")


def _entries(models: Iterable[ModelEntry | str]) -> list[ModelEntry]:
    return [m if isinstance(m, ModelEntry) else catalog_model(m) for m in models]


def _client(host: str | None, read_timeout_s: float = 600.0):
    import httpx
    import ollama

    return ollama.Client(host=host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST,
                         timeout=httpx.Timeout(connect=10.0, read=read_timeout_s, write=10.0, pool=10.0))


def _server_digests(client: Any, where: str) -> dict[str, str | None]:
    import httpx
    import ollama

    try:
        return {m.model: normalize_digest(m.digest) for m in client.list().models if m.model}
    except (ConnectionError, httpx.TransportError) as exc:
        raise BackendError(f"Ollama at {where} unreachable: {' '.join(str(exc).split())}") from None
    except ollama.ResponseError as exc:
        raise BackendError(f"Ollama at {where}: GET /api/tags failed: HTTP {exc.status_code}: {exc.error}") from None


def check(backend_host: str | None, models: Iterable[ModelEntry | str], allow_digest_override: bool = False) -> list[ModelCheck]:
    """Compare what the server (or the GGUF file, for llamacpp models) holds with the catalog; never raises on a
    mismatch (the caller decides), only when the server cannot be asked."""
    entries = _entries(models)
    results: list[ModelCheck] = []
    digests: dict[str, str | None] | None = None
    where = backend_host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
    for entry in entries:
        want = normalize_digest(entry.digest) or ""
        if entry.backend == "llamacpp":
            from bench.backends.llamacpp import gguf_path

            try:
                path = gguf_path(entry)
            except BackendError:
                results.append(ModelCheck(entry.tag, "missing", None, want, f"package {entry.gguf_package}"))
                continue
            got: str | None = sha256_file(path)
            loc = str(path)
        else:
            if digests is None:
                with _client(backend_host, read_timeout_s=60.0) as client:
                    digests = _server_digests(client, where)
            if entry.tag not in digests:
                results.append(ModelCheck(entry.tag, "missing", None, want, where))
                continue
            got, loc = digests[entry.tag], where
        status = "ok" if got == want else ("override" if allow_digest_override else "mismatch")
        results.append(ModelCheck(entry.tag, status, got, want, loc))
    return results


def pull(
    backend_host: str | None,
    models: Iterable[ModelEntry | str],
    progress: Callable[..., Any] | None = None,
    allow_digest_override: bool = False,
) -> list[ModelCheck]:
    """Pull each Ollama model with a progress bar per layer, then verify its digest; refuse on a mismatch.

    ``progress`` is a tqdm-like factory (``tqdm.tqdm`` by default; None to disable).
    """
    import httpx
    import ollama

    if progress is None:
        from tqdm import tqdm as progress
    entries = _entries(models)
    where = backend_host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
    results: list[ModelCheck] = []
    with _client(backend_host) as client:
        for entry in entries:
            if entry.backend != "ollama":
                log.info("%s: %s model, nothing to pull; checking its file", entry.tag, entry.backend)
                results.extend(check(backend_host, [entry], allow_digest_override))
                continue
            bars: dict[str, Any] = {}
            done: dict[str, int] = {}
            try:
                for step in client.pull(entry.tag, stream=True):
                    if step.digest and step.total:
                        bar = bars.get(step.digest)
                        if bar is None:
                            bar = bars[step.digest] = progress(
                                total=step.total, unit="B", unit_scale=True, unit_divisor=1024,
                                desc=f"{entry.tag} {normalize_digest(step.digest)[:12]}", leave=False)
                            done[step.digest] = 0
                        completed = step.completed or 0
                        if completed > done[step.digest]:
                            bar.update(completed - done[step.digest])
                            done[step.digest] = completed
                    elif step.status:
                        log.info("%s: %s", entry.tag, step.status)
            except ollama.ResponseError as exc:
                raise BackendError(f"{entry.tag}: pull from {where} failed: {' '.join(str(exc.error).split())}") from None
            except (ConnectionError, httpx.TransportError) as exc:
                raise BackendError(f"{entry.tag}: pull from {where} failed: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
            finally:
                for bar in bars.values():
                    bar.close()
            digests = _server_digests(client, where)
            if entry.tag not in digests:
                raise BackendError(f"{entry.tag}: pull reported success but the model is not in {where}/api/tags")
            facts = check_digest(entry, digests[entry.tag], f"Ollama at {where}", allow_digest_override)
            results.append(ModelCheck(entry.tag, "override" if facts["digest_override"] else "ok", facts["digest"],
                                      facts["catalog_digest"], where))
    return results


def refuse_on_mismatch(results: list[ModelCheck]) -> None:
    """Raise for the first failed check (one line naming both digests), after logging all of them."""
    bad = [r for r in results if not r.ok]
    for r in bad:
        log.error("%s: %s (got %s, catalog %s)", r.tag, r.status, r.digest, r.catalog_digest)
    if not bad:
        return
    first = bad[0]
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    if first.status == "missing":
        raise BackendError(f"{first.tag}: missing at {first.where}{more}")
    raise DigestMismatch(f"{first.tag}: digest {first.digest} at {first.where} differs from the catalog's {first.catalog_digest}{more}")
