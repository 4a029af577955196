"""A Joulescope (JS110/JS220) through the vendor's ``joulescope`` package (v1 API), imported only when used.

The paper metered its Pi with a JS110. Facts from the vendor's sources (joulescope 1.5.0, pyjoulescope_driver 2.2.12):
- ``reduction_frequency`` accepts only 1, 2, 5, 10, 20, 50, 100 Hz (parameters_v1.py); anything else fails.
- A JS110 computes statistics on the instrument at a fixed 2 Hz (``s/sstats/value``); any other rate, and
  ``scan(config="auto")``, means host-side statistics: the instrument streams 2 Msps into the host, a whole Pi 4
  core. So this driver opens with ``config="off"``, sets the current/voltage ranges itself, and on a JS110 takes the
  2 Hz on-instrument statistics only. A JS220 computes them on the instrument at the chosen rate.
- Each statistics record carries the device sample counter of its interval (``time.samples``, [start, end] at
  ``time.sample_freq``; the JS110's wraps at 32 bits) and the instrument's energy accumulator
  (``accumulators.energy``). The counter, unwrapped, goes through the same drift-correcting clock map as the INA
  bridge (arrival on the host is the anchor), so USB latency and its jitter do not move the stamps; each sample's
  power is the accumulator's energy over the span since the previous record divided by that span (a lost record
  loses no energy), stamped at the span's middle.
"""

from __future__ import annotations

import importlib
import logging
import queue
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Driver, Option, Uncertainty, register
from bench.meter.drivers.clock import ClockMap, Unwrapper
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

INSTALL_HINT = "the joulescope driver needs the vendor package: pip install joulescope"
REDUCTION_HZ = (1, 2, 5, 10, 20, 50, 100)
JS110_ON_INSTRUMENT_HZ = 2


def _module() -> Any:
    try:
        return importlib.import_module("joulescope")
    except ImportError:
        raise MeterError(INSTALL_HINT) from None


@dataclass(frozen=True)
class Statistics:
    """One statistics record as the driver needs it: the device-sample span, its rate, mean power, the energy
    accumulator, and when it reached the host."""

    start: int
    end: int
    sample_freq: float
    mean_w: float
    energy_j: float
    arrival_ns: int


@register("joulescope")
class JoulescopeDriver(Driver):
    NOTE = "JS110: on-instrument statistics at 2 Hz (stamps from the device counter); JS220: up to 100 Hz"
    OPTIONS = {
        "serial": Option(str, "", "device serial number (default: the only one attached)"),
        "reduction_hz": Option(int, JS110_ON_INSTRUMENT_HZ, f"statistics rate, one of {REDUCTION_HZ} Hz; a JS110 "
                                                            "only computes them on the instrument at 2 Hz"),
        "silence_s": Option(float, 3.0, "no statistics for this long means the device is gone"),
        "accuracy_rel": Option(float, 0.0, "gain error, fraction (from the instrument's specification)"),
        "accuracy_abs_w": Option(float, 0.0, "offset error, W (from the instrument's specification)"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        if self.opts["reduction_hz"] not in REDUCTION_HZ:
            raise MeterError(f"driver 'joulescope': option reduction_hz={self.opts['reduction_hz']}: the instrument "
                             f"accepts only {', '.join(map(str, REDUCTION_HZ))} Hz")
        self._device = None
        self._queue: queue.Queue[Statistics] = queue.Queue(maxsize=100_000)
        self._clock = ClockMap()
        self._counter = Unwrapper(32)
        self._prev: tuple[int, float] | None = None  # (unwrapped end sample, accumulator J) of the last record
        self._last_ns = 0
        self.model = ""
        self._serial = ""
        self.sample_freq = 0.0

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            importlib.import_module("joulescope")
        except ImportError:
            return False, INSTALL_HINT
        return True, "ok"

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.opts["reduction_hz"])

    def device_id(self) -> str:
        return f"joulescope-{self.model}-{self._serial}" if self._serial else "joulescope"

    def calibration(self) -> dict[str, Any]:
        return {"model": self.model, "statistics": "on-instrument", "reduction_hz": self.opts["reduction_hz"],
                "clock_drift_ppm": round(self._clock.drift_ppm, 2), "clock_anchors": self._clock.anchors}

    def uncertainty(self) -> Uncertainty:
        given = self.opts["accuracy_rel"] or self.opts["accuracy_abs_w"]
        return Uncertainty(
            power_rel=self.opts["accuracy_rel"], power_abs_w=self.opts["accuracy_abs_w"], time_s=0.007,
            source=("accuracy: " + ("the accuracy_rel/accuracy_abs_w options" if given else
                                   "not known (set accuracy_rel/accuracy_abs_w from the instrument's specification)")
                    + "; stamp: device sample counter through the clock map, late by at most the least USB "
                      "delivery delay (3-7 ms, issue 14)"))

    def open(self) -> None:
        js = _module()
        self.close()
        devices = js.scan(config="off")  # "auto" would start host-side statistics on a JS110
        if self.opts["serial"]:
            devices = [d for d in devices if self.opts["serial"] in str(d)]
        if len(devices) != 1:
            raise DeviceGone(f"joulescope: expected one matching device, found {len(devices)}")
        device = devices[0]
        device.open()
        self._device = device
        self.model = device.model.lower()
        self._serial = device.serial_number
        self._configure(device)
        self._clock.reset()
        self._counter.reset()
        self._prev = None
        device.statistics_callback_register(self._on_statistics, "sensor")
        self._last_ns = time.monotonic_ns()
        log.info("joulescope %s open: on-instrument statistics at %d Hz", device, self.opts["reduction_hz"])

    def _configure(self, device: Any) -> None:
        hz = self.opts["reduction_hz"]
        if self.model == "js110" and hz != JS110_ON_INSTRUMENT_HZ:
            raise MeterError(f"joulescope JS110: reduction_hz={hz} needs host-side statistics (the instrument streams "
                             f"2 Msps into this host); its on-instrument statistics run at 2 Hz: use reduction_hz=2")
        try:
            device.parameter_set("i_range", "auto")
            device.parameter_set("v_range", "15V")
            if self.model != "js110":
                device.parameter_set("reduction_frequency", f"{hz} Hz")
        except Exception as exc:  # noqa: BLE001 - the vendor raises RuntimeError/KeyError/ValueError
            raise MeterError(f"joulescope {self.model}: configuring the statistics at {hz} Hz failed: {exc}") from None

    def _on_statistics(self, stats: dict[str, Any]) -> None:
        """Vendor thread: take what is needed and queue it; never block it."""
        now = time.monotonic_ns()
        try:
            start, end = stats["time"]["samples"]["value"]
            record = Statistics(int(start), int(end), float(stats["time"]["sample_freq"]["value"]),
                                float(stats["signals"]["power"]["avg"]["value"]),
                                float(stats["accumulators"]["energy"]["value"]), now)
        except (KeyError, TypeError, ValueError):
            self.garbage += 1
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.lost += 1

    def read(self) -> SampleBatch:
        if self._device is None:
            raise DeviceGone("joulescope: read() before open()")
        records = []
        try:
            records.append(self._queue.get(timeout=0.25))
            while True:
                records.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        now = time.monotonic_ns()
        if not records:
            if (now - self._last_ns) / 1e9 > self.opts["silence_s"]:
                raise DeviceGone(f"joulescope: no statistics for {self.opts['silence_s']:g} s")
            return SampleBatch.empty()
        self._last_ns = now
        return self._samples(records)

    def _samples(self, records: list[Statistics]) -> SampleBatch:
        """Records -> samples: one per record, the accumulator's energy since the previous record over the device
        time between the two (a crystal tens of ppm off changes that by tens of ppm), stamped at the span's middle
        through the clock map."""
        self.sample_freq = records[-1].sample_freq
        us_per_sample = 1e6 / self.sample_freq
        ends = self._counter.extend(np.array([r.end for r in records], np.int64)).tolist()
        mids, watts = [], []
        for r, end in zip(records, ends):
            self._clock.add_anchor(int(end * us_per_sample), r.arrival_ns)  # its end had happened by its arrival
            if self._prev is None:
                start, mean = end - (r.end - r.start), r.mean_w  # the accumulator starts at this record
            else:
                start, mean = self._prev[0], (r.energy_j - self._prev[1]) * r.sample_freq / (end - self._prev[0])
            self._prev = (end, r.energy_j)
            mids.append((start + end) / 2 * us_per_sample)
            watts.append(mean)
        return SampleBatch.of(self._clock.to_host_ns(np.asarray(mids)), watts)

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.statistics_callback_unregister(self._on_statistics, "sensor")
            except Exception:  # noqa: BLE001 - closing a device that is gone
                pass
            try:
                self._device.close()
            except Exception:  # noqa: BLE001
                pass
        self._device = None
