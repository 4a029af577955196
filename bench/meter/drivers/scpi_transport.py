"""How the SCPI driver reaches an instrument: a serial port or pyserial URL (``socket://host:port`` is a raw LAN
socket), or a PyVISA resource (``TCPIP0::host::5025::SOCKET``, ``TCPIP0::host::inst0::INSTR``, ``USB0::...::INSTR``,
``ASRL...``) through pyvisa-py or any VISA library. Both give the driver the same three verbs on reply lines."""

from __future__ import annotations

import os
import select
import time
from typing import Protocol

from bench.errors import MeterError
from bench.meter.drivers.base import DeviceGone
from bench.meter.drivers.serialport import open_port

MAX_REPLY_BYTES = 4096


class Transport(Protocol):
    def write_line(self, command: str) -> None: ...

    def read_line(self, timeout_s: float) -> bytes | None:
        """One reply line without its terminator, or None when nothing complete arrived in time."""

    def discard_waiting(self) -> int:
        """Drop input that is already waiting (a reply nobody is waiting for); returns how many lines."""

    def close(self) -> None: ...


class SerialTransport:
    """pyserial opens and configures the port (a device, or a ``socket://`` URL); lines then go through its file
    descriptor directly: one select and one read per reply. pyserial's own read/write path (timeouts, ``in_waiting``
    ioctls, a select per call) cost about 120 us of CPU per query on a small machine, a fifth of the driver's share
    at 10 Hz (tests/benchmarks/bench_drivers.py, cpu)."""

    def __init__(self, url: str, baudrate: int, terminator: bytes) -> None:
        self.port = open_port(url, baudrate, timeout_s=0.05)
        try:
            self.fd = self.port.fileno()
        except (AttributeError, NotImplementedError, OSError):
            self.close()
            raise MeterError(f"scpi: {url!r} gives no file descriptor; use a device path, socket://host:port or "
                             "a VISA resource") from None
        self.port.reset_input_buffer()
        self.url = url
        self.term = terminator
        self._buf = b""

    def write_line(self, command: str) -> None:
        data = command.encode("ascii") + self.term
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                if not select.select([], [self.fd], [], 1.0)[1]:
                    raise DeviceGone(f"scpi: {self.url} takes no input") from None

    def _receive(self, timeout_s: float) -> bool:
        """Whatever arrives within ``timeout_s`` (0: only what is already waiting), appended to the buffer."""
        if not select.select([self.fd], [], [], max(timeout_s, 0.0))[0]:
            return False
        try:
            data = os.read(self.fd, MAX_REPLY_BYTES)
        except BlockingIOError:
            return False
        if not data:
            raise DeviceGone(f"scpi: {self.url} closed the connection")
        self._buf += data
        return True

    def read_line(self, timeout_s: float) -> bytes | None:
        end = self.term[-1:]
        deadline = time.monotonic() + timeout_s
        while end not in self._buf:
            if not self._receive(deadline - time.monotonic()) and time.monotonic() >= deadline:
                return None
            if len(self._buf) > MAX_REPLY_BYTES:
                self._buf = b""
                raise ValueError(f"more than {MAX_REPLY_BYTES} bytes without a terminator")
        line, _, self._buf = self._buf.partition(end)
        return line.rstrip(b"\r")

    def discard_waiting(self) -> int:
        for _ in range(16):  # a bounded drain: an instrument that never stops talking is not waited out here
            if not self._receive(0):
                break
        waiting, self._buf = self._buf, b""
        return waiting.count(self.term[-1:])

    def close(self) -> None:
        try:
            self.port.close()
        except OSError:
            pass


def _one_line(resource: str, exc: Exception) -> str:
    """pyvisa-py explains a missing USB stack in a paragraph; its last line, and for a USB resource what to
    install (pyvisa-py's USBTMC sessions run on PyUSB, which needs libusb)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    if resource.upper().startswith("USB") and any(k in str(exc) for k in ("PyUSB", "backend", "No module named 'usb'")):
        return f"{lines[-1]}: USBTMC needs PyUSB and libusb (pip install pyusb; Debian: apt-get install libusb-1.0-0)"
    return lines[-1]


class VisaTransport:
    """A PyVISA message-based resource; ``library`` is ``@py`` (pyvisa-py), ``path.yaml@sim`` or a VISA path."""

    def __init__(self, resource: str, library: str, terminator: str, baudrate: int) -> None:
        try:
            import pyvisa
        except ImportError:
            raise MeterError("the scpi driver's resource= option needs PyVISA: pip install pyvisa pyvisa-py") from None
        self._errors = (pyvisa.errors.VisaIOError, OSError)
        try:
            self.rm = pyvisa.ResourceManager(library)
            self.inst = self.rm.open_resource(resource, read_termination=terminator, write_termination=terminator)
        except (pyvisa.errors.Error, OSError, ValueError) as exc:
            raise DeviceGone(f"scpi: cannot open VISA resource {resource!r} ({library}): {_one_line(resource, exc)}") \
                from None
        if resource.upper().startswith("ASRL"):
            self.inst.baud_rate = baudrate

    def write_line(self, command: str) -> None:
        try:
            self.inst.write(command)
        except self._errors as exc:
            raise DeviceGone(f"scpi: write to {self.inst.resource_name} failed: {exc}") from None

    def read_line(self, timeout_s: float) -> bytes | None:
        self.inst.timeout = max(1, int(timeout_s * 1000))
        try:
            return self.inst.read_raw().rstrip(b"\r\n")
        except self._errors:
            return None

    def discard_waiting(self) -> int:
        waiting = getattr(self.inst, "bytes_in_buffer", 0) if self.inst.resource_name.upper().startswith("ASRL") else 0
        if waiting:
            return self.inst.read_bytes(waiting).count(b"\n")
        return 0

    def close(self) -> None:
        try:
            self.inst.close()
            self.rm.close()
        except Exception:  # noqa: BLE001 - closing an instrument that is gone
            pass
