"""A microcontroller with an INA219/INA226 shunt monitor, streaming over USB serial (firmware in scripts/firmware/).

Line protocol "ina-serial v1" (ASCII, one record per ``\\n``-terminated line, CRC-16/CCITT-FALSE over the bytes
before ``*``, written as 4 upper-case hex digits):

    D,<seq>,<t_us>,<bus_mV>,<current_uA>*<crc>      a sample; seq and t_us are uint32 and wrap
    #H,1,<firmware>,<chip>,<device_id>,<shunt_uohm>,<rate_hz>*<crc>   header: at boot and in reply to "?"

Host to device: ``?\\n`` (send the header), ``R<hz>\\n`` (set the sample rate). ``t_us`` is the device's own
``micros()`` at the conversion; the host maps it to CLOCK_MONOTONIC with drift correction (clock.ClockMap), so
sample spacing keeps the device's precision. A skipped ``seq`` counts as lost samples; ``seq`` or ``t_us`` jumping
backwards means the device rebooted: the clock map restarts and a gap is recorded.
"""

from __future__ import annotations

import binascii
import logging
import re
import time
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Option, register
from bench.meter.drivers.clock import ClockMap, Unwrapper
from bench.meter.drivers.serialport import LineReader, SerialDriver, open_port
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

HALF_32 = 1 << 31


# D,<seq>,<t_us>,<bus_mV>,<current_uA>*<crc16 hex>, optionally followed by \r; one whole line of a block.
# Groups: the four numbers as written, and the CRC.
SAMPLE_LINE = re.compile(rb"^D,(\d{1,10},\d{1,10},-?\d{1,9},-?\d{1,12})\*([0-9A-Fa-f]{4})\r?$", re.M)
CRC_INIT = 0xFFFF
CRC_AFTER_D = binascii.crc_hqx(b"D,", CRC_INIT)  # the CRC state after a sample line's fixed "D," prefix


def crc16(payload: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), what the firmware computes."""
    return binascii.crc_hqx(payload, CRC_INIT)


def frame(payload: bytes) -> bytes:
    return payload + b"*%04X\n" % crc16(payload)


@register("ina-serial")
class InaSerialDriver(SerialDriver):
    OPTIONS = {
        "port": Option(str, "", "serial device, e.g. /dev/serial/by-id/usb-...-if00"),
        "baudrate": Option(int, 115200, "ignored by USB CDC, used by real UARTs"),
        "rate_hz": Option(float, 1000.0, "expected sample rate; sent to the device when set_rate is true"),
        "set_rate": Option(bool, False, "send R<rate_hz> to the device at open"),
        "v_gain": Option(float, 1.0, "calibration: bus voltage multiplier"),
        "i_gain": Option(float, 1.0, "calibration: current multiplier"),
        "i_offset_ua": Option(float, 0.0, "calibration: current offset subtracted before the gain (uA)"),
        "silence_s": Option(float, 2.0, "no byte for this long means the device is gone"),
        "batch_s": Option(float, 0.5, "longest sleep between reads (fewer wake-ups, less CPU); an energy query "
                                      "waits up to this long for the samples covering its end"),
        "header_timeout_s": Option(float, 1.0, "how long open() waits for the header"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self._port = None
        self._reader: LineReader | None = None
        self._clock = ClockMap()
        self._t_unwrap = Unwrapper()
        self._last_seq: int | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]] = []
        self._gap_next = False
        self.header: dict[str, str] = {}
        self.resets = 0

    @property
    def nominal_rate_hz(self) -> float:
        try:
            return float(self.header.get("rate_hz", self.opts["rate_hz"]))
        except ValueError:
            return float(self.opts["rate_hz"])

    def device_id(self) -> str:
        return self.header.get("device_id", f"ina-serial@{self.opts['port']}")

    def calibration(self) -> dict[str, Any]:
        return {
            "v_gain": self.opts["v_gain"], "i_gain": self.opts["i_gain"], "i_offset_ua": self.opts["i_offset_ua"],
            "shunt_uohm": self.header.get("shunt_uohm"), "chip": self.header.get("chip"),
            "clock_drift_ppm": round(self._clock.drift_ppm, 2), "clock_anchors": self._clock.anchors,
        }

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts["firmware"] = self.header.get("firmware")
        return facts

    def open(self) -> None:
        self.close()
        self._port = open_port(self.opts["port"], self.opts["baudrate"], timeout_s=0.25)
        self._reader = LineReader(self._port, self.opts["batch_s"], self.opts["silence_s"])
        self._clock.reset()
        self._t_unwrap.reset()
        self._last_seq = None
        self._gap_next = True
        self._port.reset_input_buffer()
        if self.opts["set_rate"]:
            self._port.write(b"R%d\n" % int(self.opts["rate_hz"]))
        self._port.write(b"?\n")
        self._port.flush()
        deadline = time.monotonic() + self.opts["header_timeout_s"]
        while not self.header and time.monotonic() < deadline:
            block, _ = self._reader.read_block()
            for line in block.split(b"\n"):
                self._parse_header(line.rstrip(b"\r"))
        if not self.header:
            log.warning("ina-serial on %s: no header within %.1f s; continuing without device id",
                        self.opts["port"], self.opts["header_timeout_s"])
        else:
            log.info("ina-serial on %s: %s", self.opts["port"], self.header)
        self._reader.reset()

    def close(self) -> None:
        super().close()
        self._reader = None
        self._pending.clear()

    def _parse_header(self, line: bytes) -> bool:
        """Take a valid ``#H`` line as the device's header; False for anything else (the caller counts garbage)."""
        star = line.rfind(b"*")
        if not line.startswith(b"#H,") or star < 0:
            return False
        try:
            if crc16(line[:star]) != int(line[star + 1:], 16):
                return False
            fields = line[:star].decode("ascii").split(",")
        except (ValueError, UnicodeDecodeError):
            return False
        if len(fields) != 7 or fields[1] != "1":
            raise MeterError(f"ina-serial: device speaks protocol {fields[1:2]}, this driver speaks 1")
        self.header = dict(zip(("firmware", "chip", "device_id", "shunt_uohm", "rate_hz"), fields[2:]))
        return True

    def parse_block(self, block: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Valid data lines of a block of whole lines -> (seq, t_us, mV, uA) arrays; anything failing framing or
        CRC is counted and skipped.

        One regex pass over the block, one CRC per line (continued from the state after "D,"), and the digits of
        all good lines converted by one numpy call: per-line Python work is what dominates the daemon's CPU at
        1 kHz. Only a block holding something other than samples (a header, a blank or garbage line) is walked line
        by line."""
        matches = SAMPLE_LINE.findall(block)
        good = [numbers for numbers, crc in matches if binascii.crc_hqx(numbers, CRC_AFTER_D) == int(crc, 16)]
        self.garbage += len(matches) - len(good)
        if len(matches) != block.count(b"\n"):
            self.garbage += self._count_other_lines(block)
        cols = np.fromstring(b",".join(good), dtype=np.int64, sep=",").reshape(-1, 4)  # text mode: not deprecated
        return cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3]

    def _count_other_lines(self, block: bytes) -> int:
        """Garbage among the lines that are not samples; a valid header among them is taken, blank lines ignored."""
        garbage = 0
        for line in block.split(b"\n"):
            line = line.rstrip(b"\r")
            if not line.strip() or SAMPLE_LINE.fullmatch(line):
                continue
            if not (line.startswith(b"#H") and self._parse_header(line)):
                garbage += 1
        return garbage

    def read(self) -> SampleBatch:
        if self._reader is None:
            raise DeviceGone("ina-serial: read() on a closed port")
        if self._pending:
            return self._emit(*self._pending.pop(0))
        block, rx_ns = self._reader.read_block()
        seq, t_us, mv, ua = self.parse_block(block)
        if not len(seq):
            return SampleBatch.empty()
        prev_seq = seq[0] - 1 if self._last_seq is None else self._last_seq
        seq_step = np.diff(seq, prepend=prev_seq) % (1 << 32)
        t_step = self._t_unwrap.steps(t_us)
        self._last_seq = int(seq[-1])
        if seq_step.max() == 1 == seq_step.min() and t_step.max() < HALF_32:  # the usual block: nothing lost
            return self._emit(t_us, mv, ua, rx_ns, False)
        reset = (seq_step == 0) | (seq_step >= HALF_32) | (t_step >= HALF_32)
        self.lost += int((seq_step[(seq_step > 1) & (seq_step < HALF_32)] - 1).sum())
        cuts = np.flatnonzero(reset).tolist()
        bounds = [0] + cuts + [len(seq)]
        segments = [(t_us[a:b], mv[a:b], ua[a:b], rx_ns, a in cuts) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        self._pending.extend(segments[1:])
        return self._emit(*segments[0])

    def _emit(self, t_us: np.ndarray, mv: np.ndarray, ua: np.ndarray, rx_ns: int, reset: bool) -> SampleBatch:
        gap = self._gap_next or reset
        self._gap_next = False
        if reset:
            self.resets += 1
            log.warning("ina-serial: device sequence/clock restarted (reboot?); clock map reset, gap recorded")
            self._clock.reset()
            self._t_unwrap.reset()
        t_ext = self._t_unwrap.extend(t_us)
        self._clock.add_anchor(int(t_ext[-1]), rx_ns)
        t_host = self._clock.to_host_ns(t_ext)
        o = self.opts
        power = (mv * (o["v_gain"] * 1e-3)) * ((ua - o["i_offset_ua"]) * (o["i_gain"] * 1e-6))
        return SampleBatch(t_host, power, gap_before=gap)

    def counters(self) -> dict[str, int]:
        c = super().counters()
        c["device_resets"] = self.resets
        if self._reader is not None:
            c["overlong_lines"] = self._reader.overlong
        return c
