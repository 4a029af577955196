"""A bench instrument (power analyser, SMU, DC supply or load) answering a SCPI query, over serial, a raw LAN socket
or PyVISA (scpi_transport.py).

At open: ``*IDN?`` (the device id, and the marker used to resynchronise), then the ``setup`` commands (``SYST:REM``,
ranges, integration time, a Yokogawa ``:NUM:NORM`` item list ...), then the error queue must be empty. Then
``query`` is sent at ``rate_hz`` and each reply read as the ``reply`` item list (scpi_reply.py). A reserved value
(SCPI infinity/NaN, a vendor sentinel) is an overload: counted and a gap. A reply that does not come within
``timeout_s`` may still come later and would then pair with the next query, a full period off: so after a timeout
the driver asks ``*IDN?`` and discards every line up to its answer (counted as ``late_replies``), and before each
query it drops input nobody is waiting for. A reply is stamped at the midpoint between query and reply, less half
the instrument's integration time.

Readings are handed to the daemon in batches of up to ``batch_s`` (a gap or a failure ends a batch early), because
on a small machine the daemon's per-batch work (ring buffer, raw log: a few cold numpy calls after every wake-up)
cost more than the query itself: at 10 Hz, one batch per query was 0.6% of a core, one per 0.5 s about half that
(tests/benchmarks/bench_drivers.py, cpu). A query and its reply stay pure Python.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Driver, Option, Uncertainty, register
from bench.meter.drivers.scpi_reply import Overload, ReplyFormat
from bench.meter.drivers.scpi_transport import SerialTransport, Transport, VisaTransport
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)


@register("scpi")
class ScpiDriver(Driver):
    OPTIONS = {
        "port": Option(str, "", "serial device or pyserial URL (socket://host:5025 is a raw LAN socket)"),
        "resource": Option(str, "", "a VISA resource instead of port, e.g. TCPIP0::10.0.0.5::inst0::INSTR, USB0::..."),
        "visa_library": Option(str, "@py", "PyVISA backend: @py (pyvisa-py), a VISA library path, or file.yaml@sim"),
        "baudrate": Option(int, 115200, "serial baud rate"),
        "query": Option(str, "MEAS:POW?", "the query whose reply holds the reading"),
        "reply": Option(str, "p", "the reply's items in order: p (W), v (V), i (A), - (ignored); e.g. v,i,p"),
        "sentinels": Option(str, "", "vendor values meaning 'no reading' besides SCPI's 9.9E37/9.91E37, "
                                     "comma-separated, or a preset: hioki"),
        "setup": Option(str, "", "commands sent at open, separated by |, e.g. SYST:REM|SENS:CURR:RANG 3"),
        "error_query": Option(str, "SYST:ERR?", "asked after setup; a reply not starting with 0 fails open ('' skips)"),
        "idn": Option(str, "*IDN?", "identification query, also the resynchronisation marker ('' to skip)"),
        "terminator": Option(str, "\\n", "line terminator, escapes allowed: \\n, \\r\\n"),
        "rate_hz": Option(float, 10.0, "queries per second (0 < rate_hz <= 100)"),
        "scale": Option(float, 1.0, "multiplier from the reply's unit to watts"),
        "timeout_s": Option(float, 1.0, "how long to wait for one reply"),
        "integration_s": Option(float, 0.0, "the instrument's averaging time per reading (from its setup)"),
        "max_failures": Option(int, 5, "consecutive failed queries before the instrument counts as gone"),
        "batch_s": Option(float, 0.5, "longest a reading waits before it is handed on (fewer daemon wake-ups, less "
                                      "CPU); an energy query waits up to this long for the samples covering its end"),
        "accuracy_rel": Option(float, 0.0, "gain error of a reading, fraction (from the instrument's manual)"),
        "accuracy_abs_w": Option(float, 0.0, "offset error of a reading, W (from the instrument's manual)"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        o = self.opts
        try:
            self.format = ReplyFormat.parse(o["reply"], o["sentinels"])
        except ValueError as exc:
            key = "sentinels" if "sentinel" in str(exc) else "reply"
            raise MeterError(f"driver 'scpi': option {key}={o[key]!r}: {exc}") from None
        if bool(o["port"]) == bool(o["resource"]):
            raise MeterError("driver 'scpi': give exactly one of the options port= (serial/socket) or resource= (VISA)")
        if not 0 < o["rate_hz"] <= 100:
            raise MeterError(f"driver 'scpi': option rate_hz={o['rate_hz']:g}: expected 0 < rate_hz <= 100")
        if not 0 <= o["batch_s"] <= 2:
            raise MeterError(f"driver 'scpi': option batch_s={o['batch_s']:g}: expected 0 <= batch_s <= 2")
        self._term = o["terminator"].encode().decode("unicode_escape")
        self._link: Transport | None = None
        self._next = 0.0
        self._failures = 0
        self._half_rtt_ns: deque[int] = deque(maxlen=200)
        self._gap_next = False  # the previous batch ended on a gap: the next one starts after it
        self._gone: DeviceGone | None = None  # raised by the next read, once the readings before it are handed on
        self.idn = ""
        self.overloads = 0
        self.late = 0
        self.timeouts = 0

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.opts["rate_hz"])

    def where(self) -> str:
        return self.opts["port"] or self.opts["resource"]

    def device_id(self) -> str:
        return self.idn or f"scpi@{self.where()}"

    def calibration(self) -> dict[str, Any]:
        return {"scale": self.opts["scale"], "query": self.opts["query"], "reply": ",".join(self.format.items)}

    def uncertainty(self) -> Uncertainty:
        half_rtt = float(np.percentile(self._half_rtt_ns, 95)) / 1e9 if self._half_rtt_ns else self.opts["timeout_s"] / 2
        given = self.opts["accuracy_rel"] or self.opts["accuracy_abs_w"]
        return Uncertainty(
            power_rel=self.opts["accuracy_rel"], power_abs_w=self.opts["accuracy_abs_w"],
            time_s=half_rtt + self.opts["integration_s"] / 2,
            source=("accuracy: " + ("the accuracy_rel/accuracy_abs_w options (instrument manual)" if given else
                                   "not known (set accuracy_rel/accuracy_abs_w from the instrument's manual)")
                    + "; stamp: p95 of half the query round trip + half the integration time"))

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "overloads": self.overloads, "late_replies": self.late, "timeouts": self.timeouts}

    def open(self) -> None:
        self.close()
        o = self.opts
        if o["resource"]:
            self._link = VisaTransport(o["resource"], o["visa_library"], self._term, o["baudrate"])
        else:
            self._link = SerialTransport(o["port"], o["baudrate"], self._term.encode("latin-1"))
        self._failures = 0
        self._gap_next, self._gone = False, None
        if o["idn"]:
            reply = self._ask(o["idn"])
            if reply is None:
                raise DeviceGone(f"scpi on {self.where()}: no reply to {o['idn']!r}")
            self.idn = reply.decode("ascii", "replace").strip()[:120]
            log.info("scpi on %s: %s", self.where(), self.idn)
        self._send_setup()
        self._next = time.monotonic()

    def _send_setup(self) -> None:
        commands = [c.strip() for c in self.opts["setup"].split("|") if c.strip()]
        for command in commands:
            self._link.write_line(command)
        if commands and self.opts["error_query"]:
            reply = self._ask(self.opts["error_query"])
            text = (reply or b"").decode("ascii", "replace").strip()
            if not text.lstrip("+").startswith("0"):
                raise MeterError(f"scpi on {self.where()}: setup {self.opts['setup']!r} left an error: "
                                 f"{text or 'no reply to ' + self.opts['error_query']}")

    def _ask(self, query: str) -> bytes | None:
        self._link.write_line(query)
        return self._link.read_line(self.opts["timeout_s"])

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
        self._link = None

    def read(self) -> SampleBatch:
        """Query at ``rate_hz`` until ``batch_s`` has passed or a reading fails; the readings so far, with a gap
        before the next batch when one failed (a failure with nothing pending is an empty batch with a gap)."""
        if self._link is None:
            raise DeviceGone("scpi: read() on a closed link")
        if self._gone is not None:
            gone, self._gone = self._gone, None
            raise gone
        gap, self._gap_next = self._gap_next, False
        t_ns: list[int] = []
        watts: list[float] = []
        deadline = time.monotonic() + self.opts["batch_s"]
        while True:
            try:
                reading = self._query()
            except DeviceGone as exc:
                if not t_ns:
                    raise
                self._gone = exc
                break
            if reading is None:
                if not t_ns:
                    return SampleBatch(np.empty(0, np.int64), np.empty(0), gap_before=True)
                self._gap_next = True
                break
            t_ns.append(reading[0])
            watts.append(reading[1])
            if self._next >= deadline:
                break
        return SampleBatch.of(t_ns, watts, gap)

    def _query(self) -> tuple[int, float] | None:
        """One paced query: (stamp ns, watts), or None for a reading that is a gap (overload, timeout, garbage:
        counted). Raises DeviceGone after ``max_failures`` failures in a row."""
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1.0 / self.opts["rate_hz"], time.monotonic())
        self.late += self._link.discard_waiting()
        t0 = time.monotonic_ns()
        reply = self._ask(self.opts["query"])
        t1 = time.monotonic_ns()
        if reply is None:
            self.timeouts += 1
            self._resync()
            self._failed("no reply within timeout_s")
            return None
        try:
            watts = self.format.watts(reply) * self.opts["scale"]
        except Overload as exc:
            self.overloads += 1
            self._failures = 0
            log.debug("scpi: %s", exc)
            return None
        except ValueError as exc:
            self.garbage += 1
            self._resync()
            self._failed(str(exc))
            return None
        self._failures = 0
        self._half_rtt_ns.append((t1 - t0) // 2)
        return (t0 + t1) // 2 - int(self.opts["integration_s"] * 5e8), watts

    def _failed(self, why: str) -> None:
        self._failures += 1
        log.debug("scpi: %s", why)
        if self._failures >= self.opts["max_failures"]:
            raise DeviceGone(f"scpi on {self.where()}: {self._failures} queries without a valid reply ({why})")

    def _resync(self) -> None:
        """Line the replies up with the queries again: ask for the id and drop every line before its answer (a late
        reply to an earlier query among them). Without an id query, wait one timeout and drop what came."""
        marker = self.opts["idn"]
        if not marker or not self.idn:
            time.sleep(self.opts["timeout_s"])
            self.late += self._link.discard_waiting()
            return
        self._link.write_line(marker)
        deadline = time.monotonic() + 3 * self.opts["timeout_s"]
        while time.monotonic() < deadline:
            line = self._link.read_line(max(deadline - time.monotonic(), 0.01))
            if line is None:
                break
            if line.decode("ascii", "replace").strip()[:120] == self.idn:
                return
            self.late += 1
        raise DeviceGone(f"scpi on {self.where()}: lost step with the instrument (no answer to {marker!r})")
