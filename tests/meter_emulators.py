"""Emulated instruments on the far side of a pty pair, speaking the real protocols, for the serial driver tests.

The driver opens a stable symlink (like /dev/serial/by-id/...) that points at the pty's slave; ``unplug()`` closes
the master (the driver's next read fails with EIO, as with a yanked USB cable) and ``replug()`` makes a fresh pty
and re-points the symlink.
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import threading
import time
import tty
from typing import Callable

import numpy as np

from bench.meter.drivers.ina_wire import RECORD, encode_block, frame

PowerFn = Callable[[float], tuple[float, float]]  # seconds since start -> (volts, amps)


def collect(driver, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Every sample an opened driver hands on for ``seconds``: stamps (ns) and power (W)."""
    t, p = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        b = driver.read()
        t.extend(b.t_ns.tolist())
        p.extend(b.power_w.tolist())
    return np.array(t), np.array(p)


def constant(volts: float = 5.1, amps: float = 0.6) -> PowerFn:
    return lambda t: (volts, amps)


class PtyDevice:
    """A pty whose slave is reachable through ``link``; subclasses run a device loop on the master side."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.master = -1
        self.slave = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.plugged = threading.Event()
        self._plug()

    def _plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = self.link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)
        self.plugged.set()

    def unplug(self) -> None:
        self.plugged.clear()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self.master = self.slave = -1

    def replug(self) -> None:
        self._plug()

    def start(self) -> "PtyDevice":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.unplug()
        if os.path.lexists(self.link):
            os.unlink(self.link)

    def __enter__(self) -> "PtyDevice":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.plugged.wait(0.05):
                continue
            try:
                self.step()
            except OSError:
                time.sleep(0.01)  # unplugged under our feet

    def step(self) -> None:
        raise NotImplementedError

    def _commands(self, timeout_s: float) -> bytes:
        fd = self.master
        if fd < 0:
            return b""
        ready, _, _ = select.select([fd], [], [], timeout_s)
        return os.read(fd, 4096) if ready else b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]


class InaDevice(PtyDevice):
    """The ina-serial firmware at ``rate_hz``, stamped with its own drifting microsecond clock.

    ``protocol=1``: the old firmware (D lines, ``t_us`` when the registers were read). ``protocol=2``: ``t_us`` is
    the middle of the ``window_us`` conversion window, the sample leaves when the window ends, ``Fb``/``Ft`` switch
    between binary blocks and text lines, and ``i2c_error_every`` / ``overflow_every`` send flagged records.
    ``truth`` keeps (seq, host ns the sample stands for: the window middle in protocol 2). Other faults:
    ``garbage_every`` (junk after every N samples), ``corrupt_every`` (a bad CRC), ``skip_every`` (a lost seq).
    """

    def __init__(self, link: str, rate_hz: float = 1000.0, power: PowerFn = constant(), drift_ppm: float = 0.0,
                 start_us: int = 123_456, tick_s: float = 0.005, garbage_every: int = 0, corrupt_every: int = 0,
                 skip_every: int = 0, device_id: str = "EMU-INA-0001", protocol: int = 1, window_us: int = 920,
                 i2c_error_every: int = 0, overflow_every: int = 0, chip: str = "INA226") -> None:
        self.rate_hz = rate_hz
        self.power = power
        self.drift = 1.0 + drift_ppm * 1e-6
        self.start_us = start_us
        self.tick_s = tick_s
        self.garbage_every, self.corrupt_every, self.skip_every = garbage_every, corrupt_every, skip_every
        self.i2c_error_every, self.overflow_every = i2c_error_every, overflow_every
        self.device_id = device_id
        self.protocol = protocol
        self.window_us = window_us if protocol == 2 else 0
        self.chip = chip
        self.binary = False
        self._rows: list[tuple[int, int, int, int]] = []  # binary records not sent yet
        self._rows_since_ns = 0
        self.energy = 0.0  # J, what an INA228's accumulator would hold
        self.seq = 0
        self.k = 0
        self.truth: list[tuple[int, int]] = []
        self.sent = 0
        self.t0_ns = time.monotonic_ns()
        super().__init__(link)

    def header(self) -> bytes:
        if self.protocol == 1:
            return frame(f"#H,1,emu-1.0,{self.chip},{self.device_id},10000,{int(self.rate_hz)}".encode())
        lsb = "1" if self.chip == "INA228" else "0"
        fmt = "binary" if self.binary else "text"
        return frame(f"#H,2,emu-2.0,{self.chip},{self.device_id},10000,{int(self.rate_hz)},{self.window_us},"
                     f"{fmt},{lsb}".encode())

    def step(self) -> None:
        cmds = self._commands(self.tick_s)
        if self.protocol == 2 and (b"Fb" in cmds or b"Ft" in cmds):
            self.binary = b"Fb" in cmds
        if b"?" in cmds or (self.protocol == 2 and b"F" in cmds):
            self.write(self.header())
        now = time.monotonic_ns()
        due = int((now - self.t0_ns) / 1e9 * self.rate_hz) + 1  # every sample taken by now, the newest included
        rows, out = [], []
        while self.k < due:
            t_host_ns = self.t0_ns + int(self.k * 1e9 / self.rate_hz) - self.window_us * 500  # the window middle
            t_s = (t_host_ns - self.t0_ns) / 1e9
            t_us = (self.start_us + int(t_s * 1e6 * self.drift)) % (1 << 32)
            volts, amps = self.power(t_s)
            self.energy += volts * amps / self.rate_hz
            self.k += 1
            self.seq = (self.seq + 1) % (1 << 32)
            if self.skip_every and self.k % self.skip_every == 0:
                continue
            status = (1 if self.i2c_error_every and self.k % self.i2c_error_every == 0 else
                      2 if self.overflow_every and self.k % self.overflow_every == 0 else 0)
            if status == 0:
                self.truth.append((self.seq, t_host_ns))
            mv, ua = (round(volts * 1000), round(amps * 1e6)) if status == 0 else (0, 0)
            rows.append((t_us, ua, mv, status))
            if status:
                line = frame(b"E,%d,%d,%d" % (self.seq, t_us, status))
            else:
                line = frame(b"D,%d,%d,%d,%d" % (self.seq, t_us, mv, ua))
            if self.corrupt_every and self.k % self.corrupt_every == 0:
                line = line[:-3] + b"00\n" if not line.endswith(b"00\n") else line[:-3] + b"11\n"
                if status == 0:
                    self.truth.pop()
            out.append(line)
            if self.garbage_every and self.k % self.garbage_every == 0:
                out.append(b"\x00\xffgarbage,1,2*ZZ\n")
        if not rows:
            return
        if self.binary:
            self._send_blocks(rows)
        else:
            self.write(b"".join(out))
        self.sent += len(rows)

    def _send_blocks(self, rows: list[tuple[int, int, int, int]]) -> None:
        """Like the firmware: a block every 32 records or 20 ms, whichever comes first."""
        if not self._rows:
            self._rows_since_ns = time.monotonic_ns()
        self._rows.extend(rows)
        if len(self._rows) < 32 and time.monotonic_ns() - self._rows_since_ns < 20_000_000:
            return
        energy = int(self.energy * 1e6) if self.chip == "INA228" else None  # 1 uJ per count in the header
        first = self.seq - len(self._rows) + 1
        for k in range(0, len(self._rows), 32):
            self.write(encode_block(first + k, np.array(self._rows[k:k + 32], dtype=RECORD), energy))
        self._rows = []


# UM frame facts as sigrok's rdtech-um driver and rd-usb read them: ids, steps, the power field, the end marker.
UM_MODELS = {"um24c": (0x0963, 0.01, 0.001), "um25c": (0x09C9, 0.001, 0.0001), "um34c": (0x0D4C, 0.01, 0.001)}
UM34C_XOR_OFFSETS = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69, 73, 79, 83, 89,
                     97, 99, 109, 111, 113, 119, 121, 127)  # sigrok rdtech-um protocol.c, poll_csum_um34c


def um_frame(model: str, volts: float, amps: float, temp_c: int = 31, watts: float | None = None,
             mwh: int = 0) -> bytes:
    """A 130-byte reply of ``model`` with the given reading: power (u32 mW) at 6, temperature at 10, mWh at 106, and
    the model's own trailer (0xFFF1, or the UM34C's XOR byte at 129)."""
    model_id, v_step, i_step = UM_MODELS[model]
    data = bytearray(130)
    watts = volts * amps if watts is None else watts
    struct.pack_into(">HHHIH", data, 0, model_id, round(volts / v_step), round(amps / i_step), round(watts * 1000),
                     temp_c)
    struct.pack_into(">I", data, 106, mwh)
    if model == "um34c":
        data[129] = 0
        for i in UM34C_XOR_OFFSETS:
            data[129] ^= data[i]
    else:
        struct.pack_into(">H", data, 128, 0xFFF1)
    return bytes(data)


class UmDevice(PtyDevice):
    """An RDTech UM meter: takes a reading every 1/``refresh_hz`` s and answers each 0xF0 with the latest one.

    ``truth`` keeps (host ns the reading was taken, watts) for checking stamps; ``bad_every`` sends a truncated
    frame now and then, as after a Bluetooth hiccup."""

    def __init__(self, link: str, model: str = "um25c", power: PowerFn = constant(5.08, 0.812), bad_every: int = 0,
                 refresh_hz: float = 2.0) -> None:
        self.model = model
        self.power = power
        self.bad_every = bad_every
        self.refresh_hz = refresh_hz
        self.polls = 0
        self.t0_ns = time.monotonic_ns()
        self.truth: list[tuple[int, float]] = []
        self.served: list[tuple[int, int]] = []  # (host ns of the poll, host ns of the reading it got)
        super().__init__(link)

    def step(self) -> None:
        for byte in self._commands(0.05):
            if byte != 0xF0:
                continue
            self.polls += 1
            k = int((time.monotonic_ns() - self.t0_ns) / 1e9 * self.refresh_hz)
            t_ns = self.t0_ns + int(k * 1e9 / self.refresh_hz)
            volts, amps = self.power((t_ns - self.t0_ns) / 1e9)
            if not self.truth or self.truth[-1][0] != t_ns:
                self.truth.append((t_ns, volts * amps))
            self.served.append((time.monotonic_ns(), t_ns))
            reply = um_frame(self.model, volts, amps, mwh=k)
            if self.bad_every and self.polls % self.bad_every == 0:
                reply = reply[:60]
            self.write(reply)


class ScpiInstrument:
    """The command side of an emulated SCPI power analyser, whatever carries the bytes: ``*IDN?``, ``MEAS:POW?``
    (watts), ``MEAS:VOLT?;:MEAS:CURR?`` (two replies joined by ``;``), ``MEAS:ALL?`` (V,I,P like a Rigol DP800),
    ``SYST:ERR?`` (the error queue) and any setup command (recorded; an unknown header queues error -113).

    Faults: ``junk_every`` replies junk, ``overload_every`` replies SCPI's 9.9E37, ``late_every`` answers a query
    ``late_s`` late (later queries wait behind it, as on a real instrument). ``power`` gets the seconds since start
    at the moment the query arrived, so a test can tell which query a reply belongs to."""

    SETUP = (b"SYST:REM", b"SENS:CURR:RANG", b"CONF:INT")

    def __init__(self, power: PowerFn = constant(12.0, 0.25), junk_every: int = 0, overload_every: int = 0,
                 late_every: int = 0, late_s: float = 0.5) -> None:
        self.power = power
        self.junk_every, self.overload_every, self.late_every, self.late_s = junk_every, overload_every, late_every, late_s
        self.queries = 0
        self.truth: list[int] = []  # host ns of each measurement (the moment its query arrived)
        self.setup: list[bytes] = []
        self.errors: list[bytes] = []
        self.t0 = time.monotonic()

    def handle(self, line: bytes) -> bytes | None:
        q = line.strip().upper()
        arrived_ns = time.monotonic_ns()
        volts, amps = self.power(arrived_ns / 1e9 - self.t0)
        if q == b"*IDN?":
            return b"EMULATED,PA-1000,SN4242,1.02\n"
        if q == b"SYST:ERR?":
            return (self.errors.pop(0) if self.errors else b'+0,"No error"') + b"\n"
        if not q.endswith(b"?"):
            if q.startswith(self.SETUP):
                self.setup.append(q)
            else:
                self.errors.append(b'-113,"Undefined header"')
            return None
        self.queries += 1
        if self.late_every and self.queries % self.late_every == 0:
            time.sleep(self.late_s)
        replies = {b"MEAS:POW?": b"%+.6E" % (volts * amps), b"MEAS:VOLT?;:MEAS:CURR?": b"%.6f;%.6f" % (volts, amps),
                   b"MEAS:ALL?": b"%.4f,%.4f,%.4f" % (volts, amps, volts * amps)}
        if q not in replies:
            self.errors.append(b'-113,"Undefined header"')
            return None
        self.truth.append(arrived_ns)
        if self.junk_every and self.queries % self.junk_every == 0:
            return b'-113,"Undefined header"\n'
        if self.overload_every and self.queries % self.overload_every == 0:
            return re.sub(rb"[^;,]+", b"+9.90000E+37", replies[q]) + b"\n"  # every value in overload
        return replies[q] + b"\n"


class ScpiDevice(PtyDevice):
    """An ``ScpiInstrument`` on a pty (a USB-serial instrument)."""

    def __init__(self, link: str, **kwargs) -> None:
        self.instrument = ScpiInstrument(**kwargs)
        self._buf = b""
        super().__init__(link)

    def step(self) -> None:
        self._buf += self._commands(0.05)
        while b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            reply = self.instrument.handle(line)
            if reply:
                self.write(reply)


class ScpiTcpServer:
    """An ``ScpiInstrument`` on a loopback TCP port (a LAN instrument's raw SCPI socket, port 5025 style)."""

    def __init__(self, **kwargs) -> None:
        self.instrument = ScpiInstrument(**kwargs)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(0.1)
                buf = b""
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, _, buf = buf.partition(b"\n")
                        reply = self.instrument.handle(line)
                        if reply:
                            conn.sendall(reply)

    def __enter__(self) -> "ScpiTcpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
