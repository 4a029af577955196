"""A streamed HTTP reply body read straight from the socket, each read stamped with the kernel's arrival time.

Why: while an answer streams, reading it is the runner's only work on the measured device, and a wake-up per token
(Ollama sends each token as its own HTTP chunk) was most of the runner's CPU then. The energy windows need exact
times for two moments only, the first token and the end, so once the first token is in (``gathering``), the kernel
is asked not to wake the reader before ``GATHER_BYTES`` have queued (``SO_RCVLOWAT``; ``tcp_data_ready`` in Linux's
net/ipv4/tcp_input.c skips the wake-up below it), or ``GATHER_WAIT_S`` have passed: wake-ups follow bytes, not
tokens, and they are socket wake-ups, not timer ones (on the machines measured a timer wake-up cost about three
times as much CPU). What keeps the stamps exact is the kernel: with ``SO_TIMESTAMPNS`` a TCP read carries the
arrival time of the last segment it returns (``CLOCK_REALTIME``; ``tcp_recv_timestamp`` in net/ipv4/tcp.c),
converted here to ``CLOCK_MONOTONIC``, so a chunk that waited in the socket buffer is stamped when it arrived, not
when it was read. Where the kernel gives no stamp (TLS, where the record layer sits between the segments and the
bytes; a kernel or socket without it) every read is immediate and stamped when it returns, as a read per chunk
always was.

``http.client`` sends the request and parses the status line and headers; the body's framing (chunked, a
``Content-Length``, or until the server closes) is decoded here (RFC 9112 sections 6 and 7.1).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import time

from bench.backends.stream import DeadlinePassed

SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD, include/uapi/asm-generic/socket.h (x86, arm, arm64); Python has no name
# Once tokens flow: wake for about ten of Ollama's ~100-byte token lines, or after GATHER_WAIT_S, whichever is first.
# The answer's end wakes the reader at once when the server closes the connection behind it (the Ollama backend asks
# it to), else up to GATHER_WAIT_S late; its stamp is the arrival either way.
GATHER_BYTES = 1024
GATHER_WAIT_S = 2.0
READ_BYTES = 65536
_MAX_SIZE_LINE = 4096  # a chunk-size line (hex size, extensions) longer than this is not HTTP framing


class BodyError(Exception):
    """The body broke its framing, or the connection closed before the body was complete; one line."""


class Chunked:
    """Chunked transfer coding (RFC 9112 section 7.1): ``size[;ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # data bytes still due in the current chunk
        self._state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.done = False
        self.extra = b""  # bytes after the body (none on a well-behaved keep-alive connection)

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        buf = self._buf
        while buf and not self.done:
            if self._state == "data":
                take = min(self._left, len(buf))
                out += buf[:take]
                del buf[:take]
                self._left -= take
                if self._left == 0:
                    self._state = "crlf"
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_SIZE_LINE:
                    raise BodyError(f"chunked body: no line end within {_MAX_SIZE_LINE} bytes")
                break
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self._state == "crlf":
                if line:
                    raise BodyError(f"chunked body: {len(line)} bytes where a chunk's closing CRLF belongs")
                self._state = "size"
            elif self._state == "size":
                self._left = _chunk_size(line)
                self._state = "data" if self._left else "trailer"
            elif not line:  # the empty line that ends the trailer section
                self.done = True
        if self.done:
            self.extra = bytes(buf)
            buf.clear()
        return bytes(out)

    def at_eof(self) -> None:
        if not self.done:
            raise BodyError("connection closed before the chunked body ended")


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t")
    if not size or size.strip(b"0123456789abcdefABCDEF"):
        raise BodyError(f"chunked body: bad chunk-size line {line[:40]!r}")
    return int(size, 16)


class Sized:
    """A body of ``Content-Length`` bytes."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.done = length == 0
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        take, self.extra = data[:self._left], data[self._left:]
        self._left -= len(take)
        self.done = self._left == 0
        return take

    def at_eof(self) -> None:
        if not self.done:
            raise BodyError(f"connection closed {self._left} bytes before the body's Content-Length")


class UntilClose:
    """A body that ends when the server closes the connection (no length, not chunked)."""

    done = False
    extra = b""

    def feed(self, data: bytes) -> bytes:
        return data

    def at_eof(self) -> None:
        self.done = True


def enable_arrival_stamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp received segments; False where it cannot (TLS, not Linux, refused)."""
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "recvmsg"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def arrival_ns(ancillary: list[tuple[int, int, bytes]], now_ns: int) -> int | None:
    """The kernel's arrival stamp of a read (``CLOCK_REALTIME``) on ``CLOCK_MONOTONIC``, or None without one.

    The two clocks differ by a constant (both are slewed alike; only a step of the wall clock changes it), read
    here next to ``now_ns``; a stamp that lands after its own read (a step in between) is clamped to the read.
    """
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) in (8, 16):
            sec, nsec = struct.unpack("qq" if len(raw) == 16 else "ii", raw)
            offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - now_ns
            return min(sec * 1_000_000_000 + nsec - offset, now_ns)
    return None


class BodyReader:
    """The body of ``resp`` from ``sock``, read by ``read()``: (arrival stamp, payload) per read until ``done``."""

    def __init__(self, sock: socket.socket, resp: http.client.HTTPResponse) -> None:
        self._sock = sock
        self._resp = resp
        self.stamped = enable_arrival_stamps(sock)
        self._gathering = False
        if resp.chunked:
            self._framing: Chunked | Sized | UntilClose = Chunked()
        elif resp.length is not None:
            self._framing = Sized(resp.length)
        else:
            self._framing = UntilClose()
        self._early = self._take_buffered()
        self._last_ns = time.monotonic_ns()  # the early bytes came in the headers' read, just now

    @property
    def done(self) -> bool:
        return self._framing.done

    @property
    def reusable(self) -> bool:
        """The connection can carry another request: the body ended cleanly with nothing after it."""
        return self._framing.done and not self._framing.extra and not isinstance(self._framing, UntilClose) \
            and not self._resp.will_close

    @property
    def gathering(self) -> bool:
        return self._gathering

    @gathering.setter
    def gathering(self, on: bool) -> None:
        """Set by the caller once the moments that need a prompt read are past (and unset before one is due)."""
        on = on and self.stamped
        if on != self._gathering:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, GATHER_BYTES if on else 1)
            self._gathering = on

    def read(self, deadline_ns: int) -> tuple[int, bytes]:
        """One read's payload (possibly empty: framing only, or nothing came while gathering) and when its last
        byte arrived (host monotonic ns).

        Raises ``DeadlinePassed`` when the wait runs into ``deadline_ns``, ``BodyError`` on broken framing or an
        early close, ``OSError`` (``ConnectionError``) from the socket.
        """
        if self._early:
            data, self._early = self._early, b""
            return self._last_ns, self._framing.feed(data)
        remaining = (deadline_ns - time.monotonic_ns()) / 1e9
        if remaining <= 0:
            raise DeadlinePassed()
        wait = min(remaining, GATHER_WAIT_S) if self._gathering else remaining
        self._sock.settimeout(wait)
        try:
            data, ancillary = self._receive()
        except TimeoutError:
            if wait == remaining:
                raise DeadlinePassed() from None
            self._sock.settimeout(0)  # GATHER_WAIT_S passed: take what is there, below the low-water mark
            try:
                data, ancillary = self._receive()
            except BlockingIOError:
                return self._last_ns, b""
        now = time.monotonic_ns()
        stamp = arrival_ns(ancillary, now)
        # stamps never go backwards: bytes read after the early ones may have arrived before that first read ended
        self._last_ns = max(stamp if stamp is not None else now, self._last_ns)
        if not data:
            self._framing.at_eof()
            return self._last_ns, b""
        return self._last_ns, self._framing.feed(data)

    def _receive(self) -> tuple[bytes, list]:
        if self.stamped:
            data, ancillary, _, _ = self._sock.recvmsg(READ_BYTES, 64)
            return data, ancillary
        return self._sock.recv(READ_BYTES), []

    def _take_buffered(self) -> bytes:
        """What ``http.client``'s buffered reader already holds past the headers, without waiting for more."""
        self._sock.settimeout(0)
        try:
            return self._resp.fp.read1(READ_BYTES) or b""
        except ssl.SSLWantReadError:
            return b""

    def close(self) -> None:
        """Let ``http.client`` consider the reply finished (the socket stays with the connection, which must not
        keep the low-water mark: the next reply's headers would wait for it)."""
        try:
            self.gathering = False
        except OSError:
            pass  # a socket that broke is closed by the caller
        self._resp.close()


__all__ = ["BodyError", "BodyReader", "Chunked", "GATHER_BYTES", "GATHER_WAIT_S", "Sized", "UntilClose", "arrival_ns",
           "enable_arrival_stamps"]
