"""Play a recorded file back on the host's monotonic clock, as if the instrument were attached.

Formats (``format=auto`` looks at the first line):
  - ``joulescope``: the Joulescope UI statistics CSV, header ``#time,power,energy`` (seconds from the start of the
    recording, mean W over the reduction interval, cumulative J): the paper's 2 Hz files.
  - ``bench-log``: this daemon's own raw log (``t_ns,power_w`` lines, ``#`` headers; ``# gap`` lines replay as gaps).
  - ``csv``: two columns, seconds and watts, with an optional header line.
The first sample is placed at the host time of ``open()``; later ones keep their recorded spacing divided by
``speed``. ``describe()`` reports that origin so a test can compute where a recorded instant lands.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import Driver, Option, Uncertainty, register
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

FORMATS = ("auto", "joulescope", "bench-log", "csv")


def load_recording(path: str, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """-> (offset_ns from the first sample, power_w, gap_before flags, detected format)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise MeterError(f"replay: cannot read {path}: {exc.strerror}") from None
    first = next((ln for ln in lines if ln.strip()), "")
    if fmt == "auto":
        if first.replace(" ", "").lower().startswith("#time,power"):
            fmt = "joulescope"
        elif first.startswith("# bench-meter raw log"):
            fmt = "bench-log"
        else:
            fmt = "csv"
    t: list[float] = []
    p: list[float] = []
    gaps: set[int] = set()
    bad = 0
    for ln in lines:
        ln = ln.strip()
        if not ln:
            continue
        if ln.startswith("#"):
            if fmt == "bench-log" and ln.startswith("# gap "):
                gaps.add(len(t))
            continue
        cols = ln.split(",")
        try:
            if fmt == "bench-log":
                t.append(float(int(cols[0])))
            else:
                t.append(float(cols[0]) * 1e9)
            p.append(float(cols[1]))
        except (ValueError, IndexError):
            bad += 1
            if len(t) > len(p):
                t.pop()
    if bad and fmt != "csv":
        log.warning("replay: %d unparsable lines in %s skipped", bad, path)
    if len(t) < 2:
        raise MeterError(f"replay: {path} holds {len(t)} samples in {fmt} format; need at least 2")
    t_arr = np.array(t)
    order_ok = np.all(np.diff(t_arr) > 0)
    if not order_ok:
        raise MeterError(f"replay: timestamps in {path} are not strictly increasing")
    flags = np.zeros(len(t), np.bool_)
    for i in gaps:
        if i < len(t):
            flags[i] = True
    return (t_arr - t_arr[0]).astype(np.int64), np.array(p), flags, fmt


@register("replay")
class ReplayDriver(Driver):
    OPTIONS = {
        "path": Option(str, "", "the recording to play"),
        "format": Option(str, "auto", f"one of {', '.join(FORMATS)}"),
        "speed": Option(float, 1.0, "playback speed (2.0 plays twice as fast)"),
        "loop": Option(bool, False, "start over at the end (else go quiet)"),
        "batch_s": Option(float, 0.25, "how often samples are handed over (fewer wake-ups, less CPU)"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        if self.opts["format"] not in FORMATS:
            raise MeterError(f"replay: format {self.opts['format']!r} is not one of {', '.join(FORMATS)}")
        if not self.opts["speed"] > 0:
            raise MeterError(f"replay: speed must be positive, got {self.opts['speed']}")
        self._offsets: np.ndarray | None = None
        self._power = np.empty(0)
        self._gaps = np.empty(0, np.bool_)
        self._fmt = ""
        self._origin_ns = 0
        self._i = 0
        self._lap = 0
        self.finished = False

    @property
    def nominal_rate_hz(self) -> float:
        if self._offsets is None:
            self._load()
        span_s = self._offsets[-1] / 1e9 / self.opts["speed"]
        return (len(self._offsets) - 1) / span_s if span_s > 0 else 1.0

    def _load(self) -> None:
        self._offsets, self._power, self._gaps, self._fmt = load_recording(self.opts["path"], self.opts["format"])

    def device_id(self) -> str:
        return f"replay:{os.path.basename(self.opts['path'])}"

    def uncertainty(self) -> Uncertainty:
        return Uncertainty(0.0, 0.0, 0.0, "replay: unknown (a recording does not carry its instrument's accuracy); "
                                          "stamps keep the recorded spacing exactly")

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts.update(origin_ns=self._origin_ns, format=self._fmt, samples_in_file=int(len(self._power)))
        return facts

    def open(self) -> None:
        if self._offsets is None:
            self._load()
        if not self._origin_ns:
            self._origin_ns = time.monotonic_ns()
            log.info("replay %s (%s, %d samples) from origin_ns=%d at %gx", self.opts["path"], self._fmt,
                     len(self._power), self._origin_ns, self.opts["speed"])

    def close(self) -> None:
        pass

    def read(self) -> SampleBatch:
        assert self._offsets is not None
        time.sleep(self.opts["batch_s"])
        if self.finished:
            return SampleBatch.empty()
        speed = self.opts["speed"]
        lap_ns = int(self._offsets[-1] / speed) + int(np.median(np.diff(self._offsets)) / speed)
        now = time.monotonic_ns()
        t_out: list[np.ndarray] = []
        p_out: list[np.ndarray] = []
        gap_first = False
        while True:
            base = self._origin_ns + self._lap * lap_ns
            due = base + (self._offsets / speed).astype(np.int64)
            j = int(np.searchsorted(due, now, side="right"))
            if j > self._i:
                if self._gaps[self._i:j].any():
                    if not t_out and self._gaps[self._i]:
                        gap_first = True
                t_out.append(due[self._i:j])
                p_out.append(self._power[self._i:j])
                self._i = j
            if self._i < len(due):
                break
            if not self.opts["loop"]:
                self.finished = True
                log.info("replay: end of %s", self.opts["path"])
                break
            self._lap += 1
            self._i = 0
        if not t_out:
            return SampleBatch.empty()
        return SampleBatch(np.concatenate(t_out), np.concatenate(p_out), gap_before=gap_first)
