"""The meter daemon: one ingest thread reads the driver into the ring buffer and the raw log; the socket side
answers JSON-lines requests (session.py, handlers.py), one thread per connection.

Nothing polls: the ingest thread blocks in the driver's read, connection threads block in ``recv`` or in the
buffer's ``wait_for``, and the main thread blocks in a selector over the listening sockets, a self-pipe and (for
a daemon started for one run) a pidfd of its parent. Signal handlers only set a flag; the self-pipe, which
``signal.set_wakeup_fd`` writes to, wakes the main thread to act on it. So the daemon stops within a second of a
SIGTERM, of any number of SIGTERMs, or of its parent's death, and writes nothing after it stopped.
"""

from __future__ import annotations

import logging
import os
import resource
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import tenacity

from bench.errors import MeterError
from bench.meter import DAEMON_VERSION, protocol as P
from bench.meter import handlers  # noqa: F401 - registers the ops
from bench.meter import tls
from bench.meter.buffer import RawLog, RingBuffer, capacity_for
from bench.meter.clocksync import DaemonClock
from bench.meter.config import RUNTIME_CONFIG, RUNTIME_SOCKET, DaemonConfig
from bench.meter.drivers.base import Driver, create
from bench.meter.listeners import bind_tcp, bind_unix
from bench.meter.session import Connection

log = logging.getLogger(__name__)

MAX_SESSIONS = 32  # clients past their hello
MAX_PENDING = 16  # connections still in their TLS handshake or hello; the oldest gives way to a newcomer
INGEST_JOIN_S = 1.0
EXIT_DEADLINE_S = 1.8  # from the stop to the process gone, whatever hangs (a parent's death: gone within 2 s)


@dataclass
class Counters:
    samples: int = 0
    batches: int = 0
    reconnects: int = 0
    read_errors: int = 0
    requests: int = 0
    request_errors: int = 0
    connections: int = 0
    refused_busy: int = 0
    evicted_idle: int = 0
    dropped_pending: int = 0
    hello_timeouts: int = 0
    idle_closed: int = 0
    tls_failures: int = 0
    marks: int = 0
    last_error: str = ""
    connected: bool = False


def remove_runtime_dir(path: str) -> None:
    """The run's private directory: only the files a local daemon puts there, then the directory if empty."""
    for name in (RUNTIME_CONFIG, RUNTIME_SOCKET):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _exit_by(seconds: float) -> None:
    """The process is gone ``seconds`` from now even if its shutdown hangs (a driver's close, a vendor library's
    non-daemon thread joined at interpreter exit): SIGALRM's default action ends it in the kernel, no Python runs."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Daemon:
    def __init__(self, config: DaemonConfig, driver: Driver | None = None) -> None:
        self.config = config
        self.driver = driver or create(config.driver, config.options)
        self.clock = DaemonClock.synthetic(config.clock_offset_s, config.clock_drift_ppm)
        self.clock_identity = self.clock.identity()
        rate = max(self.driver.nominal_rate_hz, 0.01)
        gap_s = config.gap_s if config.gap_s is not None else max(10.0 / rate, 0.02)
        capacity = capacity_for(rate, config.buffer_s, int(config.max_buffer_mb * (1 << 20)))
        self.buffer = RingBuffer(capacity, int(gap_s * 1e9))
        self.horizon_s = capacity / rate
        self.counters = Counters()
        self.stop_event = threading.Event()
        self.started_ns = time.monotonic_ns()
        self.started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.rawlog: RawLog | None = None
        self.tls: tuple[Any, tls.Identity] | None = tls.server_context(config.tls_dir) if config.listen else None
        self._ingest_thread: threading.Thread | None = None
        self._sessions: set[Connection] = set()
        self._pending: list[Connection] = []
        self._conns_lock = threading.Lock()
        self._listeners: list[tuple[socket.socket, bool]] = []  # (socket, speaks TLS)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._signalled = 0

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
                        self._store(self.clock.to_meter(batch.t_ns), batch.power_w, batch.gap_before)
            except Exception as exc:  # noqa: BLE001 - any driver fault: record a gap, reconnect
                self.counters.read_errors += 1
                self.counters.reconnects += 1
                self.counters.last_error = f"read: {exc}"
                log.warning("meter %s lost (%s); gap recorded from %s, reconnecting", self.config.driver, exc,
                            self.buffer.newest_ns())
                self.buffer.mark_gap()
                if self.rawlog:
                    self.rawlog.write_event("gap", self.clock.now_ns(), f"device lost: {exc}")
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
                self.rawlog.write_event("gap", int(t_ns[0]) if len(t_ns) else self.clock.now_ns(), "device discontinuity")
            self.rawlog.write_samples(t_ns, power_w)

    # -- serving --------------------------------------------------------------------------------------------------

    def _open_listeners(self) -> None:
        if self.config.socket_path:
            self._listeners.append((bind_unix(self.config.socket_path, self.config.group), False))
        if self.config.listen:
            self._listeners.append((bind_tcp(self.config.listen), True))

    def _watch_parent(self, sel: selectors.BaseSelector) -> None:
        pid = self.config.parent_pid
        if pid is None:
            return
        gone = MeterError(f"the process that started this daemon (pid {pid}) is already gone")
        try:
            sel.register(os.pidfd_open(pid), selectors.EVENT_READ, "parent")
        except ProcessLookupError:
            raise gone from None
        except (OSError, AttributeError) as exc:
            log.warning("cannot watch parent pid %d (%s); stop the daemon yourself", pid, exc)
        if os.getppid() != pid:  # it died before the pidfd was open (and its pid may already name another process)
            raise gone

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signalled = signum  # no locks here: the main loop, woken by the wakeup fd, does the stopping

    def _announce(self) -> None:
        cfg, rate = self.config, max(self.driver.nominal_rate_hz, 0.01)
        if os.geteuid() == 0:
            log.warning("running as root; the meter daemon needs no privileges (make meter-install runs it as its own user)")
        if self.clock.skewed:
            log.warning("synthetic clock: offset %.6f s, drift %.3f ppm (tests only)", cfg.clock_offset_s,
                        cfg.clock_drift_ppm)
        log.info("meter daemon %s: driver %s, ring %d samples (%.0f s at %.1f Hz, %.1f MiB), gap threshold %.3f s",
                 DAEMON_VERSION, cfg.driver, self.buffer.capacity, self.horizon_s, rate, self.buffer.nbytes() / 2**20,
                 self.buffer.gap_ns / 1e9)

    def serve(self) -> None:
        """Run until SIGTERM/SIGINT, the parent's death or ``stop()``; returns after a clean shutdown. A bad
        address fails before anything is logged or written: one line, from the caller."""
        sel = selectors.DefaultSelector()
        try:
            self._watch_parent(sel)
            self._open_listeners()
        except BaseException:
            for sock, _ in self._listeners:
                sock.close()
            sel.close()
            raise
        self._announce()
        if self.config.log_dir:
            header = {"driver": self.config.driver, "device_id": self.driver.device_id(),
                      "rate_hz": self.driver.nominal_rate_hz, "daemon": DAEMON_VERSION}
            if self.clock.skewed:
                header["clock"] = f"synthetic_offset_ns={self.clock.offset_ns}_drift={self.clock.drift:g}"
            self.rawlog = RawLog(self.config.log_dir, header, int(self.config.rotate_mb * (1 << 20)), self.config.keep_files)
        try:
            if threading.current_thread() is threading.main_thread():
                signal.set_wakeup_fd(self._wake_w)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, self._on_signal)
            self._ingest_thread = threading.Thread(target=self._ingest, name="meter-ingest", daemon=True)
            self._ingest_thread.start()
            for sock, secure in self._listeners:
                sel.register(sock, selectors.EVENT_READ, ("accept", sock, secure))
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            log.info("serving %s", ", ".join(filter(None, [self.config.socket_path, self.config.listen and
                                                          f"tls://{self.config.listen}"])))
            self._loop(sel)
        finally:
            sel.close()
            if threading.current_thread() is threading.main_thread():
                _exit_by(EXIT_DEADLINE_S)
            self._shutdown()

    def _loop(self, sel: selectors.BaseSelector) -> None:
        while not self.stop_event.is_set():
            for key, _ in sel.select():
                if key.data == "wake":
                    os.read(self._wake_r, 512)
                elif key.data == "parent":
                    log.warning("the process that started this daemon (pid %s) ended; stopping", self.config.parent_pid)
                    self.stop()
                else:
                    self._accept(key.data[1], key.data[2])
            if self._signalled:
                log.info("signal %d: stopping", self._signalled)
                self.stop()

    def _accept(self, listener: socket.socket, secure: bool) -> None:
        try:
            sock, addr = listener.accept()
        except OSError as exc:  # EMFILE and the like: the next accept may work
            log.warning("accept failed: %s", exc)
            time.sleep(0.05)
            return
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else "unix"
        conn = Connection(self, sock, peer, self.tls if secure else None)
        with self._conns_lock:
            if len(self._pending) >= MAX_PENDING:
                oldest = self._pending.pop(0)
                oldest.close()
                self.counters.dropped_pending += 1
            self._pending.append(conn)
        self.counters.connections += 1
        threading.Thread(target=conn.run, name="meter-conn", daemon=True).start()

    def admit(self, conn: Connection) -> str | None:
        """After a good hello: a session slot (an idle session may give up its own), or why not."""
        now = time.monotonic()
        with self._conns_lock:
            if conn in self._pending:
                self._pending.remove(conn)
            if len(self._sessions) >= MAX_SESSIONS:
                victim = max(self._sessions, key=lambda c: c.idle_s(now))
                if victim.idle_s(now) < self.config.evict_idle_s:
                    return f"too many connections (limit {MAX_SESSIONS}, all active); retry shortly"
                self._sessions.discard(victim)
                victim.evict()
                self.counters.evicted_idle += 1
                log.info("evicted %s, idle %.0f s, for a new client", victim.peer, victim.idle_s(now))
            self._sessions.add(conn)
            return None

    def forget(self, conn: Connection) -> None:
        with self._conns_lock:
            self._sessions.discard(conn)
            if conn in self._pending:
                self._pending.remove(conn)

    def stop(self) -> None:
        """Ask the daemon to stop (from any thread, never from a signal handler)."""
        self.stop_event.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _shutdown(self) -> None:
        log.info("shutting down")
        self.stop_event.set()
        for sock, _ in self._listeners:
            sock.close()
        if self.config.socket_path and self._listeners:
            try:
                os.unlink(self.config.socket_path)
            except OSError:
                pass
        if self.config.runtime_dir:
            remove_runtime_dir(self.config.runtime_dir)
        self.buffer.interrupt()
        with self._conns_lock:
            for c in list(self._sessions) + self._pending:
                c.close()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout=INGEST_JOIN_S)
        if self.rawlog is not None:
            self.rawlog.close()  # later writes (a driver read still returning) are dropped, never appended
            for f in self.rawlog.files():
                log.info("raw log %s sha256=%s bytes=%d", f.path, f.sha256, f.bytes)

    # -- facts ------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        facts = self.driver.describe()
        if "origin_ns" in facts:
            facts["origin_ns"] = self.clock.to_meter(facts["origin_ns"])
        files = self.rawlog.files() if self.rawlog else []
        facts.update(
            daemon_version=DAEMON_VERSION,
            protocol=P.PROTOCOL_NAME,
            protocol_version=P.PROTOCOL_VERSION,
            sample_rate_hz=round(self.buffer.recent_rate_hz(), 3),
            socket=self.config.socket_path,
            listen=self.config.listen,
            tls_fingerprint=self.tls[1].fingerprint if self.tls else None,
            clock="CLOCK_MONOTONIC" + (" (synthetic offset/drift: tests only)" if self.clock.skewed else ""),
            synthetic_clock=self.clock.describe() if self.clock.skewed else None,
            pid=os.getpid(),
            started_utc=self.started_utc,
            gap_threshold_s=self.buffer.gap_ns / 1e9,
            buffer_capacity=self.buffer.capacity,
            horizon_s=round(self.horizon_s, 1),
            log_files=[{"path": f.path, "bytes": f.bytes, "sha256": f.sha256, "complete": f.complete} for f in files],
        )
        return facts

    def stats(self) -> dict[str, Any]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        c = self.counters
        with self._conns_lock:
            sessions, pending = len(self._sessions), len(self._pending)
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
            "sessions_open": sessions,
            "pending_open": pending,
            "refused_busy": c.refused_busy,
            "evicted_idle": c.evicted_idle,
            "dropped_pending": c.dropped_pending,
            "hello_timeouts": c.hello_timeouts,
            "idle_closed": c.idle_closed,
            "tls_failures": c.tls_failures,
            "marks": c.marks,
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "rss_kib": _rss_kib(),
            "max_rss_kib": ru.ru_maxrss,
            **{f"driver_{k}": v for k, v in self.driver.counters().items()},
        }


def serve(config: DaemonConfig) -> None:
    """Entry point of ``bench meter serve`` and ``python -m bench.meter``."""
    Daemon(config).serve()
