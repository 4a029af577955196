"""Serial plumbing the serial drivers share: opening a port and reading it in chunks.

pyserial's ``readline`` reads one byte per system call and tops out near 2,000 lines/s; reading whatever is
waiting and splitting it ourselves handles 100k lines/s (environment notes, section 6). Between small reads the
reader sleeps a few milliseconds so a 1 kHz stream costs tens of wake-ups per second, not thousands.
"""

from __future__ import annotations

import logging
import time

import serial

from bench.meter.drivers.base import DeviceGone, Driver

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096


def open_port(url: str, baudrate: int, timeout_s: float) -> serial.Serial:
    """Open a device path (or a pyserial URL such as ``rfc2217://`` or ``socket://``) as a raw 8N1 port."""
    if not url:
        raise DeviceGone("no serial port given: pass --opt port=/dev/ttyACM0 (or a /dev/serial/by-id path)")
    port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s, write_timeout=timeout_s, exclusive=True,
                                 do_not_open=True)
    port.open()
    return port


# The Linux tty layer buffers about 4 KiB for a reader that is not reading; waking at half of that never loses data.
TTY_HALF_BYTES = 2048


class SerialDriver(Driver):
    """Base of the drivers that own one serial port (``self._port``); closing it is the same for all of them."""

    _port: serial.Serial | None = None

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except OSError:
                pass
        self._port = None


class LineReader:
    """Chunked line reader over an open port: ``read_lines()`` -> (complete lines, host ns when the chunk arrived).

    Raises ``DeviceGone`` after ``silence_s`` without a byte; pyserial raises SerialException (an OSError) when the
    device is unplugged. Lines longer than ``MAX_LINE_BYTES`` are dropped and counted as garbage.
    """

    def __init__(self, port: serial.Serial, batch_s: float = 0.02, silence_s: float = 2.0) -> None:
        self.port = port
        self.batch_s = batch_s
        self.silence_s = silence_s
        self._tail = b""
        self._last_byte_ns = time.monotonic_ns()
        self._sleep_s = 0.0  # how long to let the next chunk accumulate
        self.overlong = 0

    def read_chunk(self) -> tuple[bytes, int]:
        if self._sleep_s > 0:
            time.sleep(self._sleep_s)  # let a slow stream accumulate: fewer wake-ups, same data
        waiting = self.port.in_waiting
        data = self.port.read(waiting if waiting else 1)
        now = time.monotonic_ns()
        if data:
            if not waiting:  # we blocked for the first byte: take the rest that came with it
                more = self.port.in_waiting
                if more:
                    data += self.port.read(more)
                    now = time.monotonic_ns()
            self._sleep_s = self._next_sleep(len(data), now)
            self._last_byte_ns = now
        else:
            self._sleep_s = 0.0
            if (now - self._last_byte_ns) / 1e9 > self.silence_s:
                raise DeviceGone(f"serial device {self.port.port} sent nothing for {self.silence_s:g} s")
        return data, now

    def _next_sleep(self, n_bytes: int, now_ns: int) -> float:
        """Sleep until about half the tty buffer has filled at the observed byte rate, at most ``batch_s``; a read
        that already filled half of it means the link is busy: read again at once, so nothing backs up."""
        if n_bytes >= TTY_HALF_BYTES or self.batch_s <= 0:
            return 0.0
        elapsed_s = max((now_ns - self._last_byte_ns) / 1e9, 1e-4)
        rate = n_bytes / elapsed_s
        return min(self.batch_s, TTY_HALF_BYTES / rate if rate > 0 else self.batch_s)

    def read_lines(self) -> tuple[list[bytes], int]:
        data, now = self.read_chunk()
        if not data:
            return [], now
        buf = self._tail + data
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > MAX_LINE_BYTES:
            self._tail = b""
            self.overlong += 1
        return lines, now

    def reset(self) -> None:
        self._tail = b""
        self._last_byte_ns = time.monotonic_ns()
