"""Inference backends: Ollama over HTTP (the paper's) and in-process llama.cpp (the demo's and the tests').

Explicit registration, no plugin scanning: ``BACKENDS`` maps a name to a factory that imports its module lazily
(``ollama`` costs ~0.6 s to import, ``llama_cpp`` loads a shared library).
"""

from __future__ import annotations

from typing import Any, Callable

from bench.backends.base import AnswerFailed, AnswerTimeout, Backend, ModelSkipped
from bench.errors import CatalogError, did_you_mean

__all__ = ["AnswerFailed", "AnswerTimeout", "Backend", "BACKENDS", "ModelSkipped", "get_backend"]


def _ollama(**options: Any) -> Backend:
    from bench.backends.ollama import OllamaBackend

    return OllamaBackend(**options)


def _llamacpp(**options: Any) -> Backend:
    from bench.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(**options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "ollama": _ollama,
    "llamacpp": _llamacpp,
}


def get_backend(kind: str, **options: Any) -> Backend:
    """A backend by name; ``options`` go to its constructor (e.g. ``host=`` for ollama, ``n_ctx=`` for llamacpp)."""
    try:
        factory = BACKENDS[kind]
    except KeyError:
        raise CatalogError(did_you_mean("backend", kind, list(BACKENDS))) from None
    return factory(**options)
