"""Seeded synthetic power waveforms, for demos and tests where no instrument is attached.

Samples sit on an exact grid ``origin_ns + k / rate_hz`` (the origin is the host monotonic time at ``open()``, and
``describe()`` reports it) so analytic integrals can be checked. The ``cpu`` mode makes power follow the host's CPU
utilisation from /proc/stat between ``idle_w`` and ``load_w``, so energy tracks the real work the demo does.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import Driver, Option, Uncertainty, register
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

MODES = ("constant", "square", "sine", "schedule", "cpu", "busy")
# busy mode: load_w between a client's "answer-begin ..." and "answer-end ..." marks, idle_w otherwise.
BUSY_BEGIN, BUSY_END = "answer-begin", "answer-end"


def parse_schedule(text: str) -> list[tuple[float, float]]:
    """``"2:3.0,1.5:6.5"`` -> [(2.0, 3.0), (1.5, 6.5)]: (duration_s, watts) steps."""
    steps = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            d, w = part.split(":")
            step = (float(d), float(w))
        except ValueError:
            raise MeterError(f"sim schedule step {part!r}: expected duration_s:watts, e.g. 2:3.5") from None
        if not step[0] > 0 or not math.isfinite(step[1]):
            raise MeterError(f"sim schedule step {part!r}: duration must be > 0 and watts finite")
        steps.append(step)
    if not steps:
        raise MeterError("sim schedule is empty: give steps as duration_s:watts,duration_s:watts")
    return steps


def read_proc_stat() -> tuple[int, int]:
    """(busy, total) jiffies of the aggregate ``cpu`` line of /proc/stat."""
    with open("/proc/stat", "rb") as fh:
        fields = fh.readline().split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values)
    return total - idle, total


@register("sim")
class SimDriver(Driver):
    OPTIONS = {
        "mode": Option(str, "constant", f"one of {', '.join(MODES)}"),
        "rate_hz": Option(float, 1000.0, "samples per second"),
        "seed": Option(int, 0, "seed of the noise generator"),
        "noise_w": Option(float, 0.0, "standard deviation of Gaussian noise added to every sample (W)"),
        "idle_w": Option(float, 2.85, "idle power (W); the paper's Pi 4 idle mean"),
        "load_w": Option(float, 6.5, "full-load power (W)"),
        "watts": Option(float, None, "constant mode: the power (default idle_w)"),
        "period_s": Option(float, 1.0, "square/sine period"),
        "duty": Option(float, 0.5, "square: fraction of the period at load_w"),
        "schedule": Option(str, "", "schedule mode: duration_s:watts steps, comma-separated"),
        "repeat": Option(bool, False, "schedule mode: loop the schedule (else hold the last step)"),
        "batch_s": Option(float, 0.5, "how often samples are handed to the daemon (fewer wake-ups, less CPU); an "
                                      "energy query waits up to this long for the samples covering its end"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        o = self.opts
        if o["mode"] not in MODES:
            raise MeterError(f"sim: mode {o['mode']!r} is not one of {', '.join(MODES)}")
        if not 0 < o["rate_hz"] <= 1e6:
            raise MeterError(f"sim: rate_hz must be in (0, 1e6], got {o['rate_hz']}")
        if not 0.001 <= o["batch_s"] <= 1.0:
            raise MeterError(f"sim: batch_s must be in [0.001, 1], got {o['batch_s']}")
        self._steps = parse_schedule(o["schedule"]) if o["mode"] == "schedule" else []
        self._origin_ns = 0
        self._k = 0
        self._rng = np.random.default_rng(o["seed"])
        self._cpu_prev: tuple[int, int] | None = None
        self._util = 0.0
        self._busy: list[list[int | None]] = []  # [begin_ns, end_ns or None while open], in mark order
        self._busy_lock = threading.Lock()
        self._open = False

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.opts["rate_hz"])

    def device_id(self) -> str:
        return f"sim-{self.opts['mode']}-seed{self.opts['seed']}"

    def uncertainty(self) -> Uncertainty:
        return Uncertainty(0.0, 0.0, 0.0, "simulated waveform: samples are exact on their grid by construction")

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts["origin_ns"] = self._origin_ns
        return facts

    def open(self) -> None:
        if not self._open:
            self._open = True
            if self._origin_ns == 0:
                self._origin_ns = time.monotonic_ns()
                self._k = 0
            if self.opts["mode"] == "cpu":
                self._cpu_prev = read_proc_stat()
            log.info("sim %s waveform from origin_ns=%d at %.0f Hz", self.opts["mode"], self._origin_ns, self.nominal_rate_hz)

    def close(self) -> None:
        self._open = False

    def on_mark(self, t_ns: int, label: str) -> None:
        """busy mode: an answer's begin/end marks switch the waveform between idle_w and load_w."""
        kind = label.split(" ", 1)[0]
        with self._busy_lock:
            if kind == BUSY_BEGIN:
                self._busy.append([t_ns, None])
            elif kind == BUSY_END and self._busy and self._busy[-1][1] is None:
                self._busy[-1][1] = t_ns
            del self._busy[:-64]  # only recent intervals can still fall in a batch not yet generated

    def _busy_mask(self, t_ns: np.ndarray) -> np.ndarray:
        mask = np.zeros(t_ns.shape, dtype=bool)
        with self._busy_lock:
            intervals = [(b, e) for b, e in self._busy]
        for begin, end in intervals:
            mask |= (t_ns >= begin) & ((t_ns < end) if end is not None else True)
        return mask

    def power_at(self, t_s: np.ndarray) -> np.ndarray:
        """The noiseless waveform at seconds since the origin (cpu mode: at the latest utilisation)."""
        o = self.opts
        mode = o["mode"]
        if mode == "constant":
            return np.full(t_s.shape, o["watts"] if o["watts"] is not None else o["idle_w"])
        if mode == "square":
            period_ns = int(round(o["period_s"] * 1e9))  # integer ns: no float jitter at the edges
            phase = (np.round(t_s * 1e9).astype(np.int64) % period_ns) / period_ns
            return np.where(phase < o["duty"], o["load_w"], o["idle_w"])
        if mode == "sine":
            mean, amp = (o["idle_w"] + o["load_w"]) / 2, (o["load_w"] - o["idle_w"]) / 2
            return mean + amp * np.sin(2 * np.pi * t_s / o["period_s"])
        if mode == "busy":
            busy = self._busy_mask(self._origin_ns + np.round(t_s * 1e9).astype(np.int64))
            return np.where(busy, o["load_w"], o["idle_w"])
        if mode == "schedule":
            ends = np.cumsum([d for d, _ in self._steps])
            watts = np.array([w for _, w in self._steps])
            x = np.mod(t_s, ends[-1]) if o["repeat"] else t_s
            idx = np.minimum(np.searchsorted(ends, x, side="right"), len(watts) - 1)
            return watts[idx]
        return np.full(t_s.shape, o["idle_w"] + (o["load_w"] - o["idle_w"]) * self._util)

    def read(self) -> SampleBatch:
        if not self._open:
            raise MeterError("sim: read() before open()")
        period_ns = 1e9 / self.opts["rate_hz"]
        # Sleep to the next batch boundary, then hand over every grid sample that is due.
        now = time.monotonic_ns()
        batch_ns = int(self.opts["batch_s"] * 1e9)
        wake = self._origin_ns + ((now - self._origin_ns) // batch_ns + 1) * batch_ns
        delay = (wake - now) / 1e9
        if delay > 0:
            time.sleep(min(delay, 1.0))
        now = time.monotonic_ns()
        k_end = int((now - self._origin_ns) / period_ns) + 1
        if k_end <= self._k:
            return SampleBatch.empty()
        ks = np.arange(self._k, k_end, dtype=np.int64)
        self._k = k_end
        t_ns = self._origin_ns + np.round(ks * period_ns).astype(np.int64)
        if self.opts["mode"] == "cpu":
            cur = read_proc_stat()
            if self._cpu_prev is not None and cur[1] > self._cpu_prev[1]:
                self._util = min(max((cur[0] - self._cpu_prev[0]) / (cur[1] - self._cpu_prev[1]), 0.0), 1.0)
            self._cpu_prev = cur
        power = self.power_at((t_ns - self._origin_ns) / 1e9)
        if self.opts["noise_w"] > 0:
            power = power + self._rng.normal(0.0, self.opts["noise_w"], size=power.shape)
        return SampleBatch(t_ns, power.astype(np.float64))
