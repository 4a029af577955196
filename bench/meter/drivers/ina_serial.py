"""A microcontroller with an INA219/INA226/INA228 shunt monitor, streaming over USB serial (firmware in
scripts/firmware/, wire formats in ina_wire.py).

Host to device: ``?\\n`` (send the header), ``R<hz>\\n`` (set the sample rate), and with protocol 2 ``Fb\\n`` /
``Ft\\n`` (binary blocks / text lines). ``wire=auto`` asks a protocol-2 bridge for binary blocks and reads a
protocol-1 bridge's text lines as before. ``t_us`` is the device's own ``micros()``; the host maps it to
CLOCK_MONOTONIC with drift correction (clock.ClockMap), anchored on the end of each chunk's newest conversion
window, so sample spacing keeps the device's precision. A skipped ``seq`` counts as lost samples; ``seq`` or
``t_us`` jumping backwards means the device rebooted: the clock map restarts and a gap is recorded. A sample the
bridge flags (an I2C error, an overflowing current) is never a number: it is counted and becomes a gap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone, Option, Uncertainty, choice, register
from bench.meter.drivers.clock import ClockMap, Unwrapper
from bench.meter.drivers.ina_wire import STATUS_OVERFLOW, Decoded, StreamDecoder
from bench.meter.drivers.serialport import ChunkReader, SerialDriver, open_port
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

HALF_32 = 1 << 31
ENERGY_WRAP = 1 << 40  # INA228 ENERGY register: 40 bits unsigned, wraps (TI INA228 datasheet 7.6.1, ENERGYOF)
WIRES = ("auto", "text", "binary")
# Operating point for the offset terms: a Pi 4 under load draws about 1 A at 5.1 V.
NOMINAL_V, NOMINAL_A = 5.1, 1.0
CLOCK_RESIDUAL_S = 0.001  # the clock map settles within 1 ms (tests/test_meter_units.py, clock map under jitter)


@dataclass(frozen=True)
class ChipAccuracy:
    gain: float  # shunt + bus gain error, fraction
    shunt_offset_v: float
    bus_offset_v: float
    source: str


# Datasheet maxima at 25 degC (the Pi's room), power gain = shunt (current) gain + bus gain; the sources are pinned
# in tests/test_meter_ina.py.
CHIPS = {
    "INA226": ChipAccuracy(0.001 + 0.001, 10e-6, 7.5e-3, "TI SBOS547B 6.5 Electrical Characteristics: shunt and bus "
                           "voltage gain error 0.1% max each, shunt offset 10 uV max, bus offset 7.5 mV max"),
    "INA219": ChipAccuracy(0.005 + 0.005, 100e-6, 0.0, "TI SBOS448G 7.5 Electrical Characteristics, INA219A (the "
                           "bridge cannot tell A from B): current and bus voltage measurement error 0.5% max each, "
                           "offset 100 uV max at PGA /1; no separate bus offset"),
    "INA228": ChipAccuracy(0.0005, 1e-6, 0.0, "TI INA228 datasheet rev. A, features and 6.5: shunt voltage gain "
                           "error 0.05% max, shunt offset 1 uV max; bus voltage gain and offset not known (not "
                           "checked), left out"),
}


@register("ina-serial")
class InaSerialDriver(SerialDriver):
    NOTE = "1 kHz with the conversion window's middle as the stamp; binary blocks with firmware protocol 2"
    OPTIONS = {
        "port": Option(str, "", "serial device, e.g. /dev/serial/by-id/usb-...-if00"),
        "baudrate": Option(int, 115200, "ignored by USB CDC, used by real UARTs"),
        "rate_hz": Option(float, 1000.0, "expected sample rate; sent to the device when set_rate is true"),
        "set_rate": Option(bool, False, "send R<rate_hz> to the device at open"),
        "wire": Option(str, "auto", "auto (binary when the firmware speaks protocol 2), text or binary"),
        "v_gain": Option(float, 1.0, "calibration: bus voltage multiplier"),
        "i_gain": Option(float, 1.0, "calibration: current multiplier"),
        "i_offset_ua": Option(float, 0.0, "calibration: current offset subtracted before the gain (uA)"),
        "shunt_tolerance": Option(float, 0.01, "the shunt resistor's tolerance (fraction); 0 once i_gain is "
                                               "calibrated against a reference"),
        "silence_s": Option(float, 2.0, "no byte for this long means the device is gone"),
        "batch_s": Option(float, 0.5, "how often samples are handed over (fewer wake-ups, less CPU); an energy "
                                      "query waits up to this long for the samples covering its end"),
        "header_timeout_s": Option(float, 1.0, "how long open() waits for the header"),
    }

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        choice(name, "wire", self.opts["wire"], WIRES)
        self._port = None
        self._reader: ChunkReader | None = None
        self._decoder = StreamDecoder()
        self._clock = ClockMap()
        self._t_unwrap = Unwrapper()
        self._last_seq: int | None = None
        self._pending: list[tuple | None] = []  # segments of the last chunk still to hand out; None: a gap
        self._gap_next = False
        self.energy_raw: int | None = None  # the INA228 accumulator's last reading
        self.energy_counts = 0  # counted since its first reading, across its 40-bit wraps
        self._integrated: tuple[float, int, float] | None = None  # (J since energy0, last t_ns, last W)
        self.header: dict[str, str] = {}
        self.resets = 0
        self.i2c_errors = 0
        self.overflows = 0

    @property
    def nominal_rate_hz(self) -> float:
        try:
            return float(self.header.get("rate_hz", self.opts["rate_hz"]))
        except ValueError:
            return float(self.opts["rate_hz"])

    @property
    def window_us(self) -> float:
        """The conversion window each sample averages (protocol 2 stamps its middle); 0 when not declared."""
        return float(self.header.get("window_us", 0) or 0)

    def device_id(self) -> str:
        return self.header.get("device_id", f"ina-serial@{self.opts['port']}")

    def calibration(self) -> dict[str, Any]:
        facts = {
            "v_gain": self.opts["v_gain"], "i_gain": self.opts["i_gain"], "i_offset_ua": self.opts["i_offset_ua"],
            "shunt_uohm": self.header.get("shunt_uohm"), "chip": self.header.get("chip"),
            "window_us": self.window_us, "wire": self.header.get("format", "text"),
            "clock_drift_ppm": round(self._clock.drift_ppm, 2), "clock_anchors": self._clock.anchors,
        }
        lsb_uj = float(self.header.get("energy_uj_per_lsb", 0) or 0)
        if lsb_uj and self.energy_raw is not None:
            facts["chip_energy_j"] = self.energy_counts * lsb_uj * 1e-6  # INA228 accumulator
            facts["samples_energy_j"] = self._integrated[0] if self._integrated else 0.0  # the same span, from us
        return facts

    def uncertainty(self) -> Uncertainty:
        chip = CHIPS.get(self.header.get("chip", ""))
        age_s = 0.0 if self.header.get("protocol") == "2" else 3 * 204e-6  # v1: read up to a conversion cycle late
        time_s = CLOCK_RESIDUAL_S + age_s
        if chip is None:
            return Uncertainty(self.opts["shunt_tolerance"], 0.0, time_s,
                               f"chip {self.header.get('chip', 'unknown')!r}: accuracy not known; shunt tolerance "
                               "from the shunt_tolerance option")
        shunt_ohm = float(self.header.get("shunt_uohm", 10000)) * 1e-6
        abs_w = NOMINAL_V * chip.shunt_offset_v / shunt_ohm + NOMINAL_A * chip.bus_offset_v
        return Uncertainty(chip.gain + self.opts["shunt_tolerance"], abs_w, time_s,
                           f"{chip.source}; + shunt_tolerance; offsets at {NOMINAL_V} V / {NOMINAL_A} A; stamp: "
                           f"clock map residual {CLOCK_RESIDUAL_S * 1e3:g} ms"
                           + (" + v1 firmware's conversion age" if age_s else ""))

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts["firmware"] = self.header.get("firmware")
        return facts

    # -- opening: header, wire format ---------------------------------------------------------------------------

    def open(self) -> None:
        self.close()
        self._port = open_port(self.opts["port"], self.opts["baudrate"], timeout_s=0.25)
        self._reader = ChunkReader(self._port, self.opts["batch_s"], self.opts["silence_s"])
        self._decoder.reset()
        self._clock.reset()
        self._t_unwrap.reset()
        self._last_seq = None
        self._gap_next = True
        self.header = {}
        self._port.reset_input_buffer()
        if self.opts["set_rate"]:
            self._command(b"R%d" % int(self.opts["rate_hz"]))
        self._command(b"?")
        if not self._await_header(lambda h: True):
            log.warning("ina-serial on %s: no header within %.1f s; continuing without device id",
                        self.opts["port"], self.opts["header_timeout_s"])
        self._choose_wire()
        log.info("ina-serial on %s: %s", self.opts["port"], self.header)
        # What queued while we talked to the bridge is stale: its arrival says nothing about when it was measured,
        # and a first clock anchor that late would make the map step back once fresher data arrives.
        self._port.reset_input_buffer()
        self._decoder.reset(resync=True)
        self._reader.reset()

    def _command(self, cmd: bytes) -> None:
        self._port.write(cmd + b"\n")
        self._port.flush()

    def _await_header(self, wanted) -> bool:  # noqa: ANN001 - a predicate on the header
        deadline = time.monotonic() + self.opts["header_timeout_s"]
        while time.monotonic() < deadline:
            data, _ = self._reader.probe()
            for header in self._feed(data).headers:
                self.header = header
            if self.header and wanted(self.header):
                return True
        return False

    def _choose_wire(self) -> None:
        wire, protocol = self.opts["wire"], self.header.get("protocol", "1")
        if wire == "binary" and protocol != "2":
            raise MeterError(f"ina-serial on {self.opts['port']}: wire=binary needs firmware protocol 2, the bridge "
                             f"speaks {protocol}: reflash scripts/firmware/ina_serial_bridge.ino or use wire=text")
        target = "binary" if protocol == "2" and wire in ("auto", "binary") else "text"
        if protocol == "2" and self.header.get("format") != target:
            self._command(b"Fb" if target == "binary" else b"Ft")
            if not self._await_header(lambda h: h.get("format") == target):
                raise DeviceGone(f"ina-serial on {self.opts['port']}: the bridge did not switch to {target}")

    def close(self) -> None:
        super().close()
        self._reader = None
        self._pending.clear()

    # -- reading ----------------------------------------------------------------------------------------------

    def read(self) -> SampleBatch:
        if self._reader is None:
            raise DeviceGone("ina-serial: read() on a closed port")
        if self._pending:
            return self._emit_segment(self._pending.pop(0))
        data, rx_ns = self._reader.read_chunk()
        d = self._feed(data)
        if d.headers:
            self.header = d.headers[-1]
        if d.energy is not None:
            if self.energy_raw is not None:
                self.energy_counts += (d.energy - self.energy_raw) % ENERGY_WRAP
            self.energy_raw = d.energy
        if not len(d.seq):
            return SampleBatch.empty()
        return self._segments(d, rx_ns)

    def _feed(self, data: bytes) -> Decoded:
        d = self._decoder.feed(data)
        self.garbage += self._decoder.garbage
        self._decoder.garbage = 0
        return d

    def _segments(self, d: Decoded, rx_ns: int) -> SampleBatch:
        """Split a chunk where the device lost continuity (reboot: seq/clock back) or flagged a sample, and hand
        out the first piece now and the rest on the next reads."""
        prev_seq = d.seq[0] - 1 if self._last_seq is None else self._last_seq
        seq_step = np.diff(d.seq, prepend=prev_seq) % (1 << 32)
        t_step = self._t_unwrap.steps(d.t_us)
        self._last_seq = int(d.seq[-1])
        bad = d.status != 0
        if seq_step.max() == 1 == seq_step.min() and t_step.max() < HALF_32 and not bad.any():  # the usual chunk
            return self._emit(d.t_us, d.mv, d.ua, rx_ns, False)
        reset = (seq_step == 0) | (seq_step >= HALF_32) | (t_step >= HALF_32)
        self.lost += int((seq_step[(seq_step > 1) & (seq_step < HALF_32)] - 1).sum())
        self.overflows += int((d.status & STATUS_OVERFLOW != 0).sum())
        self.i2c_errors += int((bad & (d.status & STATUS_OVERFLOW == 0)).sum())
        starts = np.flatnonzero(reset | bad | np.concatenate(([False], bad[:-1]))).tolist()
        bounds = sorted(set([0] + starts + [len(d.seq)]))
        segments = []
        gap = False
        for a, b in zip(bounds[:-1], bounds[1:]):
            if bad[a]:
                gap = True  # a flagged sample: never a number, and the span around it is not integrated
                continue
            segments.append((d.t_us[a:b], d.mv[a:b], d.ua[a:b], rx_ns, bool(reset[a]), gap))
            gap = False
        if gap:
            segments.append(None)  # the chunk ended on a flagged sample: what follows starts after a gap
        self._pending.extend(segments[1:])
        return self._emit_segment(segments[0])

    def _emit_segment(self, segment: tuple | None) -> SampleBatch:
        if segment is None:
            return SampleBatch(np.empty(0, np.int64), np.empty(0), gap_before=True)
        return self._emit(*segment)

    def _emit(self, t_us: np.ndarray, mv: np.ndarray, ua: np.ndarray, rx_ns: int, reset: bool,
              gap: bool = False) -> SampleBatch:
        gap = self._gap_next or reset or gap
        self._gap_next = False
        if reset:
            self.resets += 1
            log.warning("ina-serial: device sequence/clock restarted (reboot?); clock map reset, gap recorded")
            self._clock.reset()
            self._t_unwrap.reset()
        t_ext = self._t_unwrap.extend(t_us)
        self._clock.add_anchor(int(t_ext[-1] + self.window_us / 2), rx_ns)  # the window had ended by arrival
        t_host = self._clock.to_host_ns(t_ext)
        o = self.opts
        power = (mv * (o["v_gain"] * 1e-3)) * ((ua - o["i_offset_ua"]) * (o["i_gain"] * 1e-6))
        if self.energy_raw is not None:
            self._cross_check(t_host, power, gap)
        return SampleBatch(t_host, power, gap_before=gap)

    def _cross_check(self, t_ns: np.ndarray, power: np.ndarray, gap: bool) -> None:
        """Integrate what we hand out from the first accumulator reading on, beside the chip's own accumulator
        (INA228): the two agree unless samples were lost or mis-scaled."""
        if self._integrated is None:
            self._integrated = (0.0, int(t_ns[-1]), float(power[-1]))
            return
        total, t_prev, p_prev = self._integrated
        t = t_ns if gap else np.concatenate(([t_prev], t_ns))
        p = power if gap else np.concatenate(([p_prev], power))
        self._integrated = (total + float(np.trapezoid(p, t / 1e9)), int(t_ns[-1]), float(power[-1]))

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "device_resets": self.resets,
                "i2c_errors": self.i2c_errors, "overflows": self.overflows}
