"""Serial plumbing the serial drivers share: opening a port and reading a stream in chunks.

pyserial's ``readline`` reads one byte per system call and tops out near 2,000 lines/s; reading whatever is
waiting and decoding it ourselves handles 100k records/s (environment notes, section 6). Between reads the reader
sleeps while the stream fills the tty buffer, so a 1 kHz stream costs a few wake-ups per second, not thousands.
"""

from __future__ import annotations

import logging
import time

import serial

from bench.meter.drivers.base import DeviceGone, Driver

log = logging.getLogger(__name__)

def open_port(url: str, baudrate: int, timeout_s: float) -> serial.Serial:
    """Open a device path (or a pyserial URL such as ``rfc2217://`` or ``socket://``) as a raw 8N1 port."""
    if not url:
        raise DeviceGone("no serial port given: pass --opt port=/dev/ttyACM0 (or a /dev/serial/by-id path)")
    port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s, write_timeout=timeout_s, exclusive=True,
                                 do_not_open=True)
    port.open()
    return port


# The Linux tty layer holds 4 KiB (N_TTY_BUF_SIZE) for a reader that is not reading; past that a USB CDC device is
# throttled and a pty writer blocks. Waking when about 3 KiB have queued takes a third fewer wake-ups than waking at
# 2 KiB and still leaves a quarter of the buffer as margin for jitter in the rate.
TTY_BUFFER_BYTES = 4096
TTY_TARGET_BYTES = 3072
# Every PROBE_EVERY-th read follows the previous one at once, so it blocks until the device's next bytes and stamps
# them as they arrive: a chunk with almost no queueing delay, the kind of clock anchor a device-clock map needs.
PROBE_EVERY = 8
RATE_SPAN_S = 0.02


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


class ChunkReader:
    """Chunked reads of a streaming device: ``read_chunk()`` -> (bytes, host ns when they arrived).

    Raises ``DeviceGone`` after ``silence_s`` without a byte; pyserial raises SerialException (an OSError) when the
    device is unplugged.
    """

    def __init__(self, port: serial.Serial, batch_s: float = 0.02, silence_s: float = 2.0) -> None:
        self.port = port
        self.batch_s = batch_s
        self.silence_s = silence_s
        self._last_byte_ns = time.monotonic_ns()
        self._sleep_s = 0.0  # how long to let the next chunk accumulate
        self._reads = 0
        self._rate = 0.0  # bytes/s, learnt from the reads

    def read_chunk(self) -> tuple[bytes, int]:
        """One wake-up: sleep while the stream fills the buffer, then take everything queued in one read (or block
        for the first byte of a stream that has gone quiet)."""
        if self._sleep_s > 0:
            time.sleep(self._sleep_s)
        waiting = self.port.in_waiting
        data = self.port.read(waiting) if waiting else self.port.read(1)
        now = time.monotonic_ns()
        if data and not waiting:  # we blocked for the first byte: take the rest that came with it
            more = self.port.in_waiting
            if more:
                data += self.port.read(more)
                now = time.monotonic_ns()
        if data:
            self._sleep_s = self._next_sleep(len(data), now)
            self._last_byte_ns = now
        else:
            self._sleep_s = 0.0
            if (now - self._last_byte_ns) / 1e9 > self.silence_s:
                raise DeviceGone(f"serial device {self.port.port} sent nothing for {self.silence_s:g} s")
        return data, now

    def _next_sleep(self, n_bytes: int, now_ns: int) -> float:
        """Sleep until about ``TTY_TARGET_BYTES`` have queued at the stream's byte rate, at most ``batch_s``; a read
        that came back (nearly) full means the link outruns us: read again at once, so nothing backs up. Every
        ``PROBE_EVERY``-th read is a probe: no sleep. The rate is learnt only from reads at least
        ``RATE_SPAN_S`` apart: a probe or a burst says little about it, and a wrong guess would cascade into
        short sleeps."""
        elapsed_s = (now_ns - self._last_byte_ns) / 1e9
        if elapsed_s >= RATE_SPAN_S:
            self._rate = n_bytes / elapsed_s
        self._reads += 1
        if n_bytes >= TTY_BUFFER_BYTES - 256 or self.batch_s <= 0 or self._reads % PROBE_EVERY == 0:
            return 0.0
        return min(self.batch_s, TTY_TARGET_BYTES / self._rate) if self._rate else RATE_SPAN_S

    def reset(self) -> None:
        self._last_byte_ns = time.monotonic_ns()
