"""The models stage: check and fetch the catalog's models through their backends, refuse what differs.

Which backend holds a model, how it is fetched and how its digest is read is the backend registry's business
(``bench.backends``): Ollama pulls, never over a copy that matches the catalog; llama.cpp models are GGUF files a
package ships, checked by their sha256. This module turns catalog tags into entries and a failed check into one
line.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from bench import backends
from bench.backends.base import ModelCheck
from bench.catalog import ModelEntry, model as catalog_model
from bench.errors import BackendError, DigestMismatch

log = logging.getLogger(__name__)

__all__ = ["ModelCheck", "check", "pull", "refuse_on_mismatch"]


def _entries(models: Iterable[ModelEntry | str]) -> list[ModelEntry]:
    return [m if isinstance(m, ModelEntry) else catalog_model(m) for m in models]


def check(host: str | None, models: Iterable[ModelEntry | str], allow_digest_override: bool = False) -> list[ModelCheck]:
    """What each backend holds against the catalog; never raises on a mismatch (the caller decides)."""
    return backends.check(_entries(models), host=host, allow_digest_override=allow_digest_override)


def pull(host: str | None, models: Iterable[ModelEntry | str], progress: Callable[..., Any] | None = None,
         allow_digest_override: bool = False) -> list[ModelCheck]:
    """Fetch each model its backend lacks (a progress bar per blob) and verify it; see ``refuse_on_mismatch``."""
    return backends.pull(_entries(models), host=host, progress=progress, allow_digest_override=allow_digest_override)


def refuse_on_mismatch(results: list[ModelCheck]) -> None:
    """Raise for the first failed check (one line naming both digests), after logging all of them."""
    bad = [r for r in results if not r.ok]
    for r in bad:
        log.error("%s: %s (got %s, catalog %s)%s", r.tag, r.status, r.digest, r.catalog_digest,
                  f": {r.note}" if r.note else "")
    if not bad:
        return
    first = bad[0]
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    note = f"; {first.note}" if first.note else ""
    if first.status == "missing":
        raise BackendError(f"{first.tag}: missing at {first.where}{note}{more}")
    raise DigestMismatch(f"{first.tag}: digest {first.digest} at {first.where} differs from the catalog's "
                         f"{first.catalog_digest}{note}{more}")
