"""Memory-bounded sample storage.

``RingBuffer`` keeps the most recent samples in fixed numpy arrays together with a cumulative-energy index
(trapezoid rule), so the energy of any window is two binary searches and two interpolations, not a sum over
samples. Intervals that are not covered by data (before the first sample, reconnects, holes longer than the gap
threshold) are never integrated and are reported as gaps; a window over them comes back with coverage below 1.

``RawLog`` writes every raw sample to rotating text files for provenance and hashes the bytes as they are written,
so the daemon can report each file's sha256 without reading it back.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LOG_MAGIC = "# bench-meter raw log v1"


@dataclass(frozen=True)
class EdgeSampling:
    """How well the samples pin down the power at a window's edges (the inputs of the window's error bound).

    An edge at ``x`` whose true instant may be ``slack`` away from its stamp is near the sample intervals that
    meet ``[x - slack, x + slack]``; so is an instant inside the window where power is known to change. If power
    changes there once, monotonically, by at most ``dP`` (the spread of those intervals' samples), the trapezoid's
    error over the window's part of them is at most ``dP * h``, ``h`` the worst case over the intervals of
    ``y - y**2 / (2 d)`` (``d`` the interval, ``y`` its part inside the window; at most ``d / 2``). ``edge_j`` sums
    ``dP * h`` over those instants; ``edge_w`` sums the two edges' ``dP``: a stamp error of ``s`` moves ``s * dP``
    joules across an edge."""

    edge_j: float = 0.0
    edge_w: float = 0.0


@dataclass(frozen=True)
class WindowEnergy:
    """What the buffer knows about one window: the raw integral over its covered part and where it is not covered.

    A window with no sample inside it is not covered at all (``covered_ns`` 0), even when samples on both sides
    would let it be interpolated: the meter never saw that stretch, so nothing can be claimed about it."""

    start_ns: int
    end_ns: int
    energy_j: float
    covered_ns: int
    n_samples: int
    gaps_ns: tuple[tuple[int, int], ...]  # uncovered intervals inside the window, clipped to it
    edges: EdgeSampling = EdgeSampling()

    @property
    def coverage(self) -> float:
        span = self.end_ns - self.start_ns
        return self.covered_ns / span if span > 0 else 0.0

    @property
    def mean_w(self) -> float:
        return self.energy_j / (self.covered_ns / 1e9) if self.covered_ns > 0 else float("nan")


# Per sample: stamp (int64), power (float32: 24 bits, finer than any meter's ADC), cumulative J (float64, exact
# over days), gap flag. Fixed arrays, so a daemon's memory is set at start and stays flat for weeks.
BYTES_PER_SAMPLE = 8 + 4 + 8 + 1


def capacity_for(rate_hz: float, horizon_s: float, max_bytes: int) -> int:
    """Samples to hold ``horizon_s`` at ``rate_hz`` (5% spare for a fast clock), but never more than ``max_bytes``."""
    return int(max(min(horizon_s * rate_hz * 1.05, max_bytes / BYTES_PER_SAMPLE), 1024))


class RingBuffer:
    """Fixed-capacity store of (t_ns, power_w) with a cumulative-energy index; thread-safe.

    Writers call ``append`` (and ``mark_gap`` when the device lost continuity); readers call ``window`` and
    ``since``, and ``wait_for`` to block until the samples they need have arrived (woken by every append, never
    polling). Samples older than the capacity are gone from memory; the raw log keeps them.
    """

    def __init__(self, capacity: int, gap_ns: int) -> None:
        if capacity < 2:
            raise ValueError(f"ring capacity must be at least 2 samples, got {capacity}")
        self.capacity = int(capacity)
        self.gap_ns = int(gap_ns)
        self._t = np.zeros(self.capacity, np.int64)
        self._p = np.zeros(self.capacity, np.float32)
        self._e = np.zeros(self.capacity, np.float64)  # cumulative J at each sample
        self._gap = np.zeros(self.capacity, np.bool_)  # the interval ending at this sample is a gap
        self._total = 0  # samples ever appended; logical index of the next one
        self._size = 0
        self._gaps: deque[tuple[int, int]] = deque()  # uncovered intervals between consecutive samples
        self._gap_starts: list[int] = []
        self._pending_gap = False
        self.dropped_out_of_order = 0
        self.dropped_invalid = 0
        self.gaps_total = 0
        self._interrupted = False
        self._last_p = 0.0
        self.cond = threading.Condition(threading.Lock())

    # -- writing ----------------------------------------------------------------------------------------------

    def mark_gap(self) -> None:
        """The next appended sample starts a new segment: the interval leading into it is not integrated."""
        with self.cond:
            self._pending_gap = True

    def append(self, t_ns: np.ndarray, power_w: np.ndarray, gap_before: bool = False) -> int:
        """Append time-ordered samples; returns how many were kept (non-increasing stamps are dropped, counted)."""
        t_ns = np.asarray(t_ns, np.int64)
        power_w = np.asarray(power_w, np.float64)
        if t_ns.size == 0:
            if gap_before:
                self.mark_gap()
            return 0
        with self.cond:
            have_prev = self._size > 0
            last = int(self._t[(self._total - 1) % self.capacity]) if have_prev else np.iinfo(np.int64).min
            finite = np.isfinite(power_w)
            if not finite.all():
                self.dropped_invalid += int((~finite).sum())
                t_ns, power_w = t_ns[finite], power_w[finite]
                if t_ns.size == 0:
                    return 0
            prior_max = np.maximum.accumulate(np.concatenate(([last], t_ns[:-1])))
            keep = t_ns > prior_max
            if not keep.all():
                self.dropped_out_of_order += int((~keep).sum())
                t_ns, power_w = t_ns[keep], power_w[keep]
                if t_ns.size == 0:
                    return 0
            n = t_ns.size
            if have_prev:
                last_i = (self._total - 1) % self.capacity
                prev_t = np.concatenate(([self._t[last_i]], t_ns[:-1]))
                prev_p = np.concatenate(([self._last_p], power_w[:-1]))  # unrounded, as it was integrated
                dt = t_ns - prev_t
                is_gap = dt > self.gap_ns
                if gap_before or self._pending_gap:
                    is_gap[0] = True
                inc = np.where(is_gap, 0.0, dt * (prev_p + power_w) * 0.5e-9)
                e = self._e[last_i] + np.cumsum(inc)
                for i in np.flatnonzero(is_gap).tolist():
                    self._add_gap(int(prev_t[i]), int(t_ns[i]))
            else:
                is_gap = np.zeros(n, np.bool_)
                e = np.concatenate(([0.0], np.cumsum((t_ns[1:] - t_ns[:-1]) * (power_w[1:] + power_w[:-1]) * 0.5e-9)))
                inner = np.flatnonzero((t_ns[1:] - t_ns[:-1]) > self.gap_ns)
                if inner.size:  # rare: re-do with the gap rule applied
                    is_gap[inner + 1] = True
                    inc = np.concatenate(([0.0], (t_ns[1:] - t_ns[:-1]) * (power_w[1:] + power_w[:-1]) * 0.5e-9))
                    inc[is_gap] = 0.0
                    e = np.cumsum(inc)
                    for i in (inner + 1).tolist():
                        self._add_gap(int(t_ns[i - 1]), int(t_ns[i]))
            self._pending_gap = False
            self._last_p = float(power_w[-1])
            if n > self.capacity:
                t_ns, power_w, e, is_gap = t_ns[-self.capacity:], power_w[-self.capacity:], e[-self.capacity:], is_gap[-self.capacity:]
                self._total += n - self.capacity
                n = self.capacity
            start = self._total % self.capacity
            first = min(n, self.capacity - start)
            for dst, src in ((self._t, t_ns), (self._p, power_w), (self._e, e), (self._gap, is_gap)):
                dst[start:start + first] = src[:first]
                if first < n:
                    dst[:n - first] = src[first:]
            self._total += n
            self._size = min(self._size + n, self.capacity)
            self._evict_gaps()
            self.cond.notify_all()
            return n

    def _add_gap(self, a: int, b: int) -> None:
        self._gaps.append((a, b))
        self._gap_starts.append(a)
        self.gaps_total += 1

    def _evict_gaps(self) -> None:
        oldest = int(self._t[(self._total - self._size) % self.capacity])
        while self._gaps and self._gaps[0][1] <= oldest:
            self._gaps.popleft()
            self._gap_starts.pop(0)

    # -- reading ----------------------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self._total

    @property
    def size(self) -> int:
        return self._size

    def newest_ns(self) -> int | None:
        with self.cond:
            return self._newest_locked()

    def wait_for(self, *, t_ns: int | None = None, index: int | None = None, timeout_s: float) -> bool:
        """Block until a sample stamped at or after ``t_ns`` (or with logical index >= ``index``) is held, up to
        ``timeout_s``; False on timeout or after ``interrupt()``. Appends wake it, so waiting costs nothing."""
        deadline = time.monotonic() + timeout_s

        def there() -> bool:
            if t_ns is not None:
                newest = self._newest_locked()
                return newest is not None and newest >= t_ns
            return index is not None and self._total > index

        with self.cond:
            while not there():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._interrupted:
                    return False
                self.cond.wait(remaining)
            return True

    def interrupt(self) -> None:
        """Wake every ``wait_for`` now and make later ones return at once (the daemon is stopping)."""
        with self.cond:
            self._interrupted = True
            self.cond.notify_all()

    def _newest_locked(self) -> int | None:
        return int(self._t[(self._total - 1) % self.capacity]) if self._size else None

    def oldest_ns(self) -> int | None:
        with self.cond:
            return int(self._t[(self._total - self._size) % self.capacity]) if self._size else None

    def _count(self, x: int, side: str) -> int:
        """How many stored samples have t < x (side='left') or t <= x (side='right'); the ring is two sorted runs."""
        size, cap = self._size, self.capacity
        start = (self._total - size) % cap
        if start + size <= cap:
            return int(np.searchsorted(self._t[start:start + size], x, side))
        a = self._t[start:]
        b = self._t[:size - a.size]
        if x > b[0] or (side == "right" and x == b[0]):
            return a.size + int(np.searchsorted(b, x, side))
        return int(np.searchsorted(a, x, side))

    def _phys(self, logical: int) -> int:
        return (self._total - self._size + logical) % self.capacity

    def _cum_energy(self, x: int) -> float:
        """Cumulative energy (J) at instant x, interpolating the trapezoid inside the interval that holds x."""
        k = self._count(x, "right")  # samples with t <= x
        if k == 0:
            return float(self._e[self._phys(0)])
        i = self._phys(k - 1)
        if k == self._size:
            return float(self._e[i])
        j = self._phys(k)
        if self._gap[j]:
            return float(self._e[i])
        t_i, t_j = int(self._t[i]), int(self._t[j])
        p_i, p_j = float(self._p[i]), float(self._p[j])
        d = x - t_i
        p_x = p_i + (p_j - p_i) * (d / (t_j - t_i))
        return float(self._e[i]) + d * (p_i + p_x) * 0.5e-9

    def _edge(self, x: int, slack_ns: int, start_ns: int, end_ns: int) -> tuple[float, float]:
        """(dP * h in J, dP in W) of an edge at ``x`` of the window [start_ns, end_ns]. Intervals outside the data
        or in a gap carry no term (they are not covered, and coverage says so)."""
        lo = max(self._count(x - slack_ns, "left") - 1, 0)  # the first interval reaching x - slack starts here
        hi = min(self._count(x + slack_ns, "right"), self._size - 1)  # the last one starting by x + slack ends here
        h, p_min, p_max = 0.0, float("inf"), float("-inf")
        for k in range(lo, hi):  # a few intervals: scalar code beats numpy's per-call overhead here
            i, j = self._phys(k), self._phys(k + 1)
            if self._gap[j]:
                continue
            a, b = int(self._t[i]), int(self._t[j])
            y = max(min(b, end_ns) - max(a, start_ns), 0)  # the interval's part inside the window
            h = max(h, y - y * y / (2 * (b - a)))
            p_min = min(p_min, float(self._p[i]), float(self._p[j]))
            p_max = max(p_max, float(self._p[i]), float(self._p[j]))
        if p_max < p_min:
            return 0.0, 0.0
        return (p_max - p_min) * h * 1e-9, p_max - p_min

    def _edges(self, start_ns: int, end_ns: int, slack_ns: int, inner_ns: tuple[int, ...]) -> EdgeSampling:
        """Both edges, plus the instants inside the window where power is known to change (only their sampling
        term: a stamp error there moves energy between the phases, not out of the window)."""
        (ea, wa), (eb, wb) = self._edge(start_ns, slack_ns, start_ns, end_ns), self._edge(end_ns, slack_ns, start_ns, end_ns)
        inner = sum(self._edge(x, slack_ns, start_ns, end_ns)[0] for x in inner_ns)
        return EdgeSampling(ea + eb + inner, wa + wb)

    def window(self, start_ns: int, end_ns: int, edge_slack_ns: int = 0, inner_ns: tuple[int, ...] = ()) -> WindowEnergy:
        """Energy, covered time and uncovered intervals of [start_ns, end_ns]; never pads what is not covered.
        ``edge_slack_ns``: how far an edge's true instant may be from its stamp; ``inner_ns``: instants inside the
        window where power changes too (an answer's first token); both only shape the edge terms (``EdgeSampling``)."""
        if end_ns < start_ns:
            raise ValueError(f"window end {end_ns} is before its start {start_ns}")
        with self.cond:
            n = self._count(end_ns, "right") - self._count(start_ns, "left") if self._size else 0
            if n <= 0:
                gaps = ((start_ns, end_ns),) if end_ns > start_ns else ()
                return WindowEnergy(start_ns, end_ns, 0.0, 0, 0, gaps)
            oldest = int(self._t[self._phys(0)])
            newest = int(self._t[self._phys(self._size - 1)])
            energy = self._cum_energy(end_ns) - self._cum_energy(start_ns)
            uncovered: list[tuple[int, int]] = []
            if start_ns < oldest:
                uncovered.append((start_ns, min(oldest, end_ns)))
            lo = max(bisect.bisect_left(self._gap_starts, start_ns) - 1, 0)
            for idx in range(lo, len(self._gaps)):
                a, b = self._gaps[idx]
                if a >= end_ns:
                    break
                a, b = max(a, start_ns), min(b, end_ns)
                if b > a:
                    uncovered.append((a, b))
            if end_ns > newest:
                uncovered.append((max(newest, start_ns), end_ns))
            uncovered_ns = sum(b - a for a, b in uncovered)
            covered = max(end_ns - start_ns - uncovered_ns, 0)
            return WindowEnergy(start_ns, end_ns, energy, covered, n, tuple(uncovered),
                                self._edges(start_ns, end_ns, int(edge_slack_ns), tuple(inner_ns)))

    def between(self, start_ns: int, end_ns: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples with start_ns <= t <= end_ns, thinned by an even stride to at most ``max_points`` (for plots)."""
        with self.cond:
            lo, hi = self._count(start_ns, "left"), self._count(end_ns, "right")
            if hi <= lo:
                return np.empty(0, np.int64), np.empty(0, np.float64)
            stride = max(1, -(-(hi - lo) // max_points))
            idx = (np.arange(lo, hi, stride) + self._total - self._size) % self.capacity
            return self._t[idx].copy(), self._p[idx].copy()

    def since(self, index: int, limit: int = 10_000) -> tuple[np.ndarray, np.ndarray, int]:
        """Samples appended at logical index >= ``index`` (at most ``limit``) and the index to ask from next time.
        Samples already evicted are skipped (the caller sees a jump in the index)."""
        with self.cond:
            first = max(index, self._total - self._size)
            last = min(self._total, first + limit)
            if last <= first:
                return np.empty(0, np.int64), np.empty(0, np.float64), max(index, first)
            idx = (np.arange(first, last) % self.capacity)
            return self._t[idx].copy(), self._p[idx].copy(), last

    def recent_rate_hz(self, span_ns: int = 10_000_000_000) -> float:
        """Measured sample rate over the newest ``span_ns`` of data."""
        with self.cond:
            if self._size < 2:
                return 0.0
            newest = int(self._t[self._phys(self._size - 1)])
            k = self._count(newest - span_ns, "left")
            first_t = int(self._t[self._phys(k)])
            n = self._size - 1 - k
            return n / ((newest - first_t) / 1e9) if newest > first_t else 0.0

    def nbytes(self) -> int:
        return self._t.nbytes + self._p.nbytes + self._e.nbytes + self._gap.nbytes


@dataclass(frozen=True)
class LogFile:
    """One raw log file and the sha256 of the bytes written to it so far (final once ``complete``)."""

    path: str
    bytes: int
    sha256: str
    complete: bool


class RawLog:
    """Rotating text log of every raw sample: ``t_ns,power_w`` lines, ``#`` lines for headers, gaps and marks.

    Files rotate at ``rotate_bytes``; a finished file gets a ``.sha256`` sidecar in ``sha256sum -c`` format.
    ``keep_files`` > 0 deletes the oldest finished files beyond that count (their hashes stay in ``files()``).
    """

    def __init__(self, directory: str | os.PathLike, header: dict[str, object], rotate_bytes: int = 64 << 20,
                 keep_files: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.header = dict(header)
        self.rotate_bytes = int(rotate_bytes)
        self.keep_files = int(keep_files)
        self._lock = threading.Lock()
        self._done: list[LogFile] = []
        self._seq = 0
        self._fh = None
        self._hash = hashlib.sha256()
        self._bytes = 0
        self._path = ""
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self._open_next()

    def _open_next(self) -> None:
        self._seq += 1
        path = self.directory / f"meter-{self._stamp}-{os.getpid()}-{self._seq:04d}.csv"
        self._fh = open(path, "wb")
        self._path = str(path)
        self._hash = hashlib.sha256()
        self._bytes = 0
        fields = " ".join(f"{k}={str(v).replace(' ', '_')}" for k, v in sorted(self.header.items()))
        self._write_raw(
            f"{LOG_MAGIC}\n# started_utc={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} part={self._seq}\n"
            f"# {fields}\n# columns=t_ns,power_w clock=CLOCK_MONOTONIC\n".encode()
        )
        log.info("raw sample log %s", path)

    def _write_raw(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._bytes += len(data)

    def write_samples(self, t_ns: np.ndarray, power_w: np.ndarray) -> None:
        """Append samples; after ``close()`` nothing is written (a folder sealed after its run stays sealed)."""
        if len(t_ns) == 0 or self._fh is None:
            return
        # One %-format over the whole batch: ~30% cheaper than a per-sample f-string at 1 kHz.
        pairs = tuple(itertools.chain.from_iterable(zip(t_ns.tolist(), power_w.tolist())))
        data = (("%d,%.7g\n" * len(t_ns)) % pairs).encode()
        with self._lock:
            if self._fh is None:
                return
            self._write_raw(data)
            self._fh.flush()
            if self._bytes >= self.rotate_bytes:
                self._rotate()

    def write_event(self, kind: str, t_ns: int, text: str = "") -> None:
        """A ``# <kind> <t_ns> <text>`` line; text is reduced to one line."""
        clean = " ".join(str(text).split())
        with self._lock:
            if self._fh is None:
                return
            self._write_raw(f"# {kind} {t_ns} {clean}\n".encode())
            self._fh.flush()

    def _finish_current(self) -> None:
        self._fh.close()
        digest = self._hash.hexdigest()
        Path(self._path + ".sha256").write_text(f"{digest}  {os.path.basename(self._path)}\n")
        self._done.append(LogFile(self._path, self._bytes, digest, True))
        log.info("closed raw log %s sha256=%s bytes=%d", self._path, digest, self._bytes)

    def _rotate(self) -> None:
        self._finish_current()
        if self.keep_files > 0:
            existing = [f for f in self._done if os.path.exists(f.path)]
            for old in existing[: max(len(existing) - self.keep_files + 1, 0)]:
                for p in (old.path, old.path + ".sha256"):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
                log.info("deleted old raw log %s (sha256 %s kept in the daemon's record)", old.path, old.sha256)
        self._open_next()

    def files(self) -> list[LogFile]:
        with self._lock:
            current = [] if self._fh is None else [LogFile(self._path, self._bytes, self._hash.hexdigest(), False)]
            return list(self._done) + current

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._finish_current()
                self._fh = None
