"""The paper's backend: an Ollama server over HTTP (``bench.backends.ollama_http``), as the pinned 0.6.0 behaves.

Differences from the paper's call (``ollama.generate(model, prompt, options={'temperature': 0})``, non-streaming)
and why:

- it streams, so the host can stamp ``t_first_token_ns`` (the prefill/decode split of the energy window);
  Ollama's own timing fields come from the final (``done``) chunk, the same values the paper read. An answer
  that ends without one (Ollama's repeat guard stops a looping answer so) is kept with its text, as the paper's
  non-streaming call got it;
- every socket wait is bounded by the answer's remaining time, so a stalled server ends as ``AnswerTimeout`` at
  the deadline, carrying the partial answer, and the connection is closed so Ollama cancels the generation;
- before the first token, connection errors, 5xx replies and an in-stream runner error (Ollama reports a runner
  that died before answering as a 200 stream with one ``error`` line) are retried (tenacity, bounded, logged);
  afterwards they are ``AnswerFailed(reason)``. A load failure (HTTP 500 "model requires more system memory",
  a dead runner, a load timeout) is ``LoadFailed``: the runner skips the model and goes on;
- the warm-up sends the spec's options, so the first answer does not reload the model for different load-time
  options (``num_ctx``, ``num_thread``, ``num_batch``) inside its energy window.

Retries restart the answer: ``t_send_ns`` is the send time of the attempt that produced it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import tenacity

from bench.backends._common import DEFAULT_RAM_OVERHEAD_BYTES, check_digest, mem_available_bytes, ram_fit
from bench.backends.base import AnswerFailed, AnswerTimeout, LoadFailed, ModelSkipped
from bench.backends.goduration import DurationError, keep_alive_ns
from bench.backends.ollama_api import (DEFAULT_KEEP_ALIVE_NS, OPTIONS, RUNNER_OPTIONS, default_context,
                                       is_load_failure)
from bench.backends.ollama_cache import CacheTracker
from bench.backends.ollama_pull import check, pull  # the kind's model store, which the registry calls
from bench.backends.ollama_http import (Dropped, HTTPStatus, Malformed, OllamaHTTP, OllamaHTTPError, StreamError,
                                        Unreachable, one_line)
from bench.backends.stream import Arrival, Chunk, DeadlinePassed, completion_facts, timed_generate
from bench.catalog import ModelEntry
from bench.errors import BackendError
from bench.records import Accounting, Completion

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OPTIONS: dict[str, Any] = {"temperature": 0}  # the paper's only option
WARMUP_PROMPT = "Say hello."
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


class _Retryable(Exception):
    """A failure before the first token that another attempt may cure."""

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class OllamaBackend:
    """One Ollama server. ``options`` (the spec's) go under every answer's options and the warm-up's, on top of
    the paper's ``temperature: 0``; ``keep_alive`` is sent as given (a Go duration string such as ``"30m"``, or
    seconds; negative keeps the model loaded; None leaves the server's default, 5 minutes)."""

    name = "ollama"
    in_process = False  # the server does the work: the runner's CPU readings do not include it

    def __init__(
        self,
        host: str | None = None,
        *,
        options: dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 60.0,
        retries: int = 3,
        retry_wait_s: float = 0.5,
        retry_wait_max_s: float = 8.0,
        allow_digest_override: bool = False,
        ram_overhead_bytes: int = DEFAULT_RAM_OVERHEAD_BYTES,
        mem_available: Callable[[], int | None] | None = None,
        warmup: bool = True,
        warmup_prompt: str = WARMUP_PROMPT,
        warmup_tokens: int = 8,
        warmup_timeout_s: float = 1200.0,
    ) -> None:
        self.options = dict(options or {})
        self.keep_alive = self.options.pop("keep_alive", keep_alive)
        self._check_options(self.options)
        try:
            self._keep_ns = DEFAULT_KEEP_ALIVE_NS if self.keep_alive is None else keep_alive_ns(self.keep_alive)
        except DurationError as exc:
            raise BackendError(f"ollama: keep_alive {self.keep_alive!r}: {exc} (Ollama would answer HTTP 400)") from None
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s
        self.retry_wait_max_s = retry_wait_max_s
        self.allow_digest_override = allow_digest_override
        self.ram_overhead_bytes = ram_overhead_bytes
        self.warmup = warmup
        self.warmup_prompt = warmup_prompt
        self.warmup_tokens = warmup_tokens
        self.warmup_timeout_s = warmup_timeout_s
        self._http = OllamaHTTP(host or os.environ.get("OLLAMA_HOST") or "", connect_timeout_s)
        self.base_url = self._http.base_url
        if mem_available is None and (urlsplit(self.base_url).hostname or "") in LOCAL_HOSTS:
            mem_available = mem_available_bytes  # MemAvailable of this host is the server's only when it is local
        self._mem_available = mem_available
        self._server_version: str | None = None
        self._cache = CacheTracker()

    # -- protocol ---------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "host": self.base_url,
            "server_version": self.server_version(),
            "keep_alive": self.keep_alive,
            "options": {**DEFAULT_OPTIONS, **self.options},
        }

    def server_version(self) -> str | None:
        if self._server_version is None:
            self._server_version = self._meta("GET", "/api/version").get("version")
        return self._server_version

    def prepare(self, model: ModelEntry) -> dict[str, Any]:
        """Check the model is on the server with the catalog's digest, record its facts, warm it up if asked."""
        if model.backend != self.name:
            raise BackendError(f"{model.tag}: catalog backend is {model.backend!r}, not {self.name!r}")
        facts: dict[str, Any] = {"backend": self.name, "host": self.base_url, "model": model.tag,
                                 "server_version": self.server_version()}
        listing = self._meta("GET", "/api/tags").get("models") or []
        entry = next((m for m in listing if model.tag in (m.get("model"), m.get("name"))), None)
        if entry is None:
            raise BackendError(f"{model.tag}: not on the Ollama server at {self.base_url}; pull it first "
                               f"(bench models pull --model {model.tag})")
        facts.update(check_digest(model, entry.get("digest"), f"Ollama at {self.base_url}", self.allow_digest_override))
        facts["size_bytes"] = entry.get("size")
        facts.update(self._show_facts(model.tag))
        loaded = self._loaded_models()
        if loaded is None or model.tag in loaded:
            facts["ram_check"] = "already loaded" if loaded else "unknown: GET /api/ps failed"
            self._cache.forget()  # someone else's requests may have filled its prompt cache
        else:
            self._cache.empty(model.tag)  # the next request loads it: nothing is cached
            if self._mem_available is None:
                facts["ram_check"] = f"unknown: server {self.base_url} is not this host"
            else:
                facts.update(ram_fit(model, self._mem_available(), self.ram_overhead_bytes))
        if self.warmup:
            facts["warmup"] = self._warm_up(model)
        return facts

    def generate(self, model: ModelEntry, prompt: str, options: dict[str, Any], timeout_s: float) -> Completion:
        opts = {**DEFAULT_OPTIONS, **self.options, **options}
        keep_alive = opts.pop("keep_alive", self.keep_alive)
        self._check_options(opts)
        body: dict[str, Any] = {"model": model.tag, "prompt": prompt, "options": opts, "stream": True}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        load = tuple(sorted((k, v) for k, v in opts.items() if k in RUNNER_OPTIONS))
        num_ctx = int(opts["num_ctx"]) if "num_ctx" in opts else default_context(self._version_or_none())
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        deadline = time.monotonic() + timeout_s

        def attempt() -> Completion:
            return timed_generate(model.tag, timeout_s, deadline_ns,
                                  lambda d: self._chunks(model.tag, body, d, load, num_ctx))

        try:
            completion = self._with_retries(attempt, deadline)
        except _Retryable as exc:
            self._cache.forget()
            if time.monotonic() >= deadline:
                raise AnswerTimeout(f"{model.tag}: no answer within {timeout_s:g} s ({exc.reason})") from None
            if exc.unreachable:
                raise BackendError(f"Ollama at {self.base_url} unreachable after {self.retries + 1} attempts: "
                                   f"{exc.reason}") from None
            raise AnswerFailed(f"{model.tag}: {exc.reason} (after {self.retries + 1} attempts)") from None
        except BaseException:
            self._cache.forget()
            raise
        if not completion.complete:
            self._cache.forget()
        return completion

    def close(self) -> None:
        self._http.close()

    # -- internals --------------------------------------------------------------------------------------------

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise BackendError(f"ollama: unknown option(s) {', '.join(unknown)} (Ollama 0.6.0 would ignore them)")

    def _version_or_none(self) -> str | None:
        try:
            return self.server_version()
        except BackendError:
            return None

    def _warm_up(self, model: ModelEntry) -> dict[str, Any]:
        """One short answer with the spec's options (so the runner is loaded as the answers need it)."""
        try:
            warm = self.generate(model, self.warmup_prompt, {"num_predict": self.warmup_tokens}, self.warmup_timeout_s)
        except AnswerTimeout:
            raise ModelSkipped(f"{model.tag}: skipped: the warm-up did not finish within "
                               f"{self.warmup_timeout_s:g} s") from None
        except AnswerFailed as exc:
            raise ModelSkipped(f"{model.tag}: skipped: the warm-up failed: {exc}") from None
        return completion_facts(warm)

    def _show_facts(self, tag: str) -> dict[str, Any]:
        show = self._meta("POST", "/api/show", {"model": tag})
        details = show.get("details") or {}
        info = show.get("model_info") or {}
        arch = info.get("general.architecture")
        return {"quantization_level": details.get("quantization_level"), "parameter_size": details.get("parameter_size"),
                "family": details.get("family"), "format": details.get("format"), "architecture": arch,
                "context_length": info.get(f"{arch}.context_length") if arch else None,
                "parameters": show.get("parameters")}

    def _chunks(self, tag: str, body: dict[str, Any], deadline_ns: int, load: tuple, num_ctx: int) -> Iterator[Chunk]:
        """One attempt's stream as chunks (the hot path: two dict lookups per chunk), each read's arrival first."""
        pieces = 0
        lines = self._http.stream("/api/generate", body, deadline_ns)
        try:
            for obj in lines:
                if obj.__class__ is Arrival:
                    yield obj
                elif obj.get("done"):
                    yield self._done(tag, obj, load, num_ctx)
                else:
                    piece = obj.get("response") or ""
                    pieces += piece != ""
                    yield piece
        except HTTPStatus as exc:
            raise self._status_error(tag, exc, pieces) from None
        except (StreamError, Dropped) as exc:
            what = "runner error" if isinstance(exc, StreamError) else "connection dropped"
            if pieces == 0:
                raise _Retryable(f"{what} before the first token: {exc}") from None
            raise AnswerFailed(f"{tag}: {what} after {pieces} pieces: {exc}") from None
        except Unreachable as exc:
            raise _Retryable(f"cannot connect: {exc}", unreachable=True) from None
        except Malformed as exc:
            raise AnswerFailed(f"{tag}: {exc} after {pieces} pieces") from None
        finally:
            lines.close()  # an answer ended early (deadline) closes the connection: Ollama cancels the generation

    def _status_error(self, tag: str, exc: HTTPStatus, pieces: int) -> Exception:
        if exc.status == 404:
            return BackendError(f"{tag}: not found on the Ollama server at {self.base_url}: {exc.message} "
                                f"(bench models pull --model {tag})")
        if exc.status == 400:
            return BackendError(f"{tag}: Ollama at {self.base_url} refused the request: {exc.message}")
        if exc.status == 500 and is_load_failure(exc.message):
            return LoadFailed(f"{tag}: skipped: Ollama could not load it: {exc.message}")
        if exc.status >= 500 and pieces == 0:
            return _Retryable(f"HTTP {exc.status}: {exc.message}")
        return AnswerFailed(f"{tag}: HTTP {exc.status}: {exc.message}")

    def _done(self, tag: str, obj: dict[str, Any], load: tuple, num_ctx: int) -> Accounting:
        """The final chunk: Ollama's counters and durations as reported, plus how much of the prompt was cached."""
        prompt_n = obj.get("prompt_eval_count")
        context = obj.get("context")
        cached = None
        if context is not None:
            cached = self._cache.observe(tag, load, context, prompt_n, num_ctx, self._keep_ns,
                                         obj.get("total_duration") or 0)
        return Accounting(prompt_eval_count=prompt_n, prompt_eval_duration_ns=obj.get("prompt_eval_duration"),
                    eval_count=obj.get("eval_count"), eval_duration_ns=obj.get("eval_duration"),
                    load_duration_ns=obj.get("load_duration"), total_duration_ns=obj.get("total_duration"),
                    done_reason=obj.get("done_reason"), prompt_cached_tokens=cached, num_ctx=num_ctx)

    def _with_retries(self, fn: Callable[[], T], deadline: float) -> T:
        def wait(state: tenacity.RetryCallState) -> float:
            step = min(self.retry_wait_s * 2 ** (state.attempt_number - 1), self.retry_wait_max_s)
            return max(0.0, min(step, deadline - time.monotonic()))

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("ollama at %s: attempt %d failed (%s); retrying in %.2f s", self.base_url,
                        state.attempt_number, exc, state.next_action.sleep if state.next_action else 0.0)

        retryer = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1) | (lambda state: time.monotonic() >= deadline),
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=log_retry,
            reraise=True,
        )
        return retryer(fn)

    def _meta(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A metadata request (version, tags, show, ps) with the same retries, bounded by ``request_timeout_s``."""
        what = f"{method} {path}"
        deadline = time.monotonic() + self.request_timeout_s

        def once() -> dict[str, Any]:
            try:
                reply = self._http.request_json(method, path, body, timeout_s=max(0.001, deadline - time.monotonic()))
            except HTTPStatus as exc:
                if exc.status >= 500:
                    raise _Retryable(f"{what}: {exc}") from None
                raise BackendError(f"Ollama at {self.base_url}: {what}: {exc}") from None
            except DeadlinePassed:
                raise _Retryable(f"{what}: no reply within {self.request_timeout_s:g} s", unreachable=True) from None
            except OllamaHTTPError as exc:
                raise _Retryable(f"{what}: {exc}", unreachable=isinstance(exc, (Unreachable, Dropped))) from None
            if not isinstance(reply, dict):
                raise BackendError(f"Ollama at {self.base_url}: {what}: unexpected reply {one_line(reply)[:80]}")
            return reply

        try:
            return self._with_retries(once, deadline)
        except _Retryable as exc:
            raise BackendError(f"Ollama at {self.base_url} unreachable or failing: {exc.reason}") from None

    def _loaded_models(self) -> set[str] | None:
        try:
            ps = self._meta("GET", "/api/ps")
        except BackendError:
            return None  # /api/ps is optional: without it nothing is assumed about the loaded runner
        return {m.get("model") or m.get("name") for m in ps.get("models") or []}


BACKEND = OllamaBackend


def from_spec(spec) -> OllamaBackend:  # noqa: ANN001 - a bench.spec.Spec (not imported: no cycle)
    """The spec's server, options (also the warm-up's), keep-alive and warm-up choice."""
    b = spec.backend
    return OllamaBackend(b.host, options=dict(spec.options), keep_alive=b.keep_alive, warmup=b.warmup,
                         warmup_timeout_s=b.timeout_s, allow_digest_override=b.allow_digest_override)

__all__ = ["BACKEND", "OllamaBackend", "check", "from_spec", "pull"]
