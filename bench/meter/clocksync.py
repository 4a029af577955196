"""The meter host's clock seen from the measured machine: offset and drift from timed round trips, with a bound.

Every reply of the daemon carries ``rx_ns`` and ``tx_ns``, its clock when the request arrived and when the reply
left; the client stamps ``t1`` before sending and ``t4`` after the reply arrived (the four NTP timestamps). By
causality the offset ``theta = remote - local`` at that moment lies in ``[t3 - t4, t2 - t1]``: an interval as
wide as the network delay, exact whatever the asymmetry of the path. With a clock that drifts linearly,
``theta(t) = a + b (t - t_ref)``, and every exchange is a strip that the line must cross; the lines crossing all
kept strips form a convex polygon in ``(a, b)``. The estimate at ``t`` is the middle of the range of
``a + b (t - t_ref)`` over that polygon and the bound is half its width: a guarantee, not a statistic, as long as
the drift is linear over the kept horizon. Slow exchanges (a busy network) give wide strips that hardly cut the
polygon, which is minimum-delay filtering without a threshold to tune; the ones wider than a few times the best
delay are not kept at all. When the strips stop intersecting (the drift changed, the host rebooted), the oldest
are dropped until they do.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_DRIFT = 500e-6  # crystal oscillators are within +-100 ppm; this is the prior box on b
SLACK_NS = 1_000.0  # stamp resolution and the drift during one round trip
HORIZON_NS = 600 * 10**9  # exchanges older than this are forgotten (drift is only linear over minutes)
KEEP = 256
# An exchange slower than LOOSE_FACTOR x the best one plus LOOSE_FLOOR_NS cannot tighten anything. The floor is
# wide because a round trip's delay is mostly wake-ups: on an idle machine a cold one took ~0.5 ms against a warm
# 45 us (bench_meter_remote.py: with a 0.1 ms floor 70% of the exchanges were dropped, the drift went unconstrained
# between the few kept, and the bound, hence the error, grew to milliseconds); such a strip, 0.5 ms wide, still
# narrows the drift across a baseline of seconds.
LOOSE_FACTOR = 4.0
LOOSE_FLOOR_NS = 1_000_000


@dataclass(frozen=True)
class Exchange:
    """One timed round trip: local send, remote receive, remote send, local receive (ns)."""

    t1: int
    t2: int
    t3: int
    t4: int

    @property
    def delay_ns(self) -> int:
        return (self.t4 - self.t1) - (self.t3 - self.t2)

    @property
    def local_ns(self) -> int:
        return (self.t1 + self.t4) // 2


@dataclass(frozen=True)
class Conversion:
    """The offset used at one instant (remote - local, ns) and the bound on its error (ns)."""

    offset_ns: int
    bound_ns: int


class NoClockModel(Exception):
    """No exchange yet: nothing can be converted."""


Point = tuple[float, float]  # (a relative to the reference offset in ns, b in ns per second)


def _clip(poly: list[Point], x: float, lo: float, hi: float) -> list[Point]:
    """The part of the convex polygon where lo <= a + b x <= hi."""
    for sign, bound in ((1.0, lo), (-1.0, -hi)):
        out: list[Point] = []
        n = len(poly)
        for i in range(n):
            p, q = poly[i], poly[(i + 1) % n]
            fp, fq = sign * (p[0] + p[1] * x) - bound, sign * (q[0] + q[1] * x) - bound
            if fp >= 0:
                out.append(p)
            if (fp >= 0) != (fq >= 0):
                s = fp / (fp - fq)
                out.append((p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])))
        poly = out
        if not poly:
            break
    return poly


class ClockModel:
    """Thread-safe; ``add`` an exchange, then ``at(t_local)`` or convert whole messages."""

    def __init__(self, horizon_ns: int = HORIZON_NS, keep: int = KEEP) -> None:
        self.horizon_ns = horizon_ns
        self.keep = keep
        self._ex: deque[Exchange] = deque()
        self._lock = threading.Lock()
        self._poly: list[Point] = []
        self._ref_t = 0  # local ns that x is measured from
        self._ref_theta = 0  # ns subtracted from a to keep the numbers small
        self.dropped_inconsistent = 0

    def __len__(self) -> int:
        return len(self._ex)

    def reset(self) -> None:
        with self._lock:
            self._ex.clear()
            self._poly = []

    # -- building the polygon --------------------------------------------------------------------------------------

    def _strip(self, e: Exchange) -> tuple[float, float, float]:
        x = (e.local_ns - self._ref_t) / 1e9
        slack = SLACK_NS + MAX_DRIFT * (e.t4 - e.t1)
        return x, (e.t3 - e.t4) - self._ref_theta - slack, (e.t2 - e.t1) - self._ref_theta + slack

    def _rebuild(self) -> None:
        """From scratch: drop the oldest exchanges until the rest are consistent with one linear drift."""
        while self._ex:
            newest = self._ex[-1]
            self._ref_t, self._ref_theta = newest.local_ns, (newest.t2 - newest.t1 + newest.t3 - newest.t4) // 2
            span = (newest.local_ns - self._ex[0].local_ns) / 1e9
            b = MAX_DRIFT * 1e9
            a = b * span + 1e10
            poly: list[Point] = [(-a, -b), (a, -b), (a, b), (-a, b)]
            for e in reversed(self._ex):  # newest first: the polygon is small after the first strip
                poly = _clip(poly, *self._strip(e))
                if not poly:
                    break
            if poly:
                self._poly = poly
                return
            self._ex.popleft()
            self.dropped_inconsistent += 1
        self._poly = []

    def add(self, e: Exchange) -> bool:
        """Keep the exchange if it can tighten the model; returns whether it was kept."""
        if e.t4 < e.t1 or e.t3 < e.t2 or e.delay_ns < 0:
            return False
        with self._lock:
            best = min((x.delay_ns for x in self._ex), default=e.delay_ns)
            if self._ex and e.delay_ns > LOOSE_FACTOR * best + LOOSE_FLOOR_NS:
                return False
            self._ex.append(e)
            stale = self._ex[0].local_ns < e.local_ns - self.horizon_ns * 1.25 or len(self._ex) > self.keep
            if stale:
                while len(self._ex) > 1 and (self._ex[0].local_ns < e.local_ns - self.horizon_ns
                                             or len(self._ex) > self.keep):
                    self._ex.popleft()
            clipped = [] if stale or not self._poly else _clip(self._poly, *self._strip(e))
            if clipped:
                self._poly = clipped
            else:
                self._rebuild()
            return True

    # -- using it -------------------------------------------------------------------------------------------------

    def at(self, t_local: int) -> Conversion:
        """The offset (remote - local) at a local instant and the bound on its error."""
        with self._lock:
            if not self._poly:
                raise NoClockModel("no timed exchange with the meter daemon yet")
            x = (t_local - self._ref_t) / 1e9
            values = [a + b * x for a, b in self._poly]
            lo, hi = min(values), max(values)
        return Conversion(self._ref_theta + int(round((lo + hi) / 2)), int(math.ceil((hi - lo) / 2)))

    def to_remote(self, t_local: int) -> tuple[int, Conversion]:
        c = self.at(t_local)
        return t_local + c.offset_ns, c

    def to_local(self, t_remote: int) -> tuple[int, Conversion]:
        c = self.at(t_remote - self.at(t_remote - self._ref_theta).offset_ns)  # theta varies slowly: one step
        return t_remote - c.offset_ns, c

    def convert(self, message: dict[str, Any], outbound: bool) -> tuple[dict[str, Any], list[Conversion]]:
        """Every ``*_ns`` field, at any depth (an int, or lists of ints nested), converted; the conversions used.

        Contract: a field ending in ``_ns`` is an instant on CLOCK_MONOTONIC; durations are never named so.
        """
        used: list[Conversion] = []
        step = self.to_remote if outbound else self.to_local

        def instants(value: Any) -> Any:
            if isinstance(value, int) and not isinstance(value, bool):
                t, c = step(value)
                used.append(c)
                return t
            if isinstance(value, list):
                return [instants(v) for v in value]
            return value

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: instants(v) if k.endswith("_ns") else walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        return walk(message), used


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def clock_id() -> str:
    """Which CLOCK_MONOTONIC this process reads: the kernel's boot id (containers share the host's)."""
    try:
        with open(BOOT_ID) as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class DaemonClock:
    """The clock a daemon stamps with: CLOCK_MONOTONIC, or (tests only) that plus a fixed offset and a linear
    drift, so one machine can play a meter host whose clock differs from the measured machine's by known amounts."""

    offset_ns: int = 0
    drift: float = 0.0  # fraction: 1e-6 is 1 ppm fast
    origin_ns: int = 0

    @classmethod
    def synthetic(cls, offset_s: float, drift_ppm: float) -> "DaemonClock":
        return cls(int(round(offset_s * 1e9)), drift_ppm * 1e-6, time.monotonic_ns())

    @property
    def skewed(self) -> bool:
        return self.offset_ns != 0 or self.drift != 0.0

    def to_meter(self, t_ns: Any) -> Any:
        """Host monotonic -> this clock (an int, or an int64 array of stamps)."""
        if not self.skewed:
            return t_ns
        if isinstance(t_ns, np.ndarray):
            return t_ns + self.offset_ns + np.round((t_ns - self.origin_ns) * self.drift).astype(np.int64)
        return int(t_ns) + self.offset_ns + int(round((int(t_ns) - self.origin_ns) * self.drift))

    def from_meter(self, t_ns: int) -> int:
        if not self.skewed:
            return t_ns
        return self.origin_ns + int(round((int(t_ns) - self.offset_ns - self.origin_ns) / (1.0 + self.drift)))

    def now_ns(self) -> int:
        return self.to_meter(time.monotonic_ns())

    def identity(self) -> str:
        return clock_id() + ("+synthetic" if self.skewed else "")

    def describe(self) -> dict[str, Any]:
        """The truth a test checks a client's estimate against: meter = host + offset + drift (host - origin).
        Not named ``*_ns``: these are not instants on the daemon's clock, so no client converts them."""
        return {"offset": self.offset_ns, "drift": self.drift, "origin": self.origin_ns}
