"""A test server that behaves like Ollama 0.6.0's HTTP API (no Ollama binary runs on these machines).

The real ``ollama`` client and the toolkit talk to it. Generation is real llama.cpp inference on the demo GGUF
(``LlamaEngine``) or a scripted reply with words as tokens (``ScriptedEngine``); loading, scheduling, the prompt
cache, truncation and the token accounting are ``ollama_runner``'s, the model store and pulls ``ollama_registry``'s.
What this module does, each from github.com/ollama/ollama at tag v0.6.0:

- ``keep_alive`` is decoded by api.Duration.UnmarshalJSON (api/types.go): a number is whole seconds, a string goes
  through Go's time.ParseDuration, a negative value keeps the model loaded; anything else is HTTP 400 with Go's
  error text (gin's ShouldBindJSON in server/routes.go GenerateHandler), e.g. ``time: missing unit in duration "-1"``;
- an unknown model is 404 ``model 'x' not found`` before anything is scheduled (routes.go GenerateHandler); an empty
  prompt loads the model (``done_reason`` "load") or, with keep_alive 0, unloads it ("unload");
- a load failure is HTTP 500 with the scheduler's error (routes.go handleScheduleError);
- streamed replies are NDJSON; the status line and headers go out with the first chunk, not before (gin's
  c.Stream in routes.go streamResponse writes nothing until the completion produces a value), so the client waits
  through load and prefill for them;
- an error before the first token (a runner that died) arrives as a 200 stream with one ``{"error": ...}`` line
  (GenerateHandler sends the completion's error into the same channel streamResponse writes);
- each chunk is api.GenerateResponse as Go marshals it: ``model``, ``created_at`` (RFC 3339, nanoseconds),
  ``response``, ``done``, then the omitempty fields ``done_reason``, ``context``, ``total_duration``,
  ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``, ``eval_duration``; zero values
  are left out. ``load_duration`` is the time until the runner was scheduled (never 0), ``total_duration`` the time
  until the final chunk, both in nanoseconds; ``context`` holds the tokens of the templated prompt and the answer;
- a completion that ends without a final response (the repeat guard) ends the stream with no done chunk; the
  non-streaming reply is then the last chunk, ``done: false``, with the text collected (GenerateHandler's
  ``Stream == false`` branch); an error in a non-streaming reply is HTTP 500;
- ``/api/tags``: name, model, modified_at, size (all blobs), digest (sha256 of the manifest file), details;
  ``/api/show``: license, modelfile, parameters, template, system, details, model_info, modified_at (0.6.0 has no
  ``capabilities``); ``/api/ps``: the loaded runner with ``expires_at``; ``/api/version``;
- ``/api/pull`` streams the steps of ollama_registry.Store.pull; a failure is an ``error`` line (or HTTP 500 when not
  streaming: routes.go waitForStream).

Faults the real server cannot be made to show on demand are injected on top (``inject`` or
``POST /_control/fault``): HTTP 5xx, a stall, a dropped connection, a slow stream, an error line or a clean end
after N chunks, a runner crash before the first token, a runner killed or timing out while loading.

In-process::

    with OllamaTestServer(models=[served_from_catalog(TAG)]) as srv:
        OllamaBackend(srv.host).generate(...)

Standalone: ``python tests/ollama_server.py --port 11434`` (real inference on the SmolLM2 GGUF) or
``--scripted "<ANS>42</ANS>"`` (no LLM).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # standalone runs find the bench package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.backends.goduration import DurationError, keep_alive_ns  # noqa: E402
from bench.catalog import model as catalog_model  # noqa: E402
from ollama_registry import Registry, Store, make_image  # noqa: E402
from ollama_runner import GiB, LlamaEngine, LoadError, RunnerError, Scheduler, ScriptedEngine, Trace, complete  # noqa: E402

log = logging.getLogger("tests.ollama_server")

DEMO_TAG = "smollm2:135m-instruct-q4_1"
SERVER_VERSION = "0.6.0"
FAULT_KINDS = ("error_500", "error_503", "stall", "drop", "slow", "error_in_stream", "truncate", "runner_crash",
               "load_killed", "load_timeout")


@dataclass(frozen=True)
class ServedModel:
    """A model in the server's store. ``listed_digest`` stands in for the real manifest whose bytes the tests do not
    have (the catalog's digests are ollama.com's); ``memory_bytes`` is the scheduler's estimate for loading it."""

    tag: str
    family: str = "llama"
    parameter_size: str = "135M"
    quantization_level: str = "Q4_1"
    memory_bytes: int = 200 * 1024**2
    listed_digest: str | None = None
    context_length: int = 8192


def served_from_catalog(tag: str, digest: str | None = None, memory_bytes: int | None = None) -> ServedModel:
    """A served model with the catalog's facts and digest for ``tag`` (the digest overridable)."""
    entry = catalog_model(tag)
    return ServedModel(tag=tag, family=entry.family, parameter_size=entry.parameter_size,
                       quantization_level=entry.quant.upper(), listed_digest=digest or entry.digest,
                       memory_bytes=memory_bytes if memory_bytes is not None else entry.size_bytes + 300 * 1024**2)


def image_of(m: ServedModel):
    return make_image(family=m.family, parameter_size=m.parameter_size, quantization_level=m.quantization_level,
                      seed=m.tag)


@dataclass
class Fault:
    """One injected fault on the next ``count`` requests to ``paths`` (count < 0: until reset).

    ``after_chunks``: chunks sent before it hits (stall, drop, error_in_stream, truncate); ``seconds``: stall length
    (0 = until reset or close) or the delay before every chunk (slow).
    """

    kind: str
    count: int = 1
    after_chunks: int = 0
    seconds: float = 0.0
    message: str = "injected fault"
    paths: tuple[str, ...] = ("/api/generate", "/api/chat")


def go_time(t_ns: int | None = None) -> str:
    """time.Time as Go's JSON encoder writes it in UTC (RFC 3339, trailing zeros of the nanoseconds dropped)."""
    t_ns = time.time_ns() if t_ns is None else t_ns
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ns // 1_000_000_000))
    frac = f"{t_ns % 1_000_000_000:09d}".rstrip("0")
    return f"{whole}.{frac}Z" if frac else f"{whole}Z"


def decode_keep_alive(value: Any) -> float | None:
    """api.Duration.UnmarshalJSON (seconds; inf for "forever"); raises DurationError with Go's text."""
    if value is None:
        return None
    ns = keep_alive_ns(value)
    return float("inf") if ns >= 2**63 - 1 else ns / 1e9


class _ClientGone(Exception):
    pass


class OllamaTestServer:
    """Threaded http.server on 127.0.0.1 (ephemeral port by default). ``engine`` is a ``LlamaEngine`` for real
    inference, or None: every model then answers ``scripted_reply`` through a ``ScriptedEngine``."""

    def __init__(self, engine: LlamaEngine | None = None, *, models: list[ServedModel] | None = None,
                 registry: Registry | None = None, scripted_reply: str = "<ANS>42</ANS>", token_delay_s: float = 0.0,
                 prefill_s_per_token: float = 0.0, load_s: float = 0.002, version: str = SERVER_VERSION,
                 context_length: int = 2048, keep_alive_s: float = 300.0, noprune: bool = False,
                 free_memory_bytes: int = 16 * GiB, faults: list[Fault] | None = None, port: int = 0) -> None:
        self.scripted = ScriptedEngine(scripted_reply, token_delay_s=token_delay_s,
                                       prefill_s_per_token=prefill_s_per_token, load_s=load_s)
        self.engine = engine
        self.version = version
        self.registry = registry
        self.noprune = noprune
        self.free_memory_bytes = free_memory_bytes
        self.store = Store()
        self.served: dict[str, ServedModel] = {}
        for m in models if models is not None else [served_from_catalog(DEMO_TAG)]:
            self.add_model(m)
        self.scheduler = Scheduler(lambda tag: self.engine or self.scripted, free_memory=lambda: self.free_memory_bytes,
                                   default_keep_alive_s=keep_alive_s, context_length=context_length)
        self.faults: list[Fault] = list(faults or [])
        self.requests: list[tuple[str, dict]] = []
        self.traces: list[Trace] = []
        self.chunk_sent_ns: list[int] = []  # CLOCK_MONOTONIC right after each streamed line left (tests of the stamps)
        self._lock = threading.Lock()
        self._stalls: list[threading.Event] = []
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]

    @property
    def scripted_reply(self) -> str:
        return self.scripted.reply

    # -- lifecycle --

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OllamaTestServer":
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="ollama-test-server",
                         daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving and wait for a generation in flight (its engine may be closed next)."""
        self._closing.set()
        self._release_stalls()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.scheduler.lock.acquire(timeout=60):
            self.scheduler.lock.release()

    def __enter__(self) -> "OllamaTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control --

    def add_model(self, m: ServedModel) -> None:
        self.served[m.tag] = m
        self.store.install(m.tag, image_of(m), m.listed_digest)

    def remove_model(self, tag: str) -> None:
        self.served.pop(tag, None)
        if tag in self.store.manifests:
            self.store.remove(tag, prune=True)
        self.scheduler.unload(tag)

    def set_digest(self, tag: str, digest: str) -> None:
        """The local copy of ``tag`` is now another version (as after a pull of a re-pushed tag)."""
        self.add_model(ServedModel(**{**self.served[tag].__dict__, "listed_digest": digest}))

    def inject(self, kind: str, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        fault = Fault(kind=kind, **params)
        if kind in ("load_killed", "load_timeout"):
            self.scheduler.load_faults.extend([kind.removeprefix("load_")] * max(fault.count, 1))
            return fault
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        """Clear faults and release stalled streams."""
        with self._lock:
            self.faults.clear()
        self.scheduler.load_faults.clear()
        self._release_stalls()

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if path in fault.paths and fault.count != 0:
                    if fault.count > 0:
                        fault.count -= 1
                    return fault
        return None

    def stall(self, seconds: float) -> None:
        ev = threading.Event()
        with self._lock:
            self._stalls.append(ev)
        if not self._closing.is_set():
            ev.wait(seconds if seconds > 0 else None)

    def _release_stalls(self) -> None:
        with self._lock:
            stalls, self._stalls = self._stalls, []
        for ev in stalls:
            ev.set()

    # -- what the handlers show --

    def details(self, tag: str) -> dict[str, Any]:
        cfg = self.store.config(tag)
        return {"parent_model": "", "format": cfg["model_format"], "family": cfg["model_family"],
                "families": cfg["model_families"], "parameter_size": cfg["model_type"],
                "quantization_level": cfg["file_type"]}

    def render(self, tag: str, messages: list[dict[str, str]]) -> str:
        """The model's ChatML template applied as Ollama's template package would (system first)."""
        system = (self.store.layer(tag, ".system") or b"").decode()
        out = f"<|im_start|>system\n{system}<|im_end|>\n" if system and messages[0].get("role") != "system" else ""
        for msg in messages:
            out += f"<|im_start|>{msg.get('role', 'user')}\n{msg.get('content', '')}<|im_end|>\n"
        return out + "<|im_start|>assistant\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-test"

    @property
    def app(self) -> OllamaTestServer:
        return self.server.app  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- plumbing --

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            return exc

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, lines: Iterator[dict], fault: Fault | None = None) -> None:
        """NDJSON, chunked; the status line goes out with the first line (or at the end of an empty stream)."""
        started = False
        sent = 0
        try:
            for obj in lines:
                if fault is not None and sent == fault.after_chunks and fault.kind in ("stall", "drop", "truncate",
                                                                                       "error_in_stream"):
                    if fault.kind == "stall":
                        self.app.stall(fault.seconds)
                    elif fault.kind == "drop":
                        self._start_once(started)
                        return self._drop()
                    elif fault.kind == "truncate":
                        break
                    else:
                        obj = {"error": fault.message}
                if fault is not None and fault.kind == "slow" and fault.seconds:
                    time.sleep(fault.seconds)
                started = self._start_once(started)
                self._write_chunk(obj)
                self.app.chunk_sent_ns.append(time.monotonic_ns())
                sent += 1
                if "error" in obj:
                    break
        except _ClientGone:
            self.close_connection = True
            return None
        self._start_once(started)
        self._write(b"0\r\n\r\n")
        return None

    def _start_once(self, started: bool) -> bool:
        if not started:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        return True

    def _write_chunk(self, obj: Any) -> None:
        data = (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone(str(exc)) from None

    def _drop(self) -> None:
        """Close the socket mid-response: no chunk terminator, the client sees an incomplete chunked body."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes --

    def do_GET(self) -> None:  # noqa: N802
        app = self.app
        if self.path == "/api/version":
            self._json(200, {"version": app.version})
        elif self.path == "/api/tags":
            store = app.store
            tags = sorted(store.manifests, key=lambda t: store.modified.get(t, 0), reverse=True)
            self._json(200, {"models": [
                {"name": t, "model": t, "modified_at": go_time(int(store.modified.get(t, 0) * 1e9)),
                 "size": store.size(t), "digest": store.digest(t), "details": app.details(t)} for t in tags]})
        elif self.path == "/api/ps":
            models = []
            for r in app.scheduler.loaded():
                expires = time.time() + (r.expires_at - time.monotonic() if r.expires_at else 300)
                models.append({"name": r.tag, "model": r.tag, "size": app.served[r.tag].memory_bytes,
                               "digest": app.store.digest(r.tag), "details": app.details(r.tag),
                               "expires_at": go_time(int(min(expires, 4e9) * 1e9)), "size_vram": 0})
            self._json(200, {"models": models})
        elif self.path == "/":
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"Ollama is running")
        else:
            self._json(404, {"error": "404 page not found"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:  # noqa: N802
        body = self._body()
        tag = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        if tag not in self.app.store.manifests:
            return self._json(404, {"error": f"model '{tag}' not found"})
        self.app.remove_model(tag)
        return self._json(200, {})

    def do_POST(self) -> None:  # noqa: N802
        app = self.app
        body = self._body()
        if isinstance(body, Exception):
            return self._json(400, {"error": str(body)})
        app.requests.append((self.path, body))
        if self.path.startswith("/_control/"):
            return self._control(self.path.removeprefix("/_control/"), body)
        if self.path == "/api/show":
            return self._show(body)
        if self.path in ("/api/generate", "/api/chat"):
            return self._answer(body, chat=self.path == "/api/chat")
        if self.path == "/api/pull":
            return self._pull(body)
        return self._json(404, {"error": "404 page not found"})

    def _control(self, what: str, body: dict) -> None:
        app = self.app
        try:
            if what == "fault":
                params = dict(body)
                kind = params.pop("kind")
                if "paths" in params:
                    params["paths"] = tuple(params["paths"])
                app.inject(kind, **params)
            elif what == "reset":
                app.reset()
            elif what == "digest":
                app.set_digest(body["model"], body["digest"])
            elif what == "remove":
                app.remove_model(body["model"])
            else:
                return self._json(404, {"error": f"unknown control {what!r}"})
        except (KeyError, TypeError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})
        return self._json(200, {"status": "ok"})

    def _show(self, body: dict) -> None:
        app = self.app
        tag = body.get("model") or body.get("name")
        if not tag:
            return self._json(400, {"error": "model is required"})
        if tag not in app.store.manifests:
            return self._json(404, {"error": f"model '{tag}' not found"})
        store, m = app.store, app.served.get(tag, ServedModel(tag))
        template = (store.layer(tag, ".template") or b"").decode()
        system = (store.layer(tag, ".system") or b"").decode()
        params = json.loads(store.layer(tag, ".params") or b"{}")
        param_lines = [f"{k:<30} {json.dumps(x)}" for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
        modelfile = (f"# Modelfile generated by \"ollama show\"\n# To build a new Modelfile based on this, replace FROM "
                     f"with:\n# FROM {tag}\n\nFROM {tag}\nTEMPLATE \"\"\"{template}\"\"\"\nSYSTEM {system}\n"
                     + "".join(f"PARAMETER {line}\n" for line in param_lines))
        arch = m.family
        return self._json(200, {
            "modelfile": modelfile, "parameters": "\n".join(param_lines), "template": template, "system": system,
            "details": app.details(tag),
            "model_info": {"general.architecture": arch, "general.file_type": 3, "general.parameter_count": 134515008,
                           f"{arch}.context_length": m.context_length, f"{arch}.embedding_length": 576},
            "modified_at": go_time(int(store.modified.get(tag, 0) * 1e9))})

    def _pull(self, body: dict) -> None:
        tag = body.get("model") or body.get("name") or ""
        fault = self.app.take_fault("/api/pull")
        if fault and fault.kind.startswith("error_5"):
            return self._json(int(fault.kind[-3:]), {"error": fault.message})
        steps = self._pull_steps(tag)
        if body.get("stream", True) is False:  # routes.go waitForStream: the last step, or the error as HTTP 500
            last = {}
            for last in steps:
                pass
            return self._json(500 if "error" in last else 200, last)
        return self._stream(steps, fault)

    def _pull_steps(self, tag: str) -> Iterator[dict]:
        """The pull's progress as it happens (PullModel runs in its own goroutine, the handler streams its steps)."""
        app = self.app
        steps: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                if app.registry is None:
                    raise RuntimeError("pull model manifest: file does not exist")
                app.store.pull(tag, app.registry, steps.put, noprune=app.noprune)
                base = app.served.get(tag) or ServedModel(tag)
                app.served[tag] = ServedModel(**{**base.__dict__, "listed_digest": None})
            except (RuntimeError, OSError) as exc:
                steps.put({"error": str(exc)})
            finally:
                steps.put(None)

        threading.Thread(target=work, name="ollama-test-pull", daemon=True).start()
        while (step := steps.get()) is not None:
            yield step

    # -- generate / chat --

    def _answer(self, body: dict, chat: bool) -> None:
        app = self.app
        t0 = time.monotonic_ns()
        try:
            keep_alive = decode_keep_alive(body.get("keep_alive"))
        except DurationError as exc:
            return self._json(400, {"error": str(exc)})
        tag = body.get("model") or ""
        if tag not in app.store.manifests:
            return self._json(404, {"error": f"model '{tag}' not found"})
        if chat:
            messages = body.get("messages") or []
        else:
            messages = [{"role": "user", "content": body["prompt"]}] if body.get("prompt") else []

        def reply(text: str = "", done: bool = False, **omitempty: Any) -> dict:
            """api.GenerateResponse / ChatResponse in Go's field order, zero values of omitempty fields left out."""
            out: dict[str, Any] = {"model": tag, "created_at": go_time()}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            out["done"] = done
            out.update({k: v for k, v in omitempty.items() if v not in (None, 0, "", [])})
            return out

        if not messages and keep_alive == 0:
            app.scheduler.unload(tag)
            return self._json(200, reply(done=True, done_reason="unload"))
        fault = app.take_fault(self.path)
        if fault and fault.kind.startswith("error_5"):
            return self._json(int(fault.kind[-3:]), {"error": fault.message})
        sched = app.scheduler
        opts = sched.options(body.get("options"))
        with sched.lock:
            try:
                runner, loaded = sched.schedule(tag, opts, app.served[tag].memory_bytes)
            except LoadError as exc:
                return self._json(500, {"error": str(exc)})
            t_loaded = time.monotonic_ns()
            if not messages:
                sched.release(runner, keep_alive)
                return self._json(200, reply(done=True, done_reason="load"))
            trace = Trace(loaded=loaded)
            app.traces.append(trace)
            prompt = app.render(tag, messages)
            crash = fault is not None and fault.kind == "runner_crash"
            if crash:
                fault = None
            lines = self._lines(runner, prompt, opts, trace, crash, t0, t_loaded, reply)
            try:
                if body.get("stream", True) is False:
                    return self._collect(lines, chat)
                return self._stream(lines, fault)
            finally:
                lines.close()
                sched.release(runner, keep_alive)

    def _lines(self, runner, prompt, opts, trace, crash, t0, t_loaded, reply) -> Iterator[dict]:  # noqa: ANN001
        """routes.go GenerateHandler's channel: one GenerateResponse per completion step, errors as error lines."""
        text = ""
        try:
            for step in complete(runner, prompt, opts, trace, crash_before_token=crash):
                if not step.done:
                    text += step.content
                    yield reply(text=step.content, done=False)
                    continue
                yield reply(done=True, done_reason=step.done_reason,
                            context=runner.engine.tokenize(prompt + text),
                            total_duration=time.monotonic_ns() - t0, load_duration=t_loaded - t0,
                            prompt_eval_count=step.prompt_eval_count, prompt_eval_duration=step.prompt_eval_duration_ns,
                            eval_count=step.eval_count, eval_duration=step.eval_duration_ns)
        except RunnerError as exc:
            yield {"error": str(exc)}

    def _collect(self, lines: Iterator[dict], chat: bool) -> None:
        """The non-streaming reply: the last response with all the text, or HTTP 500 on an error."""
        last: dict | None = None
        text = ""
        for obj in lines:
            if "error" in obj:
                return self._json(500, obj)
            text += obj["message"]["content"] if chat else obj["response"]
            last = obj
        if last is None:
            return self._json(500, {"error": "unexpected end of response"})
        if chat:
            last["message"]["content"] = text
        else:
            last["response"] = text
        return self._json(200, last)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=11434)
    ap.add_argument("--scripted", metavar="TEXT", help="answer every prompt with TEXT (no LLM)")
    ap.add_argument("--alias", action="append", default=[], metavar="TAG[=DIGEST]",
                    help="also serve catalog TAG (answered by the same engine), listed with DIGEST or the catalog's")
    ap.add_argument("--script-delay", type=float, default=0.0, metavar="S",
                    help="with --scripted: wait S seconds after each token (a slow board's decode rate)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    engine = None
    if args.scripted is None:
        from bench.backends.llamacpp import gguf_path

        engine = LlamaEngine(str(gguf_path(catalog_model(DEMO_TAG))))
    models = [served_from_catalog(DEMO_TAG)]
    for a in args.alias:
        tag, _, digest = a.partition("=")
        models.append(served_from_catalog(tag, digest or None))
    srv = OllamaTestServer(engine, models=models, scripted_reply=args.scripted or "", token_delay_s=args.script_delay,
                           port=args.port)
    print(f"listening on {srv.host} (serving {', '.join(srv.store.manifests)})", flush=True)
    try:
        srv._httpd.serve_forever(poll_interval=0.2)  # noqa: SLF001 - the process is the server
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()  # noqa: SLF001
        if engine is not None:
            engine.close()


if __name__ == "__main__":
    main()
