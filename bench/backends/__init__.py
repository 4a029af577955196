"""Inference backends, and the registry that owns their kinds.

Each kind is one module, imported only when used (``ollama`` pulls in HTTP and retry code, ``llamacpp`` loads a
shared library), that provides ``BACKEND`` (its class) and:

- ``from_spec(spec) -> Backend``: the backend a spec's ``[backend]`` and ``[options]`` describe;
- ``check(entries, host, allow_digest_override) -> list[ModelCheck]``: the local copies against the catalog;
- ``pull(entries, host, progress, allow_digest_override) -> list[ModelCheck]``: fetch what is missing or
  different, never over a copy that matches the catalog, then verify.

Everything that differs between backends lives there; the spec, the runner and ``bench models`` ask this registry.
Adding a backend (llama.cpp's own HTTP server, say) is its module plus one line in ``KINDS``.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

from bench.backends.base import AnswerFailed, AnswerTimeout, Backend, LoadFailed, ModelCheck, ModelSkipped
from bench.errors import CatalogError, did_you_mean

if TYPE_CHECKING:
    from bench.catalog import ModelEntry
    from bench.spec import Spec

KINDS: dict[str, str] = {
    "ollama": "bench.backends.ollama",
    "llamacpp": "bench.backends.llamacpp",
}

__all__ = ["AnswerFailed", "AnswerTimeout", "Backend", "KINDS", "LoadFailed", "ModelCheck", "ModelSkipped",
           "backend_for", "check", "get_backend", "in_process", "kind_module", "pull"]


def kind_module(kind: str) -> ModuleType:
    """The module of a backend kind (imported on first use)."""
    try:
        name = KINDS[kind]
    except KeyError:
        raise CatalogError(did_you_mean("backend", kind, list(KINDS))) from None
    return importlib.import_module(name)


def get_backend(kind: str, **options: Any) -> Backend:
    """A backend by name; ``options`` go to its constructor (e.g. ``host=`` for ollama, ``n_ctx=`` for llamacpp)."""
    return kind_module(kind).BACKEND(**options)


def in_process(kind: str) -> bool:
    """Whether a kind's inference runs in the runner's own process, so per-answer CPU readings separate it from
    everything else on the machine (the nightly's busy check relies on that)."""
    return bool(kind_module(kind).BACKEND.in_process)


def backend_for(spec: "Spec") -> Backend:
    """The backend a spec runs on, configured from its ``[backend]`` and ``[options]``."""
    return kind_module(spec.backend.kind).from_spec(spec)


def _by_kind(entries: Iterable["ModelEntry"], action: Callable[[ModuleType, list], list[ModelCheck]]) -> list[ModelCheck]:
    """Run ``action`` once per backend kind on its models; results in the order the models were given."""
    entries = list(entries)
    groups: dict[str, list] = defaultdict(list)
    for entry in entries:
        groups[entry.backend].append(entry)
    done: dict[str, ModelCheck] = {}
    for kind, group in groups.items():
        done.update((r.tag, r) for r in action(kind_module(kind), group))
    return [done[e.tag] for e in entries]


def check(entries: Iterable["ModelEntry"], *, host: str | None = None,
          allow_digest_override: bool = False) -> list[ModelCheck]:
    """What each model's backend holds, against the catalog; never raises on a mismatch (the caller decides)."""
    return _by_kind(entries, lambda mod, group: mod.check(group, host, allow_digest_override))


def pull(entries: Iterable["ModelEntry"], *, host: str | None = None, progress: Callable[..., Any] | None = None,
         allow_digest_override: bool = False) -> list[ModelCheck]:
    """Fetch each model its backend lacks (a progress bar per blob), verified against the catalog."""
    return _by_kind(entries, lambda mod, group: mod.pull(group, host, progress, allow_digest_override))
