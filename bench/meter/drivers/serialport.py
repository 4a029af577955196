"""Serial plumbing the serial drivers share: opening a port and reading a stream in chunks.

pyserial's ``readline`` reads one byte per system call and tops out near 2,000 lines/s; reading whatever is
waiting and decoding it ourselves handles 100k records/s (environment notes, section 6). Between reads the reader
sleeps while the stream fills the tty buffer, and hands its reads over in chunks of about ``batch_s``, so a 1 kHz
stream costs a few wake-ups and about two hand-overs per second, not thousands.
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
# throttled and a pty writer blocks. Taking what has queued when about 3 KiB are there takes a third fewer wake-ups
# than at 2 KiB and still leaves a quarter of the buffer as margin for jitter in the rate.
TTY_BUFFER_BYTES = 4096
TTY_TARGET_BYTES = 3072
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
    """Chunked reads of a streaming device: ``read_chunk()`` -> (bytes, host ns when the last of them arrived).

    A chunk is what came in about ``batch_s``: the bytes are taken from the tty whenever about
    ``TTY_TARGET_BYTES`` have queued (its buffer holds 4 KiB), and the chunk ends with a probe, a read that waits
    for the device's next bytes, so its last bytes are stamped as they arrive: every chunk carries a clock anchor
    with almost no queueing delay, the kind a device-clock map needs. The driver's work per chunk (decoding, the
    clock map, the daemon's buffer and raw log) is done once per ``batch_s``, not once per tty-full: on the machines
    measured that work, not the wake-up, was most of the CPU of a read.

    Raises ``DeviceGone`` after ``silence_s`` without a byte; pyserial raises SerialException (an OSError) when the
    device is unplugged.
    """

    def __init__(self, port: serial.Serial, batch_s: float = 0.02, silence_s: float = 2.0) -> None:
        self.port = port
        self.batch_s = batch_s
        self.silence_s = silence_s
        self._last_byte_ns = time.monotonic_ns()
        self._handed_ns = self._last_byte_ns  # when the last chunk was handed over
        self._rate = 0.0  # bytes/s, learnt from the reads

    def read_chunk(self) -> tuple[bytes, int]:
        """One chunk: sleep while the stream fills the tty, take what queued (as often as the tty needs), then
        probe."""
        parts = []
        until = self._handed_ns + int(self.batch_s * 1e9)
        while True:
            wait_ns = until - time.monotonic_ns()
            if wait_ns <= 0:
                break
            time.sleep(min(wait_ns / 1e9, TTY_TARGET_BYTES / self._rate if self._rate else RATE_SPAN_S))
            waiting = self.port.in_waiting
            if waiting:
                parts.append(self.port.read(waiting))
                self._learn_rate(waiting, time.monotonic_ns())
                if waiting >= TTY_BUFFER_BYTES - 256:  # (nearly) full: the link outruns the estimate
                    self._rate *= 2
        data, now = self.probe()
        parts.append(data)
        self._handed_ns = now
        return b"".join(parts), now

    def probe(self) -> tuple[bytes, int]:
        """Block for the device's next bytes (up to the port's timeout) and take what came with them."""
        data = self.port.read(1)
        now = time.monotonic_ns()
        if data:
            more = self.port.in_waiting
            if more:
                data += self.port.read(more)
                now = time.monotonic_ns()
            self._last_byte_ns = now
        elif (now - self._last_byte_ns) / 1e9 > self.silence_s:
            raise DeviceGone(f"serial device {self.port.port} sent nothing for {self.silence_s:g} s")
        return data, now

    def _learn_rate(self, n_bytes: int, now_ns: int) -> None:
        """The stream's byte rate, learnt only from reads at least ``RATE_SPAN_S`` after the previous bytes (a
        read just after a probe says little about it, and a wrong guess would cascade into short sleeps)."""
        elapsed_s = (now_ns - self._last_byte_ns) / 1e9
        if elapsed_s >= RATE_SPAN_S:
            self._rate = n_bytes / elapsed_s
        self._last_byte_ns = now_ns

    def reset(self) -> None:
        self._last_byte_ns = self._handed_ns = time.monotonic_ns()
