"""Ollama's HTTP API on the standard library's ``http.client``, for the requests of a run.

Why not the ``ollama`` client here: an answer streams for seconds to minutes while the meter measures, and this is
the runner's only work then. Through ``ollama``/``httpx``/``httpcore`` each streamed chunk cost ~300 us of CPU
(pydantic model, line decoder, h11 events), and a wake-up per token remained even through ``http.client`` (~130 us
a chunk on the same machine); here ``http.client`` sends the request and parses the headers, and the body is read
from the socket in gathered reads with the kernel's arrival stamps (``bench.backends.http_body``). And the answer's
deadline must bound every socket wait, which the public ``httpx`` API cannot express (a read timeout restarts at
every read); here each read's timeout is the time left. ``bench.models`` uses the official client for pulls,
where neither matters.

Errors are typed so the backend can classify them: ``HTTPStatus`` (a non-2xx reply), ``StreamError`` (an
``{"error": ...}`` line inside a 200 stream), ``Dropped`` (the connection closed mid-reply), ``Unreachable``
(no connection), ``Malformed`` (a line that is not JSON), ``DeadlinePassed`` (a wait ran into the deadline).
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any, Iterator
from urllib.parse import urlsplit

from bench import __version__
from bench.backends.http_body import BodyError, BodyReader
from bench.backends.stream import Arrival, DeadlinePassed

DEFAULT_HOST = "http://127.0.0.1:11434"
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json",
            "User-Agent": f"edge-llm-bench/{__version__}"}
# A stream asks the server to close after it: the FIN right behind the last chunk wakes a gathering reader at once
# (a closed socket is readable below any low-water mark), so the answer's end is noticed without a wait.
_STREAM_HEADERS = {**_HEADERS, "Connection": "close"}


class OllamaHTTPError(Exception):
    """Base of the errors below; the message is one line."""


class HTTPStatus(OllamaHTTPError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class StreamError(OllamaHTTPError):
    """An ``{"error": ...}`` line in a 200 stream (Ollama reports runner failures this way)."""


class Dropped(OllamaHTTPError):
    """The connection closed before the reply was complete."""


class Unreachable(OllamaHTTPError):
    """No connection could be made."""


class Malformed(OllamaHTTPError):
    """A reply line or body that is not the JSON Ollama sends."""


def one_line(text: Any) -> str:
    return " ".join(str(text).split())[:300]


def _error_text(raw: bytes) -> str:
    """Ollama's ``{"error": "..."}`` body, or the raw text."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return one_line(raw.decode("utf-8", "replace"))
    return one_line(obj.get("error", obj) if isinstance(obj, dict) else obj)


def normalize_host(host: str | None) -> str:
    """``$OLLAMA_HOST`` forms (``0.0.0.0:11434``, ``http://h``, ``h:p``) as a base URL, like the official client."""
    host = (host or DEFAULT_HOST).strip()
    if "://" not in host:
        host = "http://" + host
    parts = urlsplit(host)
    port = parts.port or (443 if parts.scheme == "https" else 11434)
    name = parts.hostname or "127.0.0.1"
    if ":" in name:
        name = f"[{name}]"
    return f"{parts.scheme}://{name}:{port}{parts.path.rstrip('/')}"


class OllamaHTTP:
    """One keep-alive connection to one Ollama server; not thread-safe (a run asks one answer at a time)."""

    def __init__(self, base_url: str, connect_timeout_s: float = 10.0) -> None:
        self.base_url = normalize_host(base_url)
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host, self._port, self._prefix = parts.hostname or "127.0.0.1", parts.port, parts.path
        self.connect_timeout_s = connect_timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request_json(self, method: str, path: str, body: Any = None, *, timeout_s: float = 60.0) -> Any:
        """A small request (version, tags, show) whose reply is one JSON value."""
        deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        resp = self._send(method, path, body, deadline_ns)
        try:
            raw = resp.read()
        except TimeoutError:
            self.close()
            raise DeadlinePassed() from None
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise Dropped(f"{method} {path}: {type(exc).__name__}: {one_line(exc)}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Malformed(f"{method} {path}: reply is not JSON: {one_line(raw[:200])}") from None

    def stream(self, path: str, body: Any, deadline_ns: int) -> Iterator[dict | Arrival]:
        """POST ``body`` and yield each NDJSON line as a dict, the lines of each read after that read's ``Arrival``
        (when its last byte reached this host); every socket wait is bounded by ``deadline_ns``.

        Once a line carries text, reads gather (``bench.backends.http_body``): the stamps stay the kernel's, a read
        costs one wake-up however many tokens it brings. The server closes the connection after the stream, and
        the reader stops gathering after the ``done`` line, so the stream's end is read at once. Closing the
        generator early closes the connection, which makes Ollama cancel the generation.
        """
        resp = self._send("POST", path, body, deadline_ns, _STREAM_HEADERS)
        reader = BodyReader(self._conn.sock, resp)
        buf = b""
        try:
            while not reader.done:
                arrived, data = reader.read(deadline_ns)
                buf += data
                if not buf.endswith(b"\n"):
                    continue
                lines, buf = buf.split(b"\n"), b""
                yield Arrival(arrived)
                for line in lines:
                    if line:
                        obj = _loads(line)
                        if "error" in obj:
                            raise StreamError(one_line(obj["error"]))
                        if obj.get("done"):
                            reader.gathering = False
                        elif not reader.gathering and obj.get("response"):
                            reader.gathering = True
                        yield obj
            if buf.strip():
                yield _loads(buf)
        except (BodyError, OSError) as exc:
            raise Dropped(f"{type(exc).__name__}: {one_line(exc) or 'connection closed'}") from None
        finally:
            reader.close()
            if not reader.reusable:
                self.close()

    # -- internals ----------------------------------------------------------------------------------------------

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout_s)
        return self._conn

    def _send(self, method: str, path: str, body: Any, deadline_ns: int,
              headers: dict[str, str] = _HEADERS) -> http.client.HTTPResponse:
        """Send one request and wait (bounded by the deadline) for the status line; raise on a non-2xx reply."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile gets one fresh retry
            remaining = (deadline_ns - time.monotonic_ns()) / 1e9
            if remaining <= 0:
                raise DeadlinePassed()
            conn = self._connection(min(self.connect_timeout_s, remaining))
            reused = conn.sock is not None
            if not reused:
                try:
                    conn.connect()
                except OSError as exc:  # refused, unresolvable, connect timeout
                    self.close()
                    raise Unreachable(f"{self.base_url}: {type(exc).__name__}: {one_line(exc)}") from None
            try:
                conn.sock.settimeout(max(1e-3, (deadline_ns - time.monotonic_ns()) / 1e9))
                conn.request(method, self._prefix + path, body=payload, headers=headers)
                resp = conn.getresponse()
            except TimeoutError:
                self.close()
                raise DeadlinePassed() from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused and attempt == 1:
                    continue
                raise Dropped(f"{type(exc).__name__}: {one_line(exc) or 'connection closed'}") from None
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                raise Dropped(f"{type(exc).__name__}: {one_line(exc)}") from None
            break
        if resp.status >= 300:
            try:
                raw = resp.read()
            except (http.client.HTTPException, OSError):
                raw = b""
            if resp.will_close:
                self.close()
            raise HTTPStatus(resp.status, _error_text(raw))
        return resp


def _loads(line: bytes) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        raise Malformed(f"stream line is not JSON: {one_line(line[:200])}") from None
    if not isinstance(obj, dict):
        raise Malformed(f"stream line is not a JSON object: {one_line(line[:200])}")
    return obj


__all__ = ["DEFAULT_HOST", "Dropped", "HTTPStatus", "Malformed", "OllamaHTTP", "OllamaHTTPError", "StreamError",
           "Unreachable", "normalize_host", "one_line"]
