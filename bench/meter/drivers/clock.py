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

WRAP_32 = 1 << 32


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


class ClockMap:
    """Device microseconds -> host monotonic ns, refit at every anchor."""

    def __init__(self, window: int = 512, min_span_s: float = 1.0) -> None:
        self.window = window
        self.min_span_us = min_span_s * 1e6
        self._dev: deque[float] = deque(maxlen=window)
        self._host: deque[float] = deque(maxlen=window)
        self._dev0: float | None = None
        self._host0: float | None = None
        self.slope = 1.0  # host ns per device ns
        self._offset = 0.0  # host ns (relative to _host0) at device time _dev0

    def reset(self) -> None:
        self._dev.clear()
        self._host.clear()
        self._dev0 = self._host0 = None
        self.slope = 1.0
        self._offset = 0.0

    @property
    def anchors(self) -> int:
        return len(self._dev)

    @property
    def drift_ppm(self) -> float:
        return (self.slope - 1.0) * 1e6

    def add_anchor(self, device_us: int, host_ns: int) -> None:
        if self._dev0 is None:
            self._dev0, self._host0 = float(device_us), float(host_ns)
        self._dev.append((device_us - self._dev0) * 1e3)  # device ns since the first anchor
        self._host.append(host_ns - self._host0)
        x = np.fromiter(self._dev, float, len(self._dev))
        y = np.fromiter(self._host, float, len(self._host))
        if x[-1] - x[0] >= self.min_span_us * 1e3 and len(x) >= 8:
            xm, ym = x.mean(), y.mean()
            sxx = float(((x - xm) ** 2).sum())
            if sxx > 0:
                slope = float(((x - xm) * (y - ym)).sum()) / sxx
                if abs(slope - 1.0) < 0.01:  # a crystal is never 1% off; anything else is a glitch
                    self.slope = slope
        self._offset = float((y - self.slope * x).min())

    def to_host_ns(self, device_us: np.ndarray) -> np.ndarray:
        if self._dev0 is None:
            raise ValueError("clock map has no anchor yet")
        x = (np.asarray(device_us, np.float64) - self._dev0) * 1e3
        return (self._host0 + self._offset + self.slope * x).astype(np.int64)
