"""What the runner talks to: a blocking client for the meter daemon that outlives the daemon.

A lost connection (the daemon restarted, a cable, an idle slot given up) is reopened with bounded exponential
backoff (tenacity) and the request sent again; each outage is kept as an ``Outage`` for the runner to record.
For a daemon whose clock is not this machine's (its hello names its kernel boot id: a meter host over
``tls://``, or an SSH-forwarded socket) the client keeps a ``ClockModel`` of that clock from the timed round
trips every request already is (plus one every ``sync_every_s`` when nothing else is asked), and
converts every ``*_ns`` field of every request and reply at this one layer, so any op, present or future, speaks
the local clock to its caller. A reply then carries ``clock_conversion``: the offset used and its bound.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import tenacity

from bench.errors import MeterError
from bench.meter import DAEMON_VERSION, protocol as P
from bench.meter import tls
from bench.meter.address import MeterAddress, resolve
from bench.meter.clocksync import ClockModel, Conversion, Exchange, clock_id
from bench.meter.transport import Busy, Unreachable, open_stream
from bench.records import EnergyReading

log = logging.getLogger(__name__)

REQUESTS = {"energy": P.EnergyRequest, "windows": P.WindowsRequest, "samples": P.SamplesRequest,
            "stats": P.StatsRequest, "info": P.InfoRequest, "mark": P.MarkRequest, "time": P.TimeRequest}
SYNC_BURST = 8  # timed round trips right after connecting to a remote daemon
KEEPALIVE_S = 120.0  # a session to a daemon on this machine says something this often (its idle timeout is 600 s)


class UnknownWindow(MeterError):
    """``end_window`` for a key that was never begun (or already ended)."""


class DuplicateWindow(MeterError):
    """``begin_window`` for a key that is already open."""


class MeterUnavailable(MeterError):
    """The daemon could not be reached within the reconnect budget; the caller decides what an answer without a
    meter is worth (the runner records it with coverage 0)."""


class _Lost(Exception):
    """The connection broke mid-request; reconnect and send it again."""


@dataclass
class Outage:
    """One stretch without a daemon, on the local monotonic clock: from the last reply before it (``last_ok_ns``;
    the daemon may have died any time after) through noticing it to the first reply after it (``restored_ns``,
    None while it lasts). The daemon's data says exactly what is missing: the windows' coverage."""

    last_ok_ns: int
    noticed_ns: int
    reason: str
    restored_ns: int | None = None
    attempts: int = 0

    def seconds(self, now_ns: int) -> float:
        """How long the meter may have been away (an upper bound)."""
        return ((self.restored_ns or now_ns) - self.last_ok_ns) / 1e9


class MeterClient:
    """One logical session with the daemon (reconnected as needed); thread-safe, requests are serialised."""

    def __init__(self, address: MeterAddress, timeout_s: float = 15.0, retry_s: float = 20.0,
                 sync_every_s: float = 10.0, keepalive_s: float = KEEPALIVE_S) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.sync_every_s = sync_every_s
        self.keepalive_s = keepalive_s
        self.clock: ClockModel | None = None  # set when the daemon's clock is not this machine's (its hello says)
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 1
        self._lock = threading.RLock()
        self._windows: dict[str, int] = {}
        self._outage: Outage | None = None
        self._outages: list[Outage] = []
        self._last_exchange = 0.0
        self._last_ok_ns = time.monotonic_ns()
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None

    # -- connection -------------------------------------------------------------------------------------------------

    def _readline(self, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Lost(f"meter daemon at {self.address} did not answer within {timeout_s:g} s")
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except ssl.SSLError as exc:
                raise MeterError(tls.explain(exc, f"meter daemon at {self.address}", tls.load(self.address.tls_dir))) from None
            except OSError as exc:
                raise _Lost(f"connection to the meter daemon at {self.address} failed: {exc}") from None
            if not chunk:
                raise _Lost(f"meter daemon at {self.address} closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _send(self, obj: Any) -> None:
        try:
            self._sock.settimeout(self.timeout_s)
            self._sock.sendall(P.encode(obj))
        except OSError as exc:
            raise _Lost(f"cannot send to the meter daemon at {self.address}: {exc}") from None

    def _open(self) -> None:
        """Connect and exchange the versioned hello; a refusal for lack of slots is ``Unreachable`` (retry)."""
        self._drop()
        self._sock = open_stream(self.address, self.timeout_s)
        try:
            try:
                self._send(P.Hello(role="client", software=f"bench-meter-client/{DAEMON_VERSION}"))
            except _Lost:
                pass  # a refusal may already be waiting to be read
            hello = P.decode_hello(self._readline(self.timeout_s), expect_role="daemon")
            foreign = hello.clock != clock_id() if hello.clock else self.address.remote
            self.clock = ClockModel() if foreign else None  # a new session may be a new boot: learn it afresh
            if self.clock is not None:
                for _ in range(SYNC_BURST):
                    self._request("time", {}, 0.0)
        except P.ProtocolError as exc:
            self._drop()
            if exc.code in (P.BUSY, P.SHUTTING_DOWN):
                raise Busy(f"meter daemon at {self.address} has no free slot: {exc}") from None
            raise
        except _Lost as exc:
            self._drop()
            raise Unreachable(str(exc)) from None
        except BaseException:
            self._drop()
            raise
        self._start_syncer()

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock, self._buf = None, b""

    def _reconnect(self, reason: str) -> None:
        """Reopen with bounded backoff; the first call of an outage waits up to ``retry_s``, later calls of the
        same outage try once (a long outage must not stall every answer)."""
        now = time.monotonic_ns()
        if self._outage is None:
            self._outage = Outage(self._last_ok_ns, now, reason)
            log.warning("meter connection lost (%s); reconnecting", reason)
            budget = self.retry_s
        else:
            budget = 0.0
        outage = self._outage

        def count(state: tenacity.RetryCallState) -> None:
            outage.attempts += 1

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Unreachable),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            stop=tenacity.stop_after_delay(budget),
            before=count,
            reraise=True,
        )
        try:
            retrying(self._open)
        except Unreachable as exc:
            raise MeterUnavailable(f"meter daemon at {self.address} unreachable since the outage began "
                                   f"({outage.attempts} attempts): {exc}") from None
        outage.restored_ns = time.monotonic_ns()
        self._outages.append(outage)
        self._outage = None
        log.warning("meter connection restored (at most %.1f s without a meter)", outage.seconds(outage.restored_ns))

    def connect(self) -> "MeterClient":
        """The first connection: a daemon with no free slot is retried for ``retry_s``, an absent one is not."""
        retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(Busy),
                                     wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
                                     stop=tenacity.stop_after_delay(self.retry_s), reraise=True)
        with self._lock:
            retrying(self._open)
        return self

    # -- requests ---------------------------------------------------------------------------------------------------

    def _request(self, op: str, fields: dict[str, Any], extra_timeout_s: float) -> dict[str, Any]:
        """One request on the open connection; ``*_ns`` fields converted both ways for a remote daemon."""
        used: list[Conversion] = []
        if self.clock is not None and op != "time":
            fields, used = self.clock.convert(fields, outbound=True)
        rid = self._next_id
        self._next_id += 1
        t1 = time.monotonic_ns()
        try:
            self._send(REQUESTS[op](id=rid, **fields))
        except _Lost as exc:
            raise _Lost(self._closing_reason() or str(exc)) from None
        while True:
            reply = P.decode_reply(self._readline(self.timeout_s + extra_timeout_s))
            if isinstance(reply, P.EndEvent) and reply.reason.startswith(P.CLOSING_REASONS):
                raise _Lost(f"the meter daemon closed this session ({reply.reason})")
            if isinstance(reply, (P.SamplesEvent, P.EndEvent)):
                continue  # leftovers of an earlier stream
            if reply.id == rid:
                break
            log.debug("skipping reply to request %s", reply.id)
        t4 = self._last_ok_ns = time.monotonic_ns()
        self._last_exchange = time.monotonic()
        if isinstance(reply, P.ErrorReply):
            if reply.code == P.SHUTTING_DOWN:
                raise _Lost(reply.message)
            raise P.RemoteError(reply.code, reply.message)
        result = dict(reply.result)
        if self.clock is not None:
            if reply.rx_ns is not None:
                self.clock.add(Exchange(t1, reply.rx_ns, reply.tx_ns, t4))
            result, back = self.clock.convert(result, outbound=False)
            used = used or back
            if used:
                result["clock_conversion"] = {"offset_ns": used[0].offset_ns,
                                              "bound_ns": max(c.bound_ns for c in used)}
        return result

    def _closing_reason(self) -> str | None:
        """After a failed send: the daemon's last word, if it said why it closed the session (idle, evicted)."""
        try:
            while True:
                reply = P.decode_reply(self._readline(0.05))
                if isinstance(reply, P.EndEvent) and reply.reason.startswith(P.CLOSING_REASONS):
                    return f"the meter daemon closed this session ({reply.reason})"
        except (_Lost, MeterError):
            return None

    def call(self, op: str, extra_timeout_s: float = 0.0, **fields: Any) -> dict[str, Any]:
        """Send one request and return its result; a daemon error raises ``RemoteError`` (code + sentence), a
        daemon that stays away raises ``MeterUnavailable``."""
        with self._lock:
            while True:
                if self._sock is None:
                    self._reconnect("not connected")
                try:
                    return self._request(op, fields, extra_timeout_s)
                except _Lost as exc:
                    self._drop()
                    self._reconnect(str(exc))

    def outages(self) -> list[Outage]:
        """Outages that ended since the last call (the one still going, if any, is ``current_outage``)."""
        with self._lock:
            done, self._outages = self._outages, []
            return done

    @property
    def current_outage(self) -> Outage | None:
        return self._outage

    # -- clock sync ------------------------------------------------------------------------------------------------

    def _start_syncer(self) -> None:
        if self._syncer is None and (self.sync_every_s > 0 if self.clock is not None else self.keepalive_s > 0):
            self._syncer = threading.Thread(target=self._sync_loop, name="meter-clock-sync", daemon=True)
            self._syncer.start()

    def _sync_loop(self) -> None:
        """A timed round trip when none happened for a while: every ``sync_every_s`` for a daemon on another clock
        (the drift stays known through long answers), every ``keepalive_s`` otherwise (a 20-minute answer must not
        let the daemon close the session as idle)."""
        while True:
            period = self.sync_every_s if self.clock is not None else self.keepalive_s
            if self._closed.wait(period):
                return
            if time.monotonic() - self._last_exchange < period:
                continue
            try:
                self.call("time")
            except MeterError as exc:
                log.debug("clock sync / keep-alive skipped: %s", exc)

    # -- API --------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self.call("info")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def energy(self, start_ns: int, end_ns: int, wait_s: float = 2.0) -> EnergyReading:
        r = self.energy_details(start_ns, end_ns, wait_s)
        return _reading(r, start_ns, end_ns, r.get("clock_conversion"))

    def windows(self, spans_ns: list[tuple[int, ...]], wait_s: float = 2.0,
                edge_slack_s: float = 0.0) -> list[EnergyReading]:
        """Several windows ``(start_ns, end_ns, inner_ns...)`` in one request, answered once the latest end is
        covered (or ``wait_s`` passed); inner instants and ``edge_slack_s`` (the stamps' uncertainty) shape the
        windows' edge terms."""
        r = self.call("windows", extra_timeout_s=wait_s, spans_ns=[[int(x) for x in span] for span in spans_ns],
                      wait_s=float(wait_s), edge_slack_s=float(edge_slack_s))
        return [_reading(w, span[0], span[1], r.get("clock_conversion")) for w, span in zip(r["windows"], spans_ns)]

    def energy_details(self, start_ns: int, end_ns: int, wait_s: float = 2.0) -> dict[str, Any]:
        """The full reply, gaps included (``gaps_ns``: uncovered intervals inside the window)."""
        return self.call("energy", extra_timeout_s=wait_s, start_ns=int(start_ns), end_ns=int(end_ns), wait_s=float(wait_s))

    def samples(self, start_ns: int, end_ns: int, max_points: int = 1000) -> list[tuple[int, float]]:
        """Stored (t_ns, power_w) samples of a window, thinned to ``max_points``: for plotting a power trace."""
        r = self.call("samples", start_ns=int(start_ns), end_ns=int(end_ns), max_points=int(max_points))
        return list(zip((int(t) for t in r["t_ns"]), (float(p) for p in r["power_w"])))

    def mark(self, label: str, t_ns: int | None = None) -> None:
        """A mark in the daemon's raw log, stamped here (so a resend after a reconnect repeats the same line)."""
        self.call("mark", label=label, t_ns=int(t_ns) if t_ns is not None else time.monotonic_ns())

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
            if self._sock is None:
                self._reconnect("not connected")
            rid = self._next_id
            self._next_id += 1
            try:
                self._send(P.StreamRequest(rid, max_s))
                while True:
                    reply = P.decode_reply(self._readline(self.timeout_s))
                    if isinstance(reply, P.ErrorReply):
                        raise P.RemoteError(reply.code, reply.message)
                    if isinstance(reply, P.EndEvent):
                        return
                    if isinstance(reply, P.SamplesEvent) and reply.t_ns:
                        t_ns = reply.t_ns
                        if self.clock is not None:
                            t_ns = self.clock.convert({"t_ns": t_ns}, outbound=False)[0]["t_ns"]
                        yield t_ns, reply.power_w
            except _Lost as exc:
                self._drop()
                raise MeterError(f"sample stream from the meter daemon ended: {exc}") from None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._drop()

    def __enter__(self) -> "MeterClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reading(r: dict[str, Any], start_ns: int, end_ns: int, conv: dict[str, int] | None) -> EnergyReading:
    """A window's reply as a record, on the caller's own stamps (a remote reply's are converted back, to within
    the clock bound), with the clock conversion used, if any."""
    mean = r["mean_w"]
    return EnergyReading(
        start_ns=int(start_ns), end_ns=int(end_ns), energy_j=float(r["energy_j"]),
        mean_w=float(mean) if mean is not None else math.nan, n_samples=int(r["n_samples"]),
        coverage=float(r["coverage"]), edge_j=float(r.get("edge_j", 0.0)), edge_w=float(r.get("edge_w", 0.0)),
        clock_offset_ns=(conv or {}).get("offset_ns"), clock_bound_ns=(conv or {}).get("bound_ns"),
    )


def connect(address: MeterAddress | str | None = None, timeout_s: float = 15.0, **options: Any) -> MeterClient:
    """Connect (``address``: a MeterAddress, a path or ``tls://HOST:PORT``; None: the resolved default) and
    exchange the versioned hello; a mismatch raises ``ProtocolMismatch``, no daemon ``MeterError``."""
    addr = address if isinstance(address, MeterAddress) else resolve(address)
    client = MeterClient(addr, timeout_s, **options)
    try:
        return client.connect()
    except Unreachable as exc:
        raise MeterError(str(exc)) from None
