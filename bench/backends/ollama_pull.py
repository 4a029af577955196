"""Ollama's model store: check the server's copies against the catalog, and pull without destroying a good copy.

A pull of a tag overwrites its manifest and, unless ``OLLAMA_NOPRUNE`` is set, deletes blobs no longer used
(server/images.go PullModel, v0.6.0), so the order matters:

1. the server's own digest first (``/api/tags``): a copy that matches the catalog is never pulled over;
2. then the registry's digest for the tag (``ollama_registry``): a tag that was re-pushed is refused before the
   pull, so a different local copy is not replaced by yet another one (the check is skipped, with a log line, when
   the registry cannot be reached, e.g. on an offline Pi);
3. then the pull, with one progress bar per blob as Ollama streams them (``pulling <digest>`` lines, each with its
   own digest and size, then ``verifying sha256 digest``, ``writing manifest``, ``success``);
4. then ``/api/tags`` again: the manifest digest must be the catalog's.

The pull itself goes through the official ``ollama`` client (it is not timed, so its per-chunk cost does not
matter); the digest checks through the light stdlib client, since a run makes one before its idle baseline.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from bench.backends._common import normalize_digest, verdict
from bench.backends.base import ModelCheck
from bench.backends.ollama_http import DEFAULT_HOST, HTTPStatus, OllamaHTTP, OllamaHTTPError, one_line
from bench.backends.stream import DeadlinePassed
from bench.backends.ollama_registry import RegistryUnavailable, registry_base, remote_digest
from bench.catalog import ModelEntry
from bench.errors import BackendError

log = logging.getLogger(__name__)


def _where(host: str | None) -> str:
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def _client(host: str | None):
    import httpx
    import ollama

    return ollama.Client(host=_where(host), timeout=httpx.Timeout(connect=10.0, read=600.0, write=10.0, pool=10.0))


def _server_digests(host: str | None) -> dict[str, str | None]:
    """``/api/tags``: the digest of each model the server holds (a run checks this before its idle baseline, so it
    goes through the light stdlib client, not the official one)."""
    where = _where(host)
    http = OllamaHTTP(where)
    try:
        listing = http.request_json("GET", "/api/tags", timeout_s=60.0)
    except HTTPStatus as exc:
        raise BackendError(f"Ollama at {where}: GET /api/tags failed: {exc}") from None
    except (OllamaHTTPError, DeadlinePassed) as exc:
        raise BackendError(f"Ollama at {where} unreachable: {one_line(exc) or 'no reply'}") from None
    finally:
        http.close()
    return {m.get("model") or m.get("name"): normalize_digest(m.get("digest")) for m in listing.get("models") or []}


def check(entries: list[ModelEntry], host: str | None, allow_digest_override: bool = False) -> list[ModelCheck]:
    """The server's copy of each model against the catalog; only an unreachable server raises."""
    where = _where(host)
    digests = _server_digests(host)
    return [verdict(e, digests.get(e.tag), where, allow_digest_override) for e in entries]


def pull(entries: list[ModelEntry], host: str | None, progress: Callable[..., Any] | None = None,
         allow_digest_override: bool = False) -> list[ModelCheck]:
    """Pull what the server lacks or holds in another version, never over a copy that matches the catalog.

    ``progress`` is a tqdm-like factory (``tqdm.tqdm`` by default).
    """
    if progress is None:
        from tqdm import tqdm as progress
    where = _where(host)
    base = registry_base()
    out: list[ModelCheck] = []
    with _client(host) as client:
        local = _server_digests(host)
        for entry in entries:
            want = normalize_digest(entry.digest)
            remote, registry_note = _ask_registry(entry.tag, base)
            if local.get(entry.tag) == want:
                note = (f"kept the local copy; the registry's tag now has digest {remote} (re-pushed), not pulled"
                        if remote not in (None, want) else "present, not pulled")
                log.info("%s: %s", entry.tag, note)
                out.append(verdict(entry, want, where, allow_digest_override, note))
                continue
            if remote not in (None, want) and not allow_digest_override:
                note = (f"not pulled: the registry's tag has digest {remote}, not the catalog's"
                        + ("; the local copy was left as it is" if entry.tag in local else ""))
                out.append(ModelCheck(entry.tag, "mismatch", remote, want or "", f"registry {base}", note))
                continue
            _stream_pull(client, entry, where, progress)
            local = _server_digests(host)
            if entry.tag not in local:
                raise BackendError(f"{entry.tag}: pull reported success but the model is not in {where}/api/tags")
            out.append(verdict(entry, local[entry.tag], where, allow_digest_override, registry_note))
    return out


def _ask_registry(tag: str, base: str | None) -> tuple[str | None, str]:
    if base is None:
        return None, "registry not checked (BENCH_OLLAMA_REGISTRY=off)"
    try:
        return remote_digest(tag, base), ""
    except RegistryUnavailable as exc:
        log.warning("%s: registry not checked before pulling: %s", tag, exc)
        return None, f"registry not checked: {exc}"


def _stream_pull(client: Any, entry: ModelEntry, where: str, progress: Callable[..., Any]) -> None:
    """One pull with a progress bar per blob; Ollama's own steps go to the log."""
    import httpx
    import ollama

    bars: dict[str, Any] = {}
    shown: dict[str, int] = {}
    try:
        for step in client.pull(entry.tag, stream=True):
            if step.digest and step.total:
                bar = bars.get(step.digest)
                if bar is None:
                    bar = bars[step.digest] = progress(
                        total=step.total, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                        desc=f"{entry.tag} {normalize_digest(step.digest)[:12]}")
                    shown[step.digest] = 0
                completed = step.completed or 0
                if completed > shown[step.digest]:
                    bar.update(completed - shown[step.digest])
                    shown[step.digest] = completed
            elif step.status:
                log.info("%s: %s", entry.tag, step.status)
    except ollama.ResponseError as exc:
        raise BackendError(f"{entry.tag}: pull from {where} failed: {one_line(exc.error)}") from None
    except (ConnectionError, httpx.HTTPError) as exc:
        raise BackendError(f"{entry.tag}: pull from {where} failed: {type(exc).__name__}: {one_line(exc)}") from None
    finally:
        for bar in bars.values():
            bar.close()


__all__ = ["check", "pull"]
