"""A test server that speaks Ollama's HTTP API, answering from real llama.cpp inference (or a scripted reply).

The real ``ollama`` client talks to it. It serves ``/api/generate`` and ``/api/chat`` (streamed NDJSON or one
JSON), ``/api/pull`` (streamed progress), ``/api/tags``, ``/api/show``, ``/api/version`` and ``/api/ps``, and
injects faults on demand (constructor, Python methods, or ``POST /_control/...``): 5xx replies, a stall
mid-stream, a dropped connection mid-stream, slow streams, an error line mid-stream, a truncated stream, a
changed digest, a missing model.

In-process::

    with OllamaTestServer(engine=prepared_llamacpp_backend) as srv:
        OllamaBackend(srv.host).generate(...)

Standalone: ``python tests/ollama_server.py --port 11434`` (real inference on the SmolLM2 GGUF) or
``--scripted "<ANS>42</ANS>"`` (no LLM).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # standalone runs find the bench package

from bench.catalog import ModelEntry, model as catalog_model  # noqa: E402

log = logging.getLogger("tests.ollama_server")

DEMO_TAG = "smollm2:135m-instruct-q4_1"
SERVER_VERSION = "0.0.0-bench-test"
FAULT_KINDS = ("error_500", "error_503", "stall", "drop", "slow", "error_in_stream", "truncate")


@dataclass
class ServedModel:
    """A model the server lists; ``engine_tag`` names the llama.cpp model that answers for it (aliases share one)."""

    tag: str
    digest: str
    size: int
    family: str = "llama"
    parameter_size: str = "135M"
    quantization_level: str = "Q4_1"
    context_length: int = 8192
    engine_tag: str | None = DEMO_TAG


@dataclass
class Fault:
    """One injected fault: applies to the next ``count`` requests on ``paths`` (count < 0: until reset).

    ``after_chunks``: chunks sent before the fault hits (stall, drop, error_in_stream, truncate);
    ``seconds``: stall length (0 = until reset/close) or the delay before every chunk (slow).
    """

    kind: str
    count: int = 1
    after_chunks: int = 0
    seconds: float = 0.0
    message: str = "injected fault"
    paths: tuple[str, ...] = ("/api/generate", "/api/chat")


def served_from_catalog(tag: str, digest: str | None = None, engine_tag: str | None = DEMO_TAG) -> ServedModel:
    """A served model with the catalog's facts for ``tag`` (digest overridable, e.g. to test a mismatch)."""
    entry: ModelEntry = catalog_model(tag)
    return ServedModel(
        tag=tag,
        digest=digest or entry.digest,
        size=entry.size_bytes,
        family=entry.family,
        parameter_size=entry.parameter_size,
        quantization_level=entry.quant.upper(),
        engine_tag=engine_tag,
    )


class _ClientGone(Exception):
    pass


class _Dropped(Exception):
    pass


class OllamaTestServer:
    """Threaded http.server on 127.0.0.1 (ephemeral port by default); ``engine`` is a prepared
    ``LlamaCppBackend`` (real inference) or None, in which case every model answers ``scripted_reply``."""

    def __init__(
        self,
        engine: Any = None,
        *,
        models: list[ServedModel] | None = None,
        registry: list[ServedModel] | None = None,
        aliases: dict[str, str | None] | None = None,
        scripted_reply: str | None = None,
        faults: list[Fault] | None = None,
        port: int = 0,
        version: str = SERVER_VERSION,
        pull_steps: int = 4,
        pull_delay_s: float = 0.0,
        script_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.scripted_reply = scripted_reply if scripted_reply is not None or engine is not None else "<ANS>42</ANS>"
        self.version = version
        self.pull_steps = pull_steps
        self.pull_delay_s = pull_delay_s
        self.script_delay_s = script_delay_s
        self._lock = threading.Lock()
        base = models if models is not None else [served_from_catalog(DEMO_TAG)]
        self.models: dict[str, ServedModel] = {m.tag: m for m in base}
        for tag, digest in (aliases or {}).items():
            try:
                self.models[tag] = served_from_catalog(tag, digest)
            except Exception:  # noqa: BLE001 - an alias outside the catalog
                self.models[tag] = ServedModel(tag=tag, digest=digest or "0" * 64, size=98362432)
        self.registry: dict[str, ServedModel] = {m.tag: m for m in (registry or [])}
        self.faults: list[Fault] = list(faults or [])
        self.requests: list[tuple[str, dict]] = []
        self.loaded: dict[str, float] = {}
        self._stalls: list[threading.Event] = []
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OllamaTestServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ollama-test-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._release_stalls()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "OllamaTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- control --

    def inject(self, kind: str, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
        fault = Fault(kind=kind, **params)
        with self._lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        """Clear faults and release stalled streams."""
        with self._lock:
            self.faults.clear()
        self._release_stalls()

    def set_digest(self, tag: str, digest: str) -> None:
        """A re-pushed tag: the same name now has another digest (locally and in the registry)."""
        with self._lock:
            for table in (self.models, self.registry):
                if tag in table:
                    table[tag] = replace(table[tag], digest=digest)

    def remove_model(self, tag: str) -> None:
        with self._lock:
            self.models.pop(tag, None)
            self.loaded.pop(tag, None)

    def add_model(self, served: ServedModel) -> None:
        with self._lock:
            self.models[served.tag] = served

    def _release_stalls(self) -> None:
        with self._lock:
            stalls, self._stalls = self._stalls, []
        for ev in stalls:
            ev.set()

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
        if self._closing.is_set():
            return
        ev.wait(seconds if seconds > 0 else None)


def _details(m: ServedModel) -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": m.family, "families": [m.family],
            "parameter_size": m.parameter_size, "quantization_level": m.quantization_level}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-test"

    @property
    def app(self) -> OllamaTestServer:
        return self.server.app  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet; DEBUG log instead of stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- plumbing --

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return {}

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, obj: Any) -> None:
        data = (json.dumps(obj) + "\n").encode()
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError as exc:
            raise _ClientGone(str(exc)) from None

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

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
            with app._lock:
                models = list(app.models.values())
            self._json(200, {"models": [
                {"name": m.tag, "model": m.tag, "modified_at": _now(), "size": m.size, "digest": m.digest,
                 "details": _details(m)} for m in models]})
        elif self.path == "/api/ps":
            with app._lock:
                loaded = [(app.models[t], exp) for t, exp in app.loaded.items() if t in app.models]
            self._json(200, {"models": [
                {"name": m.tag, "model": m.tag, "size": m.size, "digest": m.digest, "details": _details(m),
                 "expires_at": datetime.fromtimestamp(exp, timezone.utc).isoformat(), "size_vram": 0}
                for m, exp in loaded]})
        elif self.path == "/":
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"Ollama is running")
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:  # noqa: N802
        body = self._body()
        tag = body.get("model") or body.get("name")
        if tag not in self.app.models:
            self._json(404, {"error": f"model '{tag}' not found"})
            return
        self.app.remove_model(tag)
        self._json(200, {})

    def do_POST(self) -> None:  # noqa: N802
        app = self.app
        body = self._body()
        with app._lock:
            app.requests.append((self.path, body))
        if self.path.startswith("/_control/"):
            self._control(self.path.removeprefix("/_control/"), body)
        elif self.path == "/api/show":
            self._show(body)
        elif self.path in ("/api/generate", "/api/chat"):
            self._answer(body, chat=self.path == "/api/chat")
        elif self.path == "/api/pull":
            self._pull(body)
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def _control(self, what: str, body: dict) -> None:
        app = self.app
        try:
            if what == "fault":
                kind = body.pop("kind")
                if "paths" in body:
                    body["paths"] = tuple(body["paths"])
                app.inject(kind, **body)
            elif what == "reset":
                app.reset()
            elif what == "digest":
                app.set_digest(body["model"], body["digest"])
            elif what == "remove":
                app.remove_model(body["model"])
            else:
                self._json(404, {"error": f"unknown control {what!r}"})
                return
        except (KeyError, TypeError, ValueError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"status": "ok"})

    def _show(self, body: dict) -> None:
        tag = body.get("model") or body.get("name")
        m = self.app.models.get(tag)
        if m is None:
            self._json(404, {"error": f"model '{tag}' not found"})
            return
        self._json(200, {
            "modelfile": f"FROM {m.tag}\n", "parameters": "stop \"<|im_end|>\"", "template": "{{ .Prompt }}",
            "details": _details(m), "modified_at": _now(), "capabilities": ["completion"],
            "model_info": {"general.architecture": m.family, "general.parameter_count": 134515008,
                           "general.file_type": 3, f"{m.family}.context_length": m.context_length},
        })

    def _pull(self, body: dict) -> None:
        app = self.app
        tag = body.get("model") or body.get("name")
        stream = body.get("stream", True)
        src = app.registry.get(tag) or app.models.get(tag)
        if src is None:
            err = "pull model manifest: file does not exist"
            if stream:
                self._start_stream()
                self._chunk({"error": err})
                self._end_stream()
            else:
                self._json(500, {"error": err})
            return
        fault = app.take_fault("/api/pull")
        steps: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        layer = {"status": f"pulling {src.digest[:12]}", "digest": f"sha256:{src.digest}", "total": src.size}
        steps.append(dict(layer))
        for i in range(1, app.pull_steps + 1):
            steps.append({**layer, "completed": src.size * i // app.pull_steps})
        steps += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        if not stream:
            if fault and fault.kind.startswith("error_5"):
                self._json(int(fault.kind[-3:]), {"error": fault.message})
                return
            app.add_model(src)
            self._json(200, {"status": "success"})
            return
        if fault and fault.kind.startswith("error_5"):
            self._json(int(fault.kind[-3:]), {"error": fault.message})
            return
        self._start_stream()
        try:
            for n, step in enumerate(steps):
                if fault and n == fault.after_chunks:
                    if fault.kind == "error_in_stream":
                        self._chunk({"error": fault.message})
                        self._end_stream()
                        return
                    if fault.kind == "drop":
                        self._drop()
                        return
                    if fault.kind == "stall":
                        app.stall(fault.seconds)
                if app.pull_delay_s:
                    time.sleep(app.pull_delay_s)
                if step["status"] == "success":
                    app.add_model(src)
                self._chunk(step)
        except _ClientGone:
            self.close_connection = True
            return
        self._end_stream()

    def _answer(self, body: dict, chat: bool) -> None:
        app = self.app
        tag = body.get("model", "")
        m = app.models.get(tag)
        if m is None:
            self._json(404, {"error": f"model '{tag}' not found, try pulling it first"})
            return
        stream = body.get("stream", True)
        t0 = time.monotonic_ns()
        keep_alive = body.get("keep_alive")
        if chat:
            messages = body.get("messages") or []
        else:
            prompt = body.get("prompt") or ""
            messages = [{"role": "user", "content": prompt}] if prompt else []
        if not messages:  # Ollama: an empty prompt loads (or with keep_alive 0 unloads) the model
            unload = keep_alive in (0, "0", "0s")
            with app._lock:
                if unload:
                    app.loaded.pop(tag, None)
                else:
                    app.loaded[tag] = time.time() + 300
            reply = {"model": tag, "created_at": _now(), "done": True, "done_reason": "unload" if unload else "load"}
            reply.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
            self._json(200, reply)
            return
        fault = app.take_fault(self.path)
        if fault and fault.kind.startswith("error_5"):
            self._json(int(fault.kind[-3:]), {"error": fault.message})
            return
        with app._lock:
            app.loaded[tag] = time.time() + 300
        sent = 0

        def piece_obj(text: str) -> dict[str, Any]:
            base = {"model": tag, "created_at": _now(), "done": False}
            base.update({"message": {"role": "assistant", "content": text}} if chat else {"response": text})
            return base

        collected: list[str] = []

        def emit(text: str) -> None:
            nonlocal sent
            if fault is not None and sent == fault.after_chunks:
                if fault.kind == "stall":
                    app.stall(fault.seconds)
                elif fault.kind == "drop":
                    raise _Dropped()
                elif fault.kind == "error_in_stream":
                    raise _Dropped("error")
                elif fault.kind == "truncate":
                    raise _Dropped("truncate")
            if fault is not None and fault.kind == "slow" and fault.seconds:
                time.sleep(fault.seconds)
            if stream:
                self._chunk(piece_obj(text))
            collected.append(text)
            sent += 1

        if stream:
            self._start_stream()
        stats: dict[str, Any] = {}
        try:
            if m.engine_tag and app.engine is not None and app.scripted_reply is None:
                options = {k: v for k, v in (body.get("options") or {}).items() if k in _engine_options()}
                c = app.engine.stream_chat(catalog_model(m.engine_tag), messages, options, 600.0, on_piece=emit)
                stats = {"prompt_eval_count": c.prompt_eval_count, "prompt_eval_duration": c.prompt_eval_duration_ns,
                         "eval_count": c.eval_count, "eval_duration": c.eval_duration_ns,
                         "load_duration": c.load_duration_ns or 0, "done_reason": c.done_reason or "stop"}
            else:
                t_first = None
                words = re.findall(r"\S+\s*", app.scripted_reply or "") or [""]
                for w in words:
                    if app.script_delay_s:
                        time.sleep(app.script_delay_s)
                    if t_first is None:
                        t_first = time.monotonic_ns()
                    emit(w)
                t_end = time.monotonic_ns()
                prompt_text = " ".join(str(x.get("content", "")) for x in messages)
                stats = {"prompt_eval_count": len(prompt_text.split()), "prompt_eval_duration": (t_first or t_end) - t0,
                         "eval_count": len(words), "eval_duration": t_end - (t_first or t_end), "load_duration": 0,
                         "done_reason": "stop"}
        except _ClientGone:
            self.close_connection = True
            return
        except _Dropped as exc:
            kind = str(exc)
            message = fault.message if fault else "error"
            if not stream:
                if kind == "error":
                    self._json(500, {"error": message})
                else:
                    self._drop()
            elif kind == "error":
                try:
                    self._chunk({"error": message})
                except _ClientGone:
                    pass
                self._end_stream()
            elif kind == "truncate":
                self._end_stream()
            else:
                self._drop()
            return
        final = {"model": tag, "created_at": _now(), "done": True, "total_duration": time.monotonic_ns() - t0, **stats}
        if chat:
            final["message"] = {"role": "assistant", "content": "" if stream else "".join(collected)}
        else:
            final["response"] = "" if stream else "".join(collected)
            final["context"] = []
        try:
            if stream:
                self._chunk(final)
                self._end_stream()
            else:
                self._json(200, final)
        except (_ClientGone, OSError):
            self.close_connection = True


def _engine_options() -> frozenset[str]:
    from bench.backends.llamacpp import KNOWN_OPTIONS

    return KNOWN_OPTIONS - {"keep_alive"}


def prepared_engine(n_ctx: int = 2048, n_threads: int | None = None) -> Any:
    """A LlamaCppBackend with the demo SmolLM2 GGUF loaded (warm-up off: the server's first answer reports the load)."""
    from bench.backends.llamacpp import LlamaCppBackend

    engine = LlamaCppBackend(n_ctx=n_ctx, n_threads=n_threads, warmup=False)
    engine.prepare(catalog_model(DEMO_TAG))
    return engine


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=11434)
    ap.add_argument("--scripted", metavar="TEXT", help="answer every prompt with TEXT (no LLM)")
    ap.add_argument("--alias", action="append", default=[], metavar="TAG[=DIGEST]",
                    help="also serve TAG (answered by SmolLM2), with DIGEST or the catalog's")
    ap.add_argument("--registry", action="append", default=[], metavar="TAG", help="a catalog TAG /api/pull can fetch")
    ap.add_argument("--script-delay", type=float, default=0.0, metavar="S",
                    help="with --scripted: wait S seconds before each word (a slow board's decode rate)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    engine = None if args.scripted is not None else prepared_engine()
    aliases = {}
    for a in args.alias:
        tag, _, digest = a.partition("=")
        aliases[tag] = digest or None
    srv = OllamaTestServer(engine, scripted_reply=args.scripted, aliases=aliases, port=args.port,
                           registry=[served_from_catalog(t) for t in args.registry], script_delay_s=args.script_delay)
    print(f"listening on {srv.host} (serving {', '.join(srv.models)})", flush=True)
    try:
        srv._httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv._httpd.server_close()
        if engine is not None:
            engine.close()


if __name__ == "__main__":
    main()
