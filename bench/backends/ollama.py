"""The paper's backend: an Ollama server over HTTP, through the official ``ollama`` Python client.

Differences from the paper's call (``ollama.generate(model, prompt, options={'temperature': 0})``, non-streaming)
and why:

- it streams, so the host can stamp ``t_first_token_ns`` (the prefill/decode split of the energy window);
  Ollama's own timing fields come from the final (``done``) chunk, the same values the paper read;
- the per-answer timeout (paper: 1200 s via SIGALRM) is enforced at the socket: every read and write is bounded
  by the answer's remaining time (a small httpcore network backend clamps each I/O timeout), and the deadline is
  also checked per chunk. A server that stalls mid-stream therefore ends as ``AnswerTimeout`` at the deadline,
  carrying the partial answer, and the connection is closed so Ollama cancels the generation;
- connection errors and 5xx before the first token are retried (tenacity, bounded, logged); afterwards a 5xx or
  a dropped stream is ``AnswerFailed(reason)`` and an unreachable server is ``BackendError``.

Retries restart the answer: ``t_send_ns`` is the send time of the attempt that produced it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

import httpcore
import httpx
import ollama
import pydantic
import tenacity

from bench.backends._common import (
    DEFAULT_RAM_OVERHEAD_BYTES,
    check_digest,
    mem_available_bytes,
    ram_fit,
)
from bench.backends.base import AnswerFailed, AnswerTimeout
from bench.backends.llamacpp import completion_facts
from bench.catalog import ModelEntry
from bench.errors import BackendError
from bench.records import Completion

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_OPTIONS: dict[str, Any] = {"temperature": 0}  # the paper's only option
KNOWN_OPTIONS = frozenset(ollama.Options.model_fields)
WARMUP_PROMPT = "Say hello."
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})

try:
    from importlib.metadata import version as _pkg_version

    CLIENT_VERSION = _pkg_version("ollama")
except Exception:  # noqa: BLE001 - metadata missing in odd installs
    CLIENT_VERSION = None


# -- deadline-bounded sockets ----------------------------------------------------------------------------------


class _Deadline(threading.local):
    """The current answer's deadline (``time.monotonic()`` seconds) for this thread; None = no bound."""

    at: float | None = None

    def clamp(self, timeout: float | None, exc: type[Exception]) -> float | None:
        if self.at is None:
            return timeout
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise exc("answer deadline passed")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # noqa: ANN001 - httpcore's signature
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.clamp(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001
        stream = self._inner.connect_tcp(
            host, port, self._deadline.clamp(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ANN001
        stream = self._inner.connect_unix_socket(path, self._deadline.clamp(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport(deadline: _Deadline) -> httpx.HTTPTransport:
    """httpx's default transport with its connection pool rebuilt on the deadline-clamping network backend."""
    transport = httpx.HTTPTransport()
    old = transport._pool  # httpx exposes no network_backend argument; the pool is rebuilt with the same TLS context
    transport._pool = httpcore.ConnectionPool(
        ssl_context=getattr(old, "_ssl_context", None),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=_DeadlineBackend(deadline),
    )
    old.close()
    return transport


# -- retry classification --------------------------------------------------------------------------------------


class _Retryable(Exception):
    """A failure before the first token that another attempt may cure."""

    def __init__(self, reason: str, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class _Stopped(Exception):
    """An attempt ended for good (timeout, failure, fatal): carries the exception to raise."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


class OllamaBackend:
    """One Ollama server. ``options`` are defaults under every answer's options (the spec's), on top of the
    paper's ``temperature: 0``; ``keep_alive`` is sent as the request parameter (``-1`` keeps the model loaded
    through a run)."""

    name = "ollama"

    def __init__(
        self,
        host: str | None = None,
        *,
        options: dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 1200.0,
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
        import os

        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self.options = dict(options or {})
        self.keep_alive = self.options.pop("keep_alive", keep_alive)
        self._check_options(self.options)
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
        self._deadline = _Deadline()
        timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=connect_timeout_s, pool=connect_timeout_s)
        self._client = ollama.Client(host=self.host, timeout=timeout, transport=_deadline_transport(self._deadline))
        self.base_url = str(self._client._client.base_url).rstrip("/")
        if mem_available is None and (urlparse(self.base_url).hostname or "") in LOCAL_HOSTS:
            mem_available = mem_available_bytes  # MemAvailable of this host is the server's only when it is local
        self._mem_available = mem_available
        self._server_version: str | None = None

    # -- protocol ---------------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "host": self.base_url,
            "client_version": CLIENT_VERSION,
            "server_version": self.server_version(),
            "keep_alive": self.keep_alive,
            "options": {**DEFAULT_OPTIONS, **self.options},
        }

    def server_version(self) -> str | None:
        if self._server_version is None:
            # The client (0.6.3) has no version(); its raw request keeps its error mapping.
            data = self._meta(lambda: self._client._request_raw("GET", "/api/version").json(), "GET /api/version")
            self._server_version = data.get("version")
        return self._server_version

    def prepare(self, model: ModelEntry) -> dict[str, Any]:
        if model.backend != self.name:
            raise BackendError(f"{model.tag}: catalog backend is {model.backend!r}, not {self.name!r}")
        facts: dict[str, Any] = {"backend": self.name, "host": self.base_url, "model": model.tag}
        facts["server_version"] = self.server_version()
        listing = self._meta(self._client.list, "GET /api/tags")
        entry = next((m for m in listing.models if m.model == model.tag), None)
        if entry is None:
            raise BackendError(
                f"{model.tag}: not on the Ollama server at {self.base_url}; pull it first (bench models pull --model {model.tag})"
            )
        facts.update(check_digest(model, entry.digest, f"Ollama at {self.base_url}", self.allow_digest_override))
        facts["size_bytes"] = int(entry.size) if entry.size is not None else None
        show = self._meta(lambda: self._client.show(model.tag), "POST /api/show")
        details = show.details
        info = dict(show.modelinfo or {})
        arch = info.get("general.architecture")
        facts.update(
            quantization_level=details.quantization_level if details else None,
            parameter_size=details.parameter_size if details else None,
            family=details.family if details else None,
            format=details.format if details else None,
            architecture=arch,
            context_length=info.get(f"{arch}.context_length") if arch else None,
            parameters=show.parameters,
        )
        loaded = self._loaded_models()
        if model.tag in loaded:
            facts["ram_check"] = "already loaded"
        elif self._mem_available is None:
            facts["ram_check"] = f"unknown: server {self.base_url} is not this host"
        else:
            facts.update(ram_fit(model, self._mem_available(), self.ram_overhead_bytes))
        if self.warmup:
            warm = self.generate(model, self.warmup_prompt, {"num_predict": self.warmup_tokens}, self.warmup_timeout_s)
            facts["warmup"] = completion_facts(warm)
        return facts

    def generate(self, model: ModelEntry, prompt: str, options: dict[str, Any], timeout_s: float) -> Completion:
        opts = dict(options)
        keep_alive = opts.pop("keep_alive", self.keep_alive)
        self._check_options(opts)
        opts = {**DEFAULT_OPTIONS, **self.options, **opts}
        deadline = time.monotonic() + timeout_s
        try:
            return self._with_retries(lambda: self._attempt(model, prompt, opts, keep_alive, deadline, timeout_s), deadline)
        except _Stopped as stop:
            raise stop.exc from None
        except _Retryable as exc:
            if time.monotonic() >= deadline:
                raise AnswerTimeout(f"{model.tag}: no answer within {timeout_s:g} s ({exc.reason})") from None
            if exc.unreachable:
                raise BackendError(f"Ollama at {self.base_url} unreachable after {self.retries + 1} attempts: {exc.reason}") from None
            raise AnswerFailed(f"{model.tag}: {exc.reason} (after {self.retries + 1} attempts)") from None

    def unload(self, model: ModelEntry) -> None:
        """Ask the server to unload the model (empty prompt, ``keep_alive: 0``), e.g. before idle measurement."""
        self._meta(lambda: self._client.generate(model=model.tag, prompt="", keep_alive=0), "unload")

    def close(self) -> None:
        self._client.close()

    # -- internals --------------------------------------------------------------------------------------------

    @staticmethod
    def _check_options(options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - KNOWN_OPTIONS)
        if unknown:
            raise BackendError(f"ollama: unknown option(s) {', '.join(unknown)} (not in ollama.Options)")

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

    def _meta(self, fn: Callable[[], T], what: str) -> T:
        """A metadata request (tags, show, version, ps) with the same retries, bounded by ``request_timeout_s``."""
        deadline = time.monotonic() + self.request_timeout_s

        def once() -> T:
            self._deadline.at = deadline
            try:
                return fn()
            except ollama.ResponseError as exc:
                if exc.status_code >= 500:
                    raise _Retryable(f"{what}: HTTP {exc.status_code}: {_one_line(exc.error)}", unreachable=False) from None
                raise _Stopped(BackendError(f"Ollama at {self.base_url}: {what}: HTTP {exc.status_code}: {_one_line(exc.error)}")) from None
            except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise _Retryable(f"{what}: {_one_line(str(exc)) or type(exc).__name__}", unreachable=True) from None
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise _Retryable(f"{what}: {type(exc).__name__}: {_one_line(str(exc))}", unreachable=True) from None
            finally:
                self._deadline.at = None

        try:
            return self._with_retries(once, deadline)
        except _Stopped as stop:
            raise stop.exc from None
        except _Retryable as exc:
            raise BackendError(f"Ollama at {self.base_url} unreachable or failing: {exc.reason}") from None

    def _loaded_models(self) -> set[str]:
        try:
            ps = self._meta(self._client.ps, "GET /api/ps")
        except BackendError:
            return set()  # /api/ps is optional for this check
        return {m.model for m in ps.models if m.model}

    def _attempt(
        self, model: ModelEntry, prompt: str, opts: dict[str, Any], keep_alive: Any, deadline: float, timeout_s: float
    ) -> Completion:
        pieces: list[str] = []
        t_first: int | None = None
        t_last: int | None = None
        final: ollama.GenerateResponse | None = None
        n_chunks = 0

        def partial() -> Completion:
            return Completion(text="".join(pieces), t_send_ns=t_send, t_first_token_ns=t_first,
                              t_last_token_ns=time.monotonic_ns())

        def timeout(why: str) -> _Stopped:
            return _Stopped(AnswerTimeout(
                f"{model.tag}: no complete answer within {timeout_s:g} s ({why}; {len(pieces)} chunks so far)",
                partial=partial()))

        self._deadline.at = deadline
        t_send = time.monotonic_ns()
        try:
            stream = self._client.generate(model=model.tag, prompt=prompt, options=opts, keep_alive=keep_alive, stream=True)
            try:
                for chunk in stream:
                    n_chunks += 1
                    if chunk.response:
                        if t_first is None:
                            t_first = time.monotonic_ns()
                        pieces.append(chunk.response)
                    if chunk.done:
                        t_last = time.monotonic_ns()
                        final = chunk
                    elif time.monotonic() >= deadline:
                        raise timeout("deadline passed mid-stream")
            finally:
                stream.close()
        except _Stopped:
            raise
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline - 0.005:
                raise timeout("stalled" if n_chunks else "no reply") from None
            if n_chunks == 0 and isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                raise _Retryable(f"connect timeout: {_one_line(str(exc))}", unreachable=True) from None
            raise _Stopped(AnswerFailed(f"{model.tag}: stream stalled past the read timeout ({type(exc).__name__}) after {n_chunks} chunks")) from None
        except ollama.ResponseError as exc:
            msg = _one_line(exc.error)
            if exc.status_code == 404:
                raise _Stopped(BackendError(
                    f"{model.tag}: not found on the Ollama server at {self.base_url}: {msg} (bench models pull --model {model.tag})"
                )) from None
            if exc.status_code >= 500 and not pieces:
                raise _Retryable(f"HTTP {exc.status_code}: {msg}", unreachable=False) from None
            if exc.status_code == -1:  # an {"error": ...} line inside the stream
                raise _Stopped(AnswerFailed(f"{model.tag}: server error mid-stream after {n_chunks} chunks: {msg}")) from None
            raise _Stopped(AnswerFailed(f"{model.tag}: HTTP {exc.status_code}: {msg}")) from None
        except (ConnectionError, httpx.ConnectError) as exc:
            raise _Retryable(f"cannot connect: {_one_line(str(exc)) or type(exc).__name__}", unreachable=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            if t_first is None:
                raise _Retryable(f"connection dropped before the first token: {_one_line(str(exc))}", unreachable=False) from None
            raise _Stopped(AnswerFailed(f"{model.tag}: stream dropped after {n_chunks} chunks: {_one_line(str(exc))}")) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise _Stopped(AnswerFailed(f"{model.tag}: malformed stream line after {n_chunks} chunks: {_one_line(str(exc))}")) from None
        finally:
            self._deadline.at = None
        if final is None:
            raise _Stopped(AnswerFailed(f"{model.tag}: stream ended without a final (done) chunk after {n_chunks} chunks"))
        return Completion(
            text="".join(pieces),
            t_send_ns=t_send,
            t_first_token_ns=t_first,
            t_last_token_ns=t_last if t_last is not None else time.monotonic_ns(),
            prompt_eval_count=final.prompt_eval_count,
            prompt_eval_duration_ns=final.prompt_eval_duration,
            eval_count=final.eval_count,
            eval_duration_ns=final.eval_duration,
            load_duration_ns=final.load_duration,
            total_duration_ns=final.total_duration,
            done_reason=final.done_reason,
        )


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:300]


__all__ = ["OllamaBackend"]
