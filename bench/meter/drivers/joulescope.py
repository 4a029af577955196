"""A Joulescope (JS110/JS220) through the vendor's ``joulescope`` Python package, imported only when used.

The paper metered its Pi with a JS110 in series with the supply. This driver registers a statistics callback
(the on-instrument reduction, default 50 Hz here where the paper's UI logged 2 Hz): each callback carries the mean
power over one reduction interval, stamped on the host clock at the interval's midpoint (arrival minus half an
interval). Without the package, ``available()`` says so and ``open()`` fails with the install hint.
"""

from __future__ import annotations

import importlib
import logging
import queue
import time
from typing import Any

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Driver, Option, register
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

INSTALL_HINT = "the joulescope driver needs the vendor package: pip install joulescope"


def _module() -> Any:
    try:
        return importlib.import_module("joulescope")
    except ImportError:
        raise MeterError(INSTALL_HINT) from None


@register("joulescope")
class JoulescopeDriver(Driver):
    OPTIONS = {
        "serial": Option(str, "", "device serial number (default: the only one attached)"),
        "reduction_hz": Option(int, 50, "statistics rate: 1..100 Hz"),
        "silence_s": Option(float, 3.0, "no statistics for this long means the device is gone"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self._device = None
        self._queue: queue.Queue[tuple[int, float]] = queue.Queue(maxsize=100_000)
        self._last_ns = 0
        self._serial = ""

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
        return f"joulescope-{self._serial}" if self._serial else "joulescope"

    def open(self) -> None:
        js = _module()
        self.close()
        devices = js.scan(config="auto")
        if self.opts["serial"]:
            devices = [d for d in devices if self.opts["serial"] in str(d)]
        if len(devices) != 1:
            raise DeviceGone(f"joulescope: expected one matching device, found {len(devices)}")
        device = devices[0]
        device.open()
        try:
            device.parameter_set("reduction_frequency", f"{self.opts['reduction_hz']} Hz")
        except Exception as exc:  # noqa: BLE001 - older firmware: keep its default rate, say so
            log.warning("joulescope: could not set reduction_frequency: %s", exc)
        device.statistics_callback_register(self._on_statistics, "sensor")
        self._device = device
        self._serial = str(device).split(":")[-1]
        self._last_ns = time.monotonic_ns()
        log.info("joulescope %s open, statistics at %d Hz", device, self.opts["reduction_hz"])

    def _on_statistics(self, stats: dict[str, Any]) -> None:
        """Vendor thread: stamp at the interval midpoint and queue; never block it."""
        now = time.monotonic_ns()
        try:
            watts = float(stats["signals"]["power"]["µ"]["value"])
        except (KeyError, TypeError, ValueError):
            self.garbage += 1
            return
        try:
            self._queue.put_nowait((now - int(5e8 / self.opts["reduction_hz"]), watts))
        except queue.Full:
            self.lost += 1

    def read(self) -> SampleBatch:
        if self._device is None:
            raise DeviceGone("joulescope: read() before open()")
        items = []
        try:
            items.append(self._queue.get(timeout=0.25))
            while True:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        now = time.monotonic_ns()
        if items:
            self._last_ns = now
        elif (now - self._last_ns) / 1e9 > self.opts["silence_s"]:
            raise DeviceGone(f"joulescope: no statistics for {self.opts['silence_s']:g} s")
        return SampleBatch.of([t for t, _ in items], [w for _, w in items])

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
