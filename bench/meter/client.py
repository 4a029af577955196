"""What the runner talks to: a blocking client for the meter daemon's Unix socket.

``energy(start_ns, end_ns)`` asks for the raw integral over a host-monotonic window; the daemon waits (up to
``wait_s``) for samples past ``end_ns`` and reports the coverage honestly. ``begin_window``/``end_window`` are
the Zeus-style convenience: stamp now, ask later.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from typing import Any, Iterator

from bench.errors import MeterError
from bench.meter import DAEMON_VERSION, protocol as P
from bench.records import EnergyReading

log = logging.getLogger(__name__)


REQUESTS = {"energy": P.EnergyRequest, "windows": P.WindowsRequest, "samples": P.SamplesRequest, "stats": P.StatsRequest, "info": P.InfoRequest, "mark": P.MarkRequest}


class UnknownWindow(MeterError):
    """``end_window`` for a key that was never begun (or already ended)."""


class DuplicateWindow(MeterError):
    """``begin_window`` for a key that is already open."""


class MeterClient:
    """One connection to the daemon; thread-safe (requests are serialised)."""

    def __init__(self, sock: socket.socket, socket_path: str, timeout_s: float = 15.0) -> None:
        self._sock = sock
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._buf = b""
        self._next_id = 1
        self._lock = threading.Lock()
        self._windows: dict[str, int] = {}
        self.daemon_software = ""

    # -- wire -------------------------------------------------------------------------------------------------------

    def _readline(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MeterError(f"meter daemon at {self.socket_path} did not answer within {timeout_s:g} s")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise MeterError(f"meter daemon connection at {self.socket_path} failed: {exc}") from None
            if not chunk:
                raise MeterError(f"meter daemon at {self.socket_path} closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _send(self, obj: Any) -> None:
        try:
            self._sock.sendall(P.encode(obj))
        except OSError as exc:
            raise MeterError(f"cannot send to the meter daemon at {self.socket_path}: {exc}") from None

    def handshake(self) -> None:
        self._send(P.Hello(role="client", software=f"bench-meter-client/{DAEMON_VERSION}"))
        hello = P.decode_hello(self._readline(self.timeout_s), expect_role="daemon")
        self.daemon_software = hello.software

    def call(self, op: str, extra_timeout_s: float = 0.0, **fields: Any) -> dict[str, Any]:
        """Send one request and return its result; a daemon error raises ``RemoteError`` (code + sentence)."""
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            self._send(REQUESTS[op](id=rid, **fields))
            while True:
                reply = P.decode_reply(self._readline(self.timeout_s + extra_timeout_s))
                if isinstance(reply, (P.SamplesEvent, P.EndEvent)):
                    continue  # leftovers of an earlier stream
                if reply.id != rid:
                    log.debug("skipping reply to request %s", reply.id)
                    continue
                if isinstance(reply, P.ErrorReply):
                    raise P.RemoteError(reply.code, reply.message)
                return dict(reply.result)

    # -- API --------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self.call("info")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def energy(self, start_ns: int, end_ns: int, wait_s: float = 2.0) -> EnergyReading:
        r = self.call("energy", extra_timeout_s=wait_s, start_ns=int(start_ns), end_ns=int(end_ns), wait_s=float(wait_s))
        return _reading(r)

    def windows(self, spans_ns: list[tuple[int, ...]], wait_s: float = 2.0,
                edge_slack_s: float = 0.0) -> list[EnergyReading]:
        """Several windows ``(start_ns, end_ns, inner_ns...)`` in one request, answered once the latest end is
        covered (or ``wait_s`` passed); inner instants and ``edge_slack_s`` (the stamps' uncertainty) shape the
        windows' edge terms."""
        r = self.call("windows", extra_timeout_s=wait_s, spans_ns=[[int(x) for x in span] for span in spans_ns],
                      wait_s=float(wait_s), edge_slack_s=float(edge_slack_s))
        return [_reading(w) for w in r["windows"]]

    def energy_details(self, start_ns: int, end_ns: int, wait_s: float = 2.0) -> dict[str, Any]:
        """The full reply, gaps included (``gaps_ns``: uncovered intervals inside the window)."""
        return self.call("energy", extra_timeout_s=wait_s, start_ns=int(start_ns), end_ns=int(end_ns), wait_s=float(wait_s))

    def samples(self, start_ns: int, end_ns: int, max_points: int = 1000) -> list[tuple[int, float]]:
        """Stored (t_ns, power_w) samples of a window, thinned to ``max_points``: for plotting a power trace."""
        r = self.call("samples", start_ns=int(start_ns), end_ns=int(end_ns), max_points=int(max_points))
        return list(zip((int(t) for t in r["t_ns"]), (float(p) for p in r["power_w"])))

    def mark(self, label: str, t_ns: int | None = None) -> None:
        self.call("mark", label=label, t_ns=t_ns)

    def begin_window(self, key: str) -> int:
        """Stamp the start of a named window now (host monotonic); keys must be unique while open."""
        if key in self._windows:
            raise DuplicateWindow(f"meter window {key!r} is already open")
        self._windows[key] = time.monotonic_ns()
        return self._windows[key]

    def end_window(self, key: str, wait_s: float = 2.0, cancel: bool = False) -> EnergyReading | None:
        """Stamp the end of window ``key`` and ask for its energy (``cancel=True`` just discards it)."""
        end = time.monotonic_ns()
        try:
            start = self._windows.pop(key)
        except KeyError:
            raise UnknownWindow(f"meter window {key!r} was never begun (open: {', '.join(self._windows) or 'none'})") from None
        return None if cancel else self.energy(start, end, wait_s)

    def stream(self, max_s: float | None = None) -> Iterator[tuple[list[int], list[float]]]:
        """Yield (t_ns list, power_w list) batches as they arrive, for ``max_s`` seconds (holds the connection)."""
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            self._send(P.StreamRequest(rid, max_s))
            while True:
                reply = P.decode_reply(self._readline(self.timeout_s))
                if isinstance(reply, P.ErrorReply):
                    raise P.RemoteError(reply.code, reply.message)
                if isinstance(reply, P.EndEvent):
                    return
                if isinstance(reply, P.SamplesEvent):
                    if reply.t_ns:
                        yield reply.t_ns, reply.power_w

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "MeterClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reading(r: dict[str, Any]) -> EnergyReading:
    mean = r["mean_w"]
    return EnergyReading(
        start_ns=int(r["start_ns"]), end_ns=int(r["end_ns"]), energy_j=float(r["energy_j"]),
        mean_w=float(mean) if mean is not None else math.nan, n_samples=int(r["n_samples"]),
        coverage=float(r["coverage"]), edge_j=float(r.get("edge_j", 0.0)), edge_w=float(r.get("edge_w", 0.0)),
    )


def connect(socket_path: str, timeout_s: float = 15.0) -> MeterClient:
    """Connect and exchange the versioned hello; a mismatch raises ``ProtocolMismatch``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(socket_path)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise MeterError(f"no meter daemon at {socket_path} ({exc.strerror}); start one with `bench meter serve`") from None
    except OSError as exc:
        sock.close()
        raise MeterError(f"cannot connect to the meter daemon at {socket_path}: {exc}") from None
    client = MeterClient(sock, socket_path, timeout_s)
    try:
        client.handshake()
    except BaseException:
        client.close()
        raise
    return client
