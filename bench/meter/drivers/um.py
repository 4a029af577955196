"""RDTech UM24C / UM25C / UM34C USB meters over serial or Bluetooth RFCOMM (``rfcomm bind`` gives /dev/rfcommN).

Public protocol facts (sigrok's rdtech-um driver, rd-usb): the host writes the byte 0xF0 and the meter answers with
130 bytes, big-endian: model id (u16) at 0, voltage (u16) at 2, current (u16) at 4, the meter's own power (u32, mW)
at 6, temperature C (u16) at 10. The UM24C and UM25C end the frame with 0xFFF1; the UM34C ends it with a checksum
byte (an XOR over a fixed set of offsets) at 129. The UM25C reports 1 mV / 0.1 mA steps, the others 10 mV / 1 mA.

The meters refresh their reading about twice a second whatever the poll rate, so the driver polls at that rate on
average, drops a reply that repeats the previous reading, and stamps each reading by its age: it was taken at some
moment since the previous poll (at most one refresh period back), so the stamp is the middle of that span and its
uncertainty half of it (about ±0.25 s). Each poll interval is drawn from 0.5-1.5 periods, so the polls do not lock
to the meter's refresh at one phase (which would make every stamp err the same way). That suits windows of tens
of seconds, not a 1.5 s prefill.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Option, Uncertainty, choice, register
from bench.meter.drivers.serialport import SerialDriver, open_port
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

POLL = b"\xf0"
FRAME_BYTES = 130
# The offsets whose bytes a UM34C XORs into its checksum byte 129 (sigrok rdtech-um, poll_csum_um34c).
UM34C_XOR_OFFSETS = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69, 73, 79, 83, 89,
                     97, 99, 109, 111, 113, 119, 121, 127)
# rd-usb issue 54: "the meters internally sample at 500ms"; polling faster only returns repeats.
REFRESH_HZ = 2.0


def end_marker_ok(frame: bytes) -> bool:
    return frame[128:130] == b"\xff\xf1"


def um34c_checksum_ok(frame: bytes) -> bool:
    return reduce(lambda acc, i: acc ^ frame[i], UM34C_XOR_OFFSETS, 0) == frame[129]


@dataclass(frozen=True)
class UmModel:
    """One meter model: how its frames are recognised and checked, and the size of its reading steps."""

    name: str
    model_id: int
    volts_per_count: float
    amps_per_count: float
    frame_ok: Callable[[bytes], bool]


MODELS = {m.model_id: m for m in (
    UmModel("um24c", 0x0963, 0.01, 0.001, end_marker_ok),
    UmModel("um25c", 0x09C9, 0.001, 0.0001, end_marker_ok),
    UmModel("um34c", 0x0D4C, 0.01, 0.001, um34c_checksum_ok),
)}
BY_NAME = {m.name: m for m in MODELS.values()}


@dataclass(frozen=True)
class UmReading:
    model: UmModel
    volts: float
    amps: float
    meter_watts: float  # the meter's own power field
    temperature_c: int


def decode_frame(frame: bytes) -> UmReading:
    """130-byte reply -> reading; ValueError naming what is wrong when it is not a valid frame of a known model."""
    if len(frame) != FRAME_BYTES:
        raise ValueError(f"frame is {len(frame)} bytes, expected {FRAME_BYTES}")
    model_id, v_raw, i_raw, p_mw, temp_c = struct.unpack_from(">HHHIH", frame, 0)
    model = MODELS.get(model_id)
    if model is None:
        raise ValueError(f"unknown model id 0x{model_id:04X}")
    if not model.frame_ok(frame):
        raise ValueError(f"{model.name} frame fails its {'checksum' if model.name == 'um34c' else 'end marker'}")
    return UmReading(model, v_raw * model.volts_per_count, i_raw * model.amps_per_count, p_mw / 1000.0, temp_c)


@register("um34c")
@register("um25c")
@register("um24c")
class RDTechUMDriver(SerialDriver):
    NOTE = "about 2 readings/s, stamps ±0.25 s: for windows of tens of seconds only"
    OPTIONS = {
        "port": Option(str, "", "serial device, e.g. /dev/rfcomm0"),
        "baudrate": Option(int, 9600, "RFCOMM/serial baud rate"),
        "rate_hz": Option(float, REFRESH_HZ, "polls per second (the meter refreshes about twice a second)"),
        "power": Option(str, "meter", "meter: the meter's own power field; vi: volts x amps"),
        "timeout_s": Option(float, 1.0, "how long to wait for one 130-byte reply"),
        "max_failures": Option(int, 5, "consecutive failed polls before the meter counts as gone"),
        "v_gain": Option(float, 1.0, "calibration: voltage multiplier"),
        "i_gain": Option(float, 1.0, "calibration: current multiplier"),
        "accuracy_rel": Option(float, 0.0, "gain error from your meter's manual (fraction); 0: not known"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        choice(name, "power", self.opts["power"], ("meter", "vi"))
        if not 0 < self.opts["rate_hz"] <= 20:
            raise MeterError(f"driver {name!r}: option rate_hz={self.opts['rate_hz']:g}: expected 0 < rate_hz <= 20")
        self._port = None
        self._next_poll = 0.0
        self._failures = 0
        self._prev_poll_ns: int | None = None
        self._phase = random.Random()
        self._last_body: bytes | None = None
        self._last_kept_ns = 0
        self.repeats = 0
        self.seen_model: str | None = None
        self.temperature_c: int | None = None

    @property
    def nominal_rate_hz(self) -> float:
        return min(float(self.opts["rate_hz"]), REFRESH_HZ)

    def device_id(self) -> str:
        return f"{self.seen_model or self.name}@{self.opts['port']}"

    def _model(self) -> UmModel:
        return BY_NAME[self.seen_model or self.name]

    def calibration(self) -> dict[str, Any]:
        m = self._model()
        return {"v_gain": self.opts["v_gain"], "i_gain": self.opts["i_gain"], "power_field": self.opts["power"],
                "steps": (m.volts_per_count, m.amps_per_count)}

    def uncertainty(self) -> Uncertainty:
        m = self._model()
        # Half a step of the power field (1 mW) or of V x I at a 5 V / 1 A operating point, whichever is read.
        half_step_w = 0.0005 if self.opts["power"] == "meter" else 0.5 * (m.volts_per_count + 5 * m.amps_per_count)
        return Uncertainty(
            power_rel=self.opts["accuracy_rel"], power_abs_w=half_step_w,
            time_s=0.5 * min(1.5 / float(self.opts["rate_hz"]), 1 / REFRESH_HZ),
            source=f"{m.name}: resolution from the frame layout (sigrok rdtech-um); gain error "
                   f"{'from the accuracy_rel option' if self.opts['accuracy_rel'] else 'not known (set accuracy_rel)'}; "
                   f"stamp: half the span the reading was taken in (refresh ~2 Hz, rd-usb issue 54)")

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "repeated_readings": self.repeats}

    def open(self) -> None:
        self.close()
        self._port = open_port(self.opts["port"], self.opts["baudrate"], timeout_s=self.opts["timeout_s"])
        self._port.reset_input_buffer()
        self._failures = 0
        self._prev_poll_ns = None
        self._last_body = None
        self._next_poll = time.monotonic()

    def poll(self) -> tuple[int, bytes]:
        """One request/reply: (host ns when the request went out, raw reply bytes)."""
        assert self._port is not None
        t0 = time.monotonic_ns()
        self._port.write(POLL)
        return t0, self._port.read(FRAME_BYTES)

    def read(self) -> SampleBatch:
        if self._port is None:
            raise DeviceGone(f"{self.name}: read() on a closed port")
        delay = self._next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        period = self._phase.uniform(0.5, 1.5) / self.opts["rate_hz"]  # on average rate_hz, at no fixed phase
        self._next_poll = max(self._next_poll + period, time.monotonic())
        t_ns, frame = self.poll()
        prev_ns, self._prev_poll_ns = self._prev_poll_ns, t_ns
        try:
            reading = decode_frame(frame)
        except ValueError as exc:
            return self._bad_frame(exc)
        self._failures = 0
        self._note_model(reading)
        if self._repeated(frame, t_ns) or prev_ns is None:
            return SampleBatch.empty()  # a repeat; or the first reading, of unknown age: only the next change counts
        # The reading was taken after the previous poll (at most one refresh period back): stamp the middle.
        span_ns = min(t_ns - prev_ns, int(1e9 / REFRESH_HZ))
        o = self.opts
        watts = reading.meter_watts if o["power"] == "meter" else reading.volts * reading.amps
        return SampleBatch.of([t_ns - span_ns // 2], [watts * o["v_gain"] * o["i_gain"]])

    def _bad_frame(self, exc: ValueError) -> SampleBatch:
        self.garbage += 1
        self._failures += 1
        log.debug("%s: %s", self.name, exc)
        time.sleep(0.05)
        self._port.reset_input_buffer()  # resynchronise: the next poll starts a fresh frame
        if self._failures >= self.opts["max_failures"]:
            raise DeviceGone(f"{self.name} on {self.opts['port']}: {self._failures} polls without a valid reply")
        return SampleBatch.empty()

    def _note_model(self, reading: UmReading) -> None:
        if self.seen_model != reading.model.name:
            if reading.model.name != self.name:
                log.warning("%s driver talking to a %s; using that model's steps and reporting it",
                            self.name, reading.model.name)
            self.seen_model = reading.model.name
        self.temperature_c = reading.temperature_c

    def _repeated(self, frame: bytes, t_ns: int) -> bool:
        """A reply identical to the previous one is the same reading polled twice, unless more than 1.5 refresh
        periods passed (a steady load can repeat a frame; it is still a reading, and dropping it would open a gap)."""
        body = frame[2:128]
        same = body == self._last_body and t_ns - self._last_kept_ns < 1.5e9 / REFRESH_HZ
        self._last_body = body
        if same:
            self.repeats += 1
        else:
            self._last_kept_ns = t_ns
        return same
