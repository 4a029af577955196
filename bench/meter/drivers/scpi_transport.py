"""How the SCPI driver reaches an instrument: a serial port or pyserial URL (``socket://host:port`` is a raw LAN
socket), or a PyVISA resource (``TCPIP0::host::5025::SOCKET``, ``TCPIP0::host::inst0::INSTR``, ``USB0::...::INSTR``,
``ASRL...``) through pyvisa-py or any VISA library. Both give the driver the same three verbs on reply lines."""

from __future__ import annotations

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
    """pyserial, with our own line splitting (pyserial's readline is one system call per byte)."""

    def __init__(self, url: str, baudrate: int, terminator: bytes) -> None:
        self.port = open_port(url, baudrate, timeout_s=0.05)
        self.port.reset_input_buffer()
        self.term = terminator
        self._buf = b""

    def write_line(self, command: str) -> None:
        self.port.write(command.encode("ascii") + self.term)

    def read_line(self, timeout_s: float) -> bytes | None:
        end = self.term[-1:]
        deadline = time.monotonic() + timeout_s
        while end not in self._buf:
            if time.monotonic() > deadline:
                return None
            self._buf += self.port.read(self.port.in_waiting or 1)
            if len(self._buf) > MAX_REPLY_BYTES:
                self._buf = b""
                raise ValueError(f"more than {MAX_REPLY_BYTES} bytes without a terminator")
        line, _, self._buf = self._buf.partition(end)
        return line.rstrip(b"\r")

    def discard_waiting(self) -> int:
        waiting = self._buf + (self.port.read(self.port.in_waiting) if self.port.in_waiting else b"")
        self._buf = b""
        return waiting.count(self.term[-1:])

    def close(self) -> None:
        try:
            self.port.close()
        except OSError:
            pass


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
            raise DeviceGone(f"scpi: cannot open VISA resource {resource!r} ({library}): {exc}") from None
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
