"""How many prompt tokens of an answer Ollama served from its prompt cache (it reports none of this itself).

Ollama 0.6.0 always asks its runner to cache prompts (llm/server.go sends ``cache_prompt: true``); the runner
reuses the longest common prefix of the slot's previous inputs and evaluates only the rest, while
``prompt_eval_count`` counts the whole prompt. Consecutive prompts share at least the chat template's head, so
"energy per prompt token" would silently count reused tokens as evaluated.

The final chunk of ``/api/generate`` carries ``context``: the tokens of the templated prompt and the response
(server/routes.go GenerateHandler). The tracker keeps the last answer's tokens and, for the next answer on the same
loaded runner, applies the runner's own rule (``ollama_api.cached_prefix``). It answers None whenever it cannot
know: another model or client in between, a failed or incomplete answer, a truncated prompt. It knows the cache is
empty when the runner is new: the model was not loaded, its keep-alive ran out, or load-time options changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from bench.backends.ollama_api import cached_prefix


@dataclass
class CacheTracker:
    """The prompt cache of the one runner this client last used, as far as this client can tell."""

    tag: str | None = None
    load: tuple | None = None  # load-time options of that runner; None: the next request loads a fresh runner
    tokens: tuple[int, ...] | None = None  # the slot's inputs after the last answer; None: unknown
    ended_ns: int = 0
    keep_ns: int = 0

    def forget(self) -> None:
        """Nothing is known about the server's cache any more."""
        self.tag, self.load, self.tokens = None, None, None

    def empty(self, tag: str) -> None:
        """``tag`` is not loaded: its next request starts a fresh runner with an empty cache."""
        self.tag, self.load, self.tokens, self.keep_ns = tag, None, (), 2**63 - 1

    def observe(self, tag: str, load: tuple, context: Sequence[int], prompt_eval_count: int | None, num_ctx: int,
                keep_ns: int, took_ns: int) -> int | None:
        """The cached prompt tokens of the answer that just ended with ``context`` after ``took_ns`` (Ollama's
        ``total_duration``); remembers it for the next answer."""
        now = time.monotonic_ns()
        cached = self._estimate(tag, load, context, prompt_eval_count, num_ctx, now - took_ns)
        self.tag, self.load, self.tokens, self.ended_ns, self.keep_ns = tag, load, tuple(context), now, keep_ns
        return cached

    def _estimate(self, tag: str, load: tuple, context: Sequence[int], prompt_eval_count: int | None, num_ctx: int,
                  started_ns: int) -> int | None:
        if self.tokens is None or self.tag != tag or prompt_eval_count is None:
            return None
        if prompt_eval_count >= num_ctx:
            return None  # the runner held the truncated prompt, which ``context`` does not show
        fresh = (self.load is None or self.load != load or not self.tokens
                 or started_ns - self.ended_ns >= self.keep_ns)
        if fresh:
            return 0
        return cached_prefix(self.tokens, context[:prompt_eval_count])


__all__ = ["CacheTracker"]
