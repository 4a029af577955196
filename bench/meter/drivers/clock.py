"""Mapping a device's own clock onto the host's CLOCK_MONOTONIC, with drift correction.

A microcontroller stamps each sample with its ``micros()`` counter: precise spacing, but a crystal that runs a few
hundred ppm off and wraps every 71.6 minutes. The host knows, for every chunk it reads, that the newest sample in it
was taken no later than the moment the chunk arrived. So each chunk gives one anchor (device time, host arrival time)
whose arrival lags the true instant by a non-negative transport delay.

The map is ``host = offset + slope * device``: the slope is a least-squares fit over the recent anchors (it absorbs
crystal drift), and the offset is the lower envelope of the residuals (the anchors with the least transport delay),
so queueing jitter does not push samples late.
"""

from __future__ import annotations

from collections import deque

import numpy as np

BACK_SLEW = 0.5


class Unwrapper:
    """Extends a wrapping unsigned counter (``bits`` wide) to a growing integer; the first value maps to itself."""

    def __init__(self, bits: int = 32) -> None:
        self.modulus = 1 << bits
        self._last_raw: int | None = None
        self._last_ext = 0

    def reset(self) -> None:
        self._last_raw = None
        self._last_ext = 0

    def steps(self, raw: np.ndarray) -> np.ndarray:
        """Forward distance from each value to the next (the first from the previous call's last value)."""
        raw = np.asarray(raw, np.int64)
        prev = int(raw[0]) if self._last_raw is None else self._last_raw
        return np.diff(np.concatenate(([prev], raw))) % self.modulus

    def extend(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, np.int64)
        if raw.size == 0:
            return raw
        if self._last_raw is None:
            self._last_raw = self._last_ext = int(raw[0])
        out = self._last_ext + np.cumsum(self.steps(raw))
        self._last_raw, self._last_ext = int(raw[-1]), int(out[-1])
        return out


def _fit_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    return float(((x - xm) * (y - ym)).sum()) / sxx if sxx > 0 else None


class ClockMap:
    """Device microseconds -> host monotonic ns, continuous and strictly increasing; the offset is refit whenever an
    anchor bucket closes, the slope every ``refit_every`` buckets (drift changes slowly; the fit is the costly part).

    The fitted line (least-squares slope, lower-envelope offset) is the *target*; the mapping handed out follows
    it like a disciplined clock: each batch continues from where the previous one ended, and the difference to the
    target is slewed away at most ``max_slew`` (fraction of elapsed time), so refits never make time jump back.
    A lag beyond ``step_ns`` (a stall) is stepped at once; a lead beyond it (the first anchors arrived late, fresher
    ones show it) is slewed away at up to ``BACK_SLEW``, so stamps stay increasing and no sample is dropped.
    """

    def __init__(self, window: int = 512, bucket_s: float = 0.25, min_span_s: float = 5.0, max_slew: float = 0.02,
                 step_ns: float = 50e6, offset_buckets: int = 32, refit_every: int = 8) -> None:
        self.window = window
        self.bucket_ns = bucket_s * 1e9
        self.min_span_ns = min_span_s * 1e9
        self.max_slew = max_slew
        self.step_ns = step_ns
        self.offset_buckets = offset_buckets
        self.refit_every = refit_every  # buckets between slope fits: a crystal's drift changes over minutes
        self._closed = 0
        self._dev: deque[float] = deque(maxlen=window)  # one anchor per bucket: the one with the least delay
        self._host: deque[float] = deque(maxlen=window)
        self._bucket: tuple[int, float, float] | None = None  # (bucket number, device ns, host ns) best so far
        self._dev0: float | None = None
        self._host0: float | None = None
        self.slope = 1.0  # host ns per device ns
        self._offset = 0.0  # target: host ns (relative to _host0) at device time _dev0
        self._last: tuple[float, float] | None = None  # (device ns, host ns) of the last mapped sample, relative
        self.steps = 0
        self.n_anchors = 0

    def reset(self) -> None:
        self._dev.clear()
        self._host.clear()
        self._bucket = None
        self._dev0 = self._host0 = None
        self.slope = 1.0
        self._offset = 0.0
        self._last = None
        self._closed = 0

    @property
    def anchors(self) -> int:
        return self.n_anchors

    @property
    def drift_ppm(self) -> float:
        return (self.slope - 1.0) * 1e6

    def add_anchor(self, device_us: int, host_ns: int) -> None:
        """The sample at ``device_us`` had arrived by ``host_ns``."""
        if self._dev0 is None:
            self._dev0, self._host0 = float(device_us), float(host_ns)
        self.n_anchors += 1
        x1, y1 = (device_us - self._dev0) * 1e3, host_ns - self._host0
        k = int(x1 // self.bucket_ns)
        closed = self._bucket is not None and self._bucket[0] != k
        if closed:
            self._dev.append(self._bucket[1])
            self._host.append(self._bucket[2])
            self._bucket = None
        if self._bucket is None or y1 - self.slope * x1 < self._bucket[2] - self.slope * self._bucket[1]:
            self._bucket = (k, x1, y1)
        elif not closed and self._last is not None:
            return  # nothing changed: the fit stays (keeps the per-chunk cost near zero)
        self._closed += closed
        if (closed and self._closed % self.refit_every == 0 and len(self._dev) >= 3
                and self._dev[-1] - self._dev[0] >= self.min_span_ns):
            x = np.fromiter(self._dev, float, len(self._dev))
            y = np.fromiter(self._host, float, len(self._host))
            slope = _fit_slope(x, y)
            if slope is not None and abs(slope - 1.0) < 0.01:  # a crystal is never 1% off: anything else is a glitch
                self.slope = slope
        n = min(self.offset_buckets, len(self._dev))
        xs = [self._dev[-i] for i in range(1, n + 1)] + [self._bucket[1]]
        ys = [self._host[-i] for i in range(1, n + 1)] + [self._bucket[2]]
        self._offset = min(yv - self.slope * xv for xv, yv in zip(xs, ys))

    def to_host_ns(self, device_us: np.ndarray) -> np.ndarray:
        """Map one time-ordered batch (call once per batch, in order)."""
        if self._dev0 is None:
            raise ValueError("clock map has no anchor yet")
        x = (np.asarray(device_us, np.float64) - self._dev0) * 1e3
        target = self._offset + self.slope * x
        if self._last is None:
            y = target
        else:
            x0, y0 = self._last
            span = x[-1] - x0
            predicted_end = y0 + self.slope * span
            err = target[-1] - predicted_end
            if err > self.step_ns or span <= 0:  # a stall: jump forward
                self.steps += 1
                y = target
            else:  # never back: a large lead (the first anchors came late) is slewed away at up to half speed
                limit = (self.max_slew if err >= -self.step_ns else BACK_SLEW) * span
                rate = self.slope + min(max(err, -limit), limit) / span
                y = y0 + rate * (x - x0)
        self._last = (float(x[-1]), float(y[-1]))
        return (self._host0 + y).astype(np.int64)
