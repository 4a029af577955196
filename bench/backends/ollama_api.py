"""What the toolkit relies on about the pinned Ollama release (0.6.0), each fact with the source it comes from.

Kept apart from the HTTP and backend code so the rules can be read, tested and updated in one place when the
pinned release changes (docs/ollama.md lists the same facts for readers).
"""

from __future__ import annotations

import re
from typing import Sequence

from bench.backends.goduration import NS_PER_S

# api/types.go (v0.6.0): the json names of Options and of its embedded Runner. Unknown names are dropped by the
# server with a warning (Options.FromMap), so the toolkit refuses them instead of letting them pass unnoticed.
RUNNER_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "logits_all",
                            "vocab_only", "use_mmap", "use_mlock", "num_thread"})
"""Load-time options: a request whose values differ from the loaded runner's makes the scheduler reload the model
(server/sched.go needsReload compares Runner structs), inside that request's time."""
OPTIONS = RUNNER_OPTIONS | frozenset({
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "temperature",
    "repeat_penalty", "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta", "stop"})

DEFAULT_KEEP_ALIVE_NS = 300 * NS_PER_S
"""envconfig.KeepAlive (v0.6.0): 5 minutes unless OLLAMA_KEEP_ALIVE says otherwise."""


def default_context(server_version: str | None) -> int:
    """envconfig.ContextLength: 2048 through 0.6.6, 4096 from 0.6.7 (OLLAMA_CONTEXT_LENGTH overrides both, which
    a client cannot see: specs set ``num_ctx`` explicitly so the context is known)."""
    parts = re.findall(r"\d+", server_version or "")
    version = tuple(int(p) for p in parts[:3]) if len(parts) >= 3 else (0, 6, 0)
    return 4096 if version >= (0, 6, 7) else 2048


# Load failures come back as HTTP 500 from the scheduler (server/routes.go handleScheduleError), with these texts:
LOAD_FAILURES = (
    "model requires more system memory",  # llm/server.go NewLlamaServer: the estimate exceeds free RAM + swap
    "llama runner process has terminated",  # llm/server.go WaitUntilRunning: the runner exited while loading
    "llama runner process no longer running",  # llm/server.go WaitUntilRunning / getServerStatus
    "timed out waiting for llama runner to start",  # llm/server.go WaitUntilRunning: OLLAMA_LOAD_TIMEOUT stall
    "this model may be incompatible with your version of ollama",  # server/sched.go load
)


def is_load_failure(message: str) -> bool:
    """Whether an HTTP 500 says the model could not be loaded (retrying will not help; the model is skipped)."""
    text = message.lower()
    return any(marker in text for marker in LOAD_FAILURES)


def cached_prefix(previous: Sequence[int], prompt: Sequence[int]) -> int:
    """How many leading prompt tokens the runner reuses from its cache slot instead of evaluating them.

    runner/llamarunner/cache.go LoadCacheSlot (v0.6.0): the longest common prefix of the slot's inputs and the new
    prompt, minus one when it covers the whole prompt ("leave one input to sample"). ``prompt_eval_count`` still
    counts the whole prompt (runner.go: ``numPromptInputs`` is set before the slot is loaded).
    """
    n = 0
    for a, b in zip(previous, prompt):
        if a != b:
            break
        n += 1
    return n - 1 if n and n == len(prompt) else n


__all__ = ["DEFAULT_KEEP_ALIVE_NS", "LOAD_FAILURES", "OPTIONS", "RUNNER_OPTIONS", "cached_prefix",
           "default_context", "is_load_failure"]
