"""The meter daemon: one ingest thread reads the driver into the ring buffer and the raw log; the socket side
answers JSON-lines requests (protocol.py), one thread per connection, dispatched through a dict of handlers.

Nothing polls: the ingest thread blocks in the driver's read, connection threads block in ``recv`` or on the
buffer's condition variable, and the accept loop blocks in a selector that a self-pipe wakes on shutdown.
"""

from __future__ import annotations

import grp
import logging
import os
import resource
import selectors
import signal
import socket
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import tenacity

from bench.errors import MeterError
from bench.meter import DAEMON_VERSION, protocol as P
from bench.meter.buffer import RawLog, RingBuffer
from bench.meter.drivers.base import Driver, create

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``bench meter serve`` passes in."""

    driver: str
    options: dict[str, str]
    socket_path: str
    group: str | None = None
    log_dir: str | None = None
    buffer_s: float = 3600.0
    gap_s: float | None = None  # None: max(10 sample periods, 20 ms)
    rotate_mb: float = 64.0
    keep_files: int = 0
    backoff_max_s: float = 5.0


@dataclass
class Counters:
    samples: int = 0
    batches: int = 0
    reconnects: int = 0
    read_errors: int = 0
    requests: int = 0
    request_errors: int = 0
    connections: int = 0
    last_error: str = ""
    connected: bool = False
    marks: deque = field(default_factory=lambda: deque(maxlen=10_000))


Handler = Callable[["Daemon", "Connection", Any], dict]
HANDLERS: dict[str, Handler] = {}


def handler(op: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        if op in HANDLERS:
            raise ValueError(f"handler for {op!r} registered twice")
        HANDLERS[op] = fn
        return fn

    return deco


class Daemon:
    def __init__(self, config: DaemonConfig, driver: Driver | None = None) -> None:
        self.config = config
        self.driver = driver or create(config.driver, config.options)
        rate = max(self.driver.nominal_rate_hz, 0.01)
        gap_s = config.gap_s if config.gap_s is not None else max(10.0 / rate, 0.02)
        capacity = int(min(max(config.buffer_s * rate * 1.1, 1024), 200_000_000))
        self.buffer = RingBuffer(capacity, int(gap_s * 1e9))
        self.counters = Counters()
        self.stop_event = threading.Event()
        self.started_ns = time.monotonic_ns()
        self.started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.rawlog: RawLog | None = None
        self._ingest_thread: threading.Thread | None = None
        self._conns: set[Connection] = set()
        self._conns_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        log.info("meter daemon %s: driver %s, ring %d samples (%.0f s at %.1f Hz), gap threshold %.3f s",
                 DAEMON_VERSION, config.driver, capacity, config.buffer_s, rate, gap_s)

    # -- ingest ---------------------------------------------------------------------------------------------------

    def _open_driver(self) -> None:
        def stop_when_asked(_state: tenacity.RetryCallState) -> bool:
            return self.stop_event.is_set()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.counters.last_error = f"open: {exc}"
            log.warning("meter %s not available (%s); retry %d in %.1f s", self.config.driver, exc,
                        state.attempt_number, state.next_action.sleep if state.next_action else 0)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Exception),
            wait=tenacity.wait_exponential(multiplier=0.1, min=0.05, max=self.config.backoff_max_s),
            stop=stop_when_asked,
            sleep=lambda s: self.stop_event.wait(s),
            before_sleep=before_sleep,
            reraise=True,
        )
        retrying(self.driver.open)

    def _ingest(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._open_driver()
            except Exception as exc:  # noqa: BLE001 - only reached when stopping
                log.info("driver open abandoned at shutdown: %s", exc)
                return
            if self.stop_event.is_set():
                break
            self.counters.connected = True
            log.info("meter %s connected: %s", self.config.driver, self.driver.device_id())
            try:
                while not self.stop_event.is_set():
                    batch = self.driver.read()
                    if len(batch) or batch.gap_before:
                        self._store(batch.t_ns, batch.power_w, batch.gap_before)
            except Exception as exc:  # noqa: BLE001 - any driver fault: record a gap, reconnect
                self.counters.read_errors += 1
                self.counters.reconnects += 1
                self.counters.last_error = f"read: {exc}"
                now = time.monotonic_ns()
                log.warning("meter %s lost (%s); gap recorded from %s, reconnecting", self.config.driver, exc,
                            self.buffer.newest_ns())
                self.buffer.mark_gap()
                if self.rawlog:
                    self.rawlog.write_event("gap", now, f"device lost: {exc}")
            finally:
                self.counters.connected = False
                try:
                    self.driver.close()
                except Exception as exc:  # noqa: BLE001
                    log.debug("driver close failed: %s", exc)

    def _store(self, t_ns: Any, power_w: Any, gap_before: bool) -> None:
        kept = self.buffer.append(t_ns, power_w, gap_before)
        self.counters.samples += kept
        self.counters.batches += 1
        if self.rawlog is not None:
            if gap_before:
                self.rawlog.write_event("gap", int(t_ns[0]) if len(t_ns) else time.monotonic_ns(), "device discontinuity")
            self.rawlog.write_samples(t_ns, power_w)

    # -- socket side ------------------------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        path = self.config.socket_path
        if os.path.exists(path) or os.path.islink(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise MeterError(f"socket path {path} exists and is not a socket; refusing to replace it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(1.0)
                probe.connect(path)
                raise MeterError(f"another meter daemon is serving {path}; stop it first")
            except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
                os.unlink(path)
                log.info("removed stale socket %s", path)
            finally:
                probe.close()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        if self.config.group:
            try:
                gid = grp.getgrnam(self.config.group).gr_gid
            except KeyError:
                raise MeterError(f"group {self.config.group!r} does not exist; create it or pass another --group") from None
            os.chown(path, -1, gid)
        sock.listen(16)
        return sock

    def serve(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``); returns after a clean shutdown."""
        if os.geteuid() == 0:
            log.warning("running as root; the meter daemon needs no privileges (see scripts/bench-meter.service)")
        if self.config.log_dir:
            header = {"driver": self.config.driver, "device_id": self.driver.device_id(),
                      "rate_hz": self.driver.nominal_rate_hz, "daemon": DAEMON_VERSION}
            self.rawlog = RawLog(self.config.log_dir, header, int(self.config.rotate_mb * (1 << 20)), self.config.keep_files)
        self._listener = self._bind()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        self._ingest_thread = threading.Thread(target=self._ingest, name="meter-ingest", daemon=True)
        self._ingest_thread.start()
        log.info("serving %s (mode 0660%s)", self.config.socket_path,
                 f", group {self.config.group}" if self.config.group else "")
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self.stop_event.is_set():
                for key, _ in sel.select():
                    if key.data == "wake":
                        os.read(self._wake_r, 64)
                        continue
                    try:
                        conn, _ = self._listener.accept()
                    except OSError as exc:
                        log.warning("accept failed: %s", exc)
                        continue
                    self._start_connection(conn)
        finally:
            sel.close()
            self._shutdown()

    def stop(self) -> None:
        self.stop_event.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _shutdown(self) -> None:
        log.info("shutting down")
        try:
            self._listener.close()
            os.unlink(self.config.socket_path)
        except OSError:
            pass
        with self.buffer.cond:
            self.buffer.cond.notify_all()
        with self._conns_lock:
            for c in list(self._conns):
                c.close()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout=5.0)
        if self.rawlog is not None:
            self.rawlog.close()
            for f in self.rawlog.files():
                log.info("raw log %s sha256=%s bytes=%d", f.path, f.sha256, f.bytes)

    def _start_connection(self, sock: socket.socket) -> None:
        with self._conns_lock:
            if len(self._conns) >= MAX_CONNECTIONS:
                try:
                    sock.sendall(P.encode(P.ErrorReply(None, P.BUSY, f"too many connections (limit {MAX_CONNECTIONS})")))
                finally:
                    sock.close()
                return
            conn = Connection(self, sock)
            self._conns.add(conn)
        self.counters.connections += 1
        threading.Thread(target=conn.run, name="meter-conn", daemon=True).start()

    def _forget(self, conn: "Connection") -> None:
        with self._conns_lock:
            self._conns.discard(conn)

    # -- facts ------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        facts = self.driver.describe()
        files = self.rawlog.files() if self.rawlog else []
        facts.update(
            daemon_version=DAEMON_VERSION,
            protocol=P.PROTOCOL_NAME,
            protocol_version=P.PROTOCOL_VERSION,
            sample_rate_hz=round(self.buffer.recent_rate_hz(), 3),
            socket=self.config.socket_path,
            pid=os.getpid(),
            started_utc=self.started_utc,
            gap_threshold_s=self.buffer.gap_ns / 1e9,
            buffer_capacity=self.buffer.capacity,
            log_files=[{"path": f.path, "bytes": f.bytes, "sha256": f.sha256, "complete": f.complete} for f in files],
        )
        return facts

    def stats(self) -> dict[str, Any]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        c = self.counters
        return {
            "uptime_s": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
            "connected": c.connected,
            "samples_total": c.samples,
            "samples_in_buffer": self.buffer.size,
            "buffer_capacity": self.buffer.capacity,
            "buffer_bytes": self.buffer.nbytes(),
            "oldest_ns": self.buffer.oldest_ns(),
            "newest_ns": self.buffer.newest_ns(),
            "sample_rate_hz": round(self.buffer.recent_rate_hz(), 3),
            "gaps": self.buffer.gaps_total,
            "dropped_out_of_order": self.buffer.dropped_out_of_order,
            "dropped_invalid": self.buffer.dropped_invalid,
            "reconnects": c.reconnects,
            "read_errors": c.read_errors,
            "last_error": c.last_error,
            "requests": c.requests,
            "request_errors": c.request_errors,
            "connections_total": c.connections,
            "marks": len(c.marks),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "max_rss_kib": ru.ru_maxrss,
            **{f"driver_{k}": v for k, v in self.driver.counters().items()},
        }


class Connection:
    """One client: hello, then request lines answered in order. Bad input gets an error reply, never a crash."""

    def __init__(self, daemon: Daemon, sock: socket.socket) -> None:
        self.daemon = daemon
        self.sock = sock
        self.hello_done = False
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def send(self, message: Any) -> None:
        self.sock.sendall(P.encode(message))

    def run(self) -> None:
        try:
            self._loop()
        except (OSError, ValueError):
            pass  # the client went away
        except Exception:  # noqa: BLE001 - never let one connection take the daemon down
            log.exception("connection failed")
        finally:
            self.close()
            self.daemon._forget(self)

    def _loop(self) -> None:
        buf = b""
        discarding = False
        while not self.daemon.stop_event.is_set():
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > P.MAX_LINE_BYTES:
                        if not discarding:
                            self._error(None, P.ProtocolError(P.TOO_LARGE, f"request exceeds {P.MAX_LINE_BYTES} bytes without a newline"))
                        discarding = True
                        buf = b""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if discarding:
                    discarding = False  # the tail of the oversized request
                    continue
                if line.strip():
                    if not self._handle_line(line):
                        return

    def _error(self, rid: int | None, exc: P.ProtocolError) -> None:
        self.daemon.counters.request_errors += 1
        self.send(P.ErrorReply(rid, exc.code, exc.message))

    def _handle_line(self, line: bytes) -> bool:
        """Answer one line; False ends the connection (failed handshake)."""
        self.daemon.counters.requests += 1
        if not self.hello_done:
            try:
                P.decode_hello(line, expect_role="client")
            except P.ProtocolError as exc:
                self._error(P.request_id(line), exc)
                return exc.code != P.VERSION_MISMATCH
            self.hello_done = True
            self.send(P.Hello(role="daemon", software=f"bench-meter-daemon/{DAEMON_VERSION}"))
            return True
        try:
            request = P.decode_request(line)
        except P.ProtocolError as exc:
            self._error(P.request_id(line), exc)
            return True
        log.debug("request %s", request)
        try:
            result = HANDLERS[request.op](self.daemon, self, request)
        except P.ProtocolError as exc:
            self._error(request.id, exc)
            return True
        except (OSError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            log.exception("handler %s failed", request.op)
            self._error(request.id, P.ProtocolError(P.INTERNAL, f"{type(exc).__name__}: {exc}"[:200]))
            return True
        if result is not None:
            self.send(P.Reply(request.id, result))
        return True


# -- handlers (one per op) ---------------------------------------------------------------------------------------


def _wait_past(daemon: Daemon, end_ns: int, wait_s: float) -> float:
    """Block (on the buffer's condition, no polling) until a sample at or after ``end_ns`` is held, at most
    ``wait_s``; returns the seconds waited."""
    buf = daemon.buffer
    t_wait = time.monotonic()
    deadline = t_wait + wait_s
    with buf.cond:
        while not daemon.stop_event.is_set():
            newest = buf._newest_locked()
            if newest is not None and newest >= end_ns:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            buf.cond.wait(remaining)
    return round(time.monotonic() - t_wait, 6)


def _window_result(buf: RingBuffer, start_ns: int, end_ns: int, waited_s: float, edge_slack_s: float = 0.0,
                   inner_ns: tuple[int, ...] = ()) -> dict:
    w = buf.window(start_ns, end_ns, int(edge_slack_s * 1e9), inner_ns)
    mean = w.mean_w
    result = P.EnergyResult(
        start_ns=w.start_ns, end_ns=w.end_ns, energy_j=w.energy_j, mean_w=None if mean != mean else mean,
        n_samples=w.n_samples, coverage=w.coverage, gaps_ns=[list(g) for g in w.gaps_ns[:100]],
        newest_ns=buf.newest_ns(), waited_s=waited_s, edge_j=w.edges.edge_j, edge_w=w.edges.edge_w,
    )
    log.debug("energy [%d, %d] -> %.6f J coverage %.4f", w.start_ns, w.end_ns, w.energy_j, w.coverage)
    return vars(result)


@handler("energy")
def _energy(daemon: Daemon, conn: Connection, req: P.EnergyRequest) -> dict:
    waited = _wait_past(daemon, req.end_ns, req.wait_s)
    return _window_result(daemon.buffer, req.start_ns, req.end_ns, waited, req.edge_slack_s)


@handler("windows")
def _windows(daemon: Daemon, conn: Connection, req: P.WindowsRequest) -> dict:
    waited = _wait_past(daemon, max(span[1] for span in req.spans_ns), req.wait_s)
    return {"windows": [_window_result(daemon.buffer, a, b, waited, req.edge_slack_s, tuple(inner))
                        for a, b, *inner in req.spans_ns]}


@handler("samples")
def _samples(daemon: Daemon, conn: Connection, req: P.SamplesRequest) -> dict:
    t_ns, power_w = daemon.buffer.between(req.start_ns, req.end_ns, req.max_points)
    return {"t_ns": t_ns.tolist(), "power_w": [round(float(p), 6) for p in power_w]}


@handler("stats")
def _stats(daemon: Daemon, conn: Connection, req: P.StatsRequest) -> dict:
    return daemon.stats()


@handler("info")
def _info(daemon: Daemon, conn: Connection, req: P.InfoRequest) -> dict:
    return daemon.info()


@handler("mark")
def _mark(daemon: Daemon, conn: Connection, req: P.MarkRequest) -> dict:
    t_ns = req.t_ns if req.t_ns is not None else time.monotonic_ns()
    daemon.counters.marks.append((t_ns, req.label))
    daemon.driver.on_mark(t_ns, req.label)
    if daemon.rawlog is not None:
        daemon.rawlog.write_event("mark", t_ns, req.label)
    log.info("mark %s at %d", req.label, t_ns)
    return {"t_ns": t_ns, "label": req.label}


@handler("stream")
def _stream(daemon: Daemon, conn: Connection, req: P.StreamRequest) -> None:
    buf = daemon.buffer
    index = buf.total
    conn.send(P.Reply(req.id, {"from_index": index, "from_ns": time.monotonic_ns()}))
    end = time.monotonic() + req.max_s if req.max_s is not None else None
    while not daemon.stop_event.is_set():
        if end is not None and time.monotonic() >= end:
            break
        with buf.cond:
            if buf.total <= index:
                timeout = 1.0 if end is None else max(min(1.0, end - time.monotonic()), 0.0)
                buf.cond.wait(timeout)
        t, p, index = buf.since(index)
        conn.send(P.SamplesEvent(t.tolist(), p.tolist()))  # empty batches double as keep-alives
    conn.send(P.EndEvent("max_s reached" if end is not None else "daemon stopping"))
    return None


def serve(config: DaemonConfig) -> None:
    """Entry point of ``bench meter serve``."""
    Daemon(config).serve()
