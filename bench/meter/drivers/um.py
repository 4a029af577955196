"""RDTech UM25C / UM34C USB meters over serial or Bluetooth RFCOMM (``rfcomm bind`` gives /dev/rfcommN).

Public protocol facts: the host writes the single byte 0xF0 and the meter answers with 130 bytes, big-endian:
model id (u16: 0x0963 UM24C, 0x09C9 UM25C, 0x0D4C UM34C) at 0, voltage (u16) at 2, current (u16) at 4, power
(u32, mW) at 6, temperature C at 10, ... and the end marker 0xFFF1 at 128. The UM25C reports 1 mV / 0.1 mA steps,
the UM24C and UM34C 10 mV / 1 mA. The meter has no clock: each reading is stamped at the midpoint between the
request and the end of the reply. A frame with a wrong length, model or end marker is counted and the input is
flushed so the next poll starts aligned.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

from bench.meter.drivers.base import DeviceGone, Option, register
from bench.meter.drivers.serialport import SerialDriver, open_port
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

POLL = b"\xf0"
FRAME_BYTES = 130
END_MARKER = 0xFFF1
MODEL_IDS = {0x0963: "um24c", 0x09C9: "um25c", 0x0D4C: "um34c"}
# (volts per count, amps per count) by model
SCALES = {"um24c": (0.01, 0.001), "um25c": (0.001, 0.0001), "um34c": (0.01, 0.001)}


def decode_frame(frame: bytes) -> tuple[str, float, float, float, int]:
    """130-byte reply -> (model, volts, amps, reported watts, temperature C); ValueError when it is not a frame."""
    if len(frame) != FRAME_BYTES:
        raise ValueError(f"frame is {len(frame)} bytes, expected {FRAME_BYTES}")
    model_id, v_raw, i_raw, p_mw, temp_c = struct.unpack_from(">HHHIH", frame, 0)
    (end,) = struct.unpack_from(">H", frame, 128)
    if end != END_MARKER or model_id not in MODEL_IDS:
        raise ValueError(f"bad frame markers: model 0x{model_id:04X}, end 0x{end:04X}")
    model = MODEL_IDS[model_id]
    v_scale, i_scale = SCALES[model]
    return model, v_raw * v_scale, i_raw * i_scale, p_mw / 1000.0, temp_c


@register("um34c")
@register("um25c")
class RDTechUMDriver(SerialDriver):
    OPTIONS = {
        "port": Option(str, "", "serial device, e.g. /dev/rfcomm0"),
        "baudrate": Option(int, 9600, "RFCOMM/serial baud rate"),
        "rate_hz": Option(float, 5.0, "polls per second (the meters refresh a few times a second)"),
        "timeout_s": Option(float, 1.0, "how long to wait for one 130-byte reply"),
        "max_failures": Option(int, 5, "consecutive failed polls before the meter counts as gone"),
        "v_gain": Option(float, 1.0, "calibration: voltage multiplier"),
        "i_gain": Option(float, 1.0, "calibration: current multiplier"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self.model = name
        self._port = None
        self._next_poll = 0.0
        self._failures = 0
        self.seen_model: str | None = None
        self.temperature_c: int | None = None

    @property
    def nominal_rate_hz(self) -> float:
        return float(self.opts["rate_hz"])

    def device_id(self) -> str:
        return f"{self.seen_model or self.model}@{self.opts['port']}"

    def calibration(self) -> dict[str, Any]:
        return {"v_gain": self.opts["v_gain"], "i_gain": self.opts["i_gain"], "scales": SCALES[self.model]}

    def open(self) -> None:
        self.close()
        self._port = open_port(self.opts["port"], self.opts["baudrate"], timeout_s=self.opts["timeout_s"])
        self._port.reset_input_buffer()
        self._failures = 0
        self._next_poll = time.monotonic()

    def poll(self) -> tuple[int, bytes]:
        """One request/reply: (host ns at the midpoint, raw reply bytes)."""
        assert self._port is not None
        t0 = time.monotonic_ns()
        self._port.write(POLL)
        frame = self._port.read(FRAME_BYTES)
        t1 = time.monotonic_ns()
        return (t0 + t1) // 2, frame

    def read(self) -> SampleBatch:
        if self._port is None:
            raise DeviceGone(f"{self.model}: read() on a closed port")
        delay = self._next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_poll = max(self._next_poll + 1.0 / self.opts["rate_hz"], time.monotonic())
        t_ns, frame = self.poll()
        try:
            model, volts, amps, _, temp = decode_frame(frame)
        except ValueError as exc:
            self.garbage += 1
            self._failures += 1
            log.debug("%s: %s", self.model, exc)
            time.sleep(0.05)
            self._port.reset_input_buffer()  # resynchronise: the next poll starts a fresh frame
            if self._failures >= self.opts["max_failures"]:
                raise DeviceGone(f"{self.model} on {self.opts['port']}: {self._failures} polls without a valid reply") from None
            return SampleBatch.empty()
        self._failures = 0
        if self.seen_model != model:
            if model != self.model:
                log.warning("%s driver talking to a %s; using that model's scales", self.model, model)
            self.seen_model = model
        self.temperature_c = temp
        power = volts * self.opts["v_gain"] * amps * self.opts["i_gain"]
        return SampleBatch.of([t_ns], [power])
