"""The daemon's operations, one function per op (see docs/meter-protocol.md). Each gets the daemon, the
connection and the decoded request and returns the reply's result (or sends events itself and returns None)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bench.meter import protocol as P
from bench.meter.buffer import RingBuffer
from bench.meter.session import Connection, handler

if TYPE_CHECKING:
    from bench.meter.daemon import Daemon

log = logging.getLogger(__name__)

FUTURE_SLACK_S = 1.0  # a window may end this much past now + wait_s (the client's clock, the sample period)


def _check_not_future(daemon: "Daemon", end_ns: int, wait_s: float) -> None:
    """A window that cannot have samples within the wait is a client or clock error, not an empty window."""
    ahead_s = (end_ns - daemon.clock.now_ns()) / 1e9
    if ahead_s > wait_s + FUTURE_SLACK_S:
        raise P.ProtocolError(P.BAD_REQUEST, f"window ends {ahead_s:.3f} s after the daemon's clock now (wait_s "
                                             f"{wait_s:g}): a window from the future, or a clock that is not the daemon's")


def _wait_past(daemon: "Daemon", end_ns: int, wait_s: float) -> float:
    """Block until a sample at or after ``end_ns`` is held (at most ``wait_s``); the seconds waited. A window that
    cannot have samples within the wait is a client or clock error; a stopping daemon sends the client on."""
    _check_not_future(daemon, end_ns, wait_s)
    t_wait = time.monotonic()
    daemon.buffer.wait_for(t_ns=end_ns, timeout_s=wait_s)
    if daemon.stop_event.is_set():
        raise P.ProtocolError(P.SHUTTING_DOWN, "the meter daemon is stopping; reconnect to its successor")
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
def _energy(daemon: "Daemon", conn: Connection, req: P.EnergyRequest) -> dict:
    waited = _wait_past(daemon, req.end_ns, req.wait_s)
    return _window_result(daemon.buffer, req.start_ns, req.end_ns, waited, req.edge_slack_s)


@handler("windows")
def _windows(daemon: "Daemon", conn: Connection, req: P.WindowsRequest) -> dict:
    waited = _wait_past(daemon, max(span[1] for span in req.spans_ns), req.wait_s)
    return {"windows": [_window_result(daemon.buffer, a, b, waited, req.edge_slack_s, tuple(inner))
                        for a, b, *inner in req.spans_ns]}


@handler("samples")
def _samples(daemon: "Daemon", conn: Connection, req: P.SamplesRequest) -> dict:
    t_ns, power_w = daemon.buffer.between(req.start_ns, req.end_ns, req.max_points)
    return {"t_ns": t_ns.tolist(), "power_w": [round(float(p), 6) for p in power_w]}


@handler("stats")
def _stats(daemon: "Daemon", conn: Connection, req: P.StatsRequest) -> dict:
    return daemon.stats()


@handler("info")
def _info(daemon: "Daemon", conn: Connection, req: P.InfoRequest) -> dict:
    return daemon.info()


@handler("time")
def _time(daemon: "Daemon", conn: Connection, req: P.TimeRequest) -> dict:
    return {}  # the reply's rx_ns/tx_ns are the answer


@handler("mark")
def _mark(daemon: "Daemon", conn: Connection, req: P.MarkRequest) -> dict:
    t_ns = req.t_ns if req.t_ns is not None else daemon.clock.now_ns()
    daemon.counters.marks += 1
    daemon.driver.on_mark(daemon.clock.from_meter(t_ns), req.label)
    if daemon.rawlog is not None:
        daemon.rawlog.write_event("mark", t_ns, req.label)
    log.info("mark %s at %d", req.label, t_ns)
    return {"t_ns": t_ns, "label": req.label}


@handler("stream")
def _stream(daemon: "Daemon", conn: Connection, req: P.StreamRequest) -> None:
    buf = daemon.buffer
    index = buf.total
    conn.reply(req.id, {"from_index": index, "from_ns": daemon.clock.now_ns()}, daemon.clock.now_ns())
    end = time.monotonic() + req.max_s if req.max_s is not None else None
    while not daemon.stop_event.is_set():
        if end is not None and time.monotonic() >= end:
            break
        timeout = 1.0 if end is None else max(min(1.0, end - time.monotonic()), 0.0)
        buf.wait_for(index=index, timeout_s=timeout)
        t, p, index = buf.since(index)
        conn.send(P.SamplesEvent(t.tolist(), p.tolist()))  # empty batches double as keep-alives
        conn.last_request = time.monotonic()  # a stream is activity, not idleness
    conn.send(P.EndEvent("max_s reached" if end is not None else "daemon stopping"))
    return None
