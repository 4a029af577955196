"""A bench instrument (power analyser, SMU, DC load) answering a configurable SCPI query over serial.

The driver writes ``query`` + terminator at ``rate_hz`` and reads one reply line. A reply with one number is
watts; with two numbers (e.g. ``MEAS:VOLT?;:MEAS:CURR?`` answers ``5.1;0.62``) it is volts and amps and the power
is their product. ``scale`` converts the instrument's unit. ``*IDN?`` at open gives the device id. The reply is
stamped at the midpoint between request and reply, since the instrument's own clock is not exposed.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from bench.meter.drivers.base import DeviceGone, Option, register
from bench.meter.drivers.serialport import SerialDriver, open_port
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_reply(reply: bytes) -> float:
    """``b"5.1;0.62"`` -> 3.162, ``b"+3.2E+00"`` -> 3.2; ValueError for anything else."""
    text = reply.strip()
    parts = [p.strip() for p in re.split(rb"[;,]", text) if p.strip()]
    if not parts or len(parts) > 2 or not all(NUMBER.fullmatch(p) for p in parts):
        raise ValueError(f"reply {reply[:60]!r} is not one or two numbers")
    values = [float(p) for p in parts]
    return values[0] if len(values) == 1 else values[0] * values[1]


@register("scpi")
class ScpiDriver(SerialDriver):
    OPTIONS = {
        "port": Option(str, "", "serial device or pyserial URL"),
        "baudrate": Option(int, 115200, "serial baud rate"),
        "query": Option(str, "MEAS:POW?", "the query whose reply is watts (or volts;amps)"),
        "idn": Option(str, "*IDN?", "identification query ('' to skip)"),
        "terminator": Option(str, "\\n", "line terminator, escapes allowed: \\n, \\r\\n"),
        "rate_hz": Option(float, 10.0, "queries per second"),
        "scale": Option(float, 1.0, "multiplier from the reply's unit to watts"),
        "timeout_s": Option(float, 1.0, "how long to wait for one reply"),
        "max_failures": Option(int, 5, "consecutive failed queries before the instrument counts as gone"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self._term = self.opts["terminator"].encode().decode("unicode_escape").encode("latin-1")
        self._port = None
        self._buf = b""
        self._next = 0.0
        self._failures = 0
        self.idn = ""

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.opts["rate_hz"])

    def device_id(self) -> str:
        return self.idn or f"scpi@{self.opts['port']}"

    def calibration(self) -> dict[str, Any]:
        return {"scale": self.opts["scale"], "query": self.opts["query"]}

    def open(self) -> None:
        self.close()
        self._port = open_port(self.opts["port"], self.opts["baudrate"], timeout_s=min(self.opts["timeout_s"], 0.2))
        self._port.reset_input_buffer()
        self._buf = b""
        self._failures = 0
        if self.opts["idn"]:
            _, reply = self.ask(self.opts["idn"])
            if reply is None:
                raise DeviceGone(f"scpi on {self.opts['port']}: no reply to {self.opts['idn']!r}")
            self.idn = reply.decode("ascii", "replace").strip()[:120]
            log.info("scpi on %s: %s", self.opts["port"], self.idn)
        self._next = time.monotonic()

    def ask(self, query: str) -> tuple[int, bytes | None]:
        """Send one query, read until the terminator: (host ns at the midpoint, reply or None on timeout)."""
        assert self._port is not None
        t0 = time.monotonic_ns()
        self._port.write(query.encode("ascii") + self._term)
        deadline = time.monotonic() + self.opts["timeout_s"]
        end = self._term[-1:]
        while end not in self._buf:
            if time.monotonic() > deadline:
                self._buf = b""
                return t0, None
            waiting = self._port.in_waiting
            self._buf += self._port.read(waiting or 1)
            if len(self._buf) > 4096:
                self._buf = self._buf[-256:]
                self.garbage += 1
        t1 = time.monotonic_ns()
        line, _, self._buf = self._buf.partition(end)
        return (t0 + t1) // 2, line.rstrip(b"\r")

    def read(self) -> SampleBatch:
        if self._port is None:
            raise DeviceGone("scpi: read() on a closed port")
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1.0 / self.opts["rate_hz"], time.monotonic())
        t_ns, reply = self.ask(self.opts["query"])
        try:
            if reply is None:
                raise ValueError("timeout")
            watts = parse_reply(reply) * self.opts["scale"]
        except ValueError as exc:
            self._failures += 1
            if reply is not None:
                self.garbage += 1
            self._buf = b""
            log.debug("scpi: %s", exc)
            if self._failures >= self.opts["max_failures"]:
                raise DeviceGone(f"scpi on {self.opts['port']}: {self._failures} queries without a valid reply") from None
            return SampleBatch.empty()
        self._failures = 0
        return SampleBatch.of([t_ns], [watts])
