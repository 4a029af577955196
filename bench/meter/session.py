"""One client connection of the daemon: TLS handshake (network clients), hello, then request lines answered in
order. Nothing a client does can stop the daemon or hold a slot for long:

- the hello (and the TLS handshake) must come within ``hello_timeout_s`` of the accept;
- a session that sends no complete request for ``idle_timeout_s`` is closed (a slow drip of bytes without a
  newline does not count as activity), and when every slot is taken the longest-idle session gives its slot up;
- every send has a deadline (``send_timeout_s``) and a failed send ends only this connection;
- bad input gets an error reply and the connection stays open; only a failed handshake closes it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable

from bench.meter import DAEMON_VERSION, protocol as P
from bench.meter import tls

if TYPE_CHECKING:
    from bench.meter.daemon import Daemon

log = logging.getLogger(__name__)

Handler = Callable[["Daemon", "Connection", Any], dict | None]
HANDLERS: dict[str, Handler] = {}


def handler(op: str) -> Callable[[Handler], Handler]:
    """Register the function answering ``op`` (one per op)."""

    def deco(fn: Handler) -> Handler:
        if op in HANDLERS:
            raise ValueError(f"handler for {op!r} registered twice")
        HANDLERS[op] = fn
        return fn

    return deco


class Gone(Exception):
    """This connection is over (peer left, deadline passed, send failed); the daemon carries on."""


class Connection:
    def __init__(self, daemon: "Daemon", sock: socket.socket, peer: str,
                 tls_ctx: tuple[ssl.SSLContext, tls.Identity] | None = None) -> None:
        self.daemon = daemon
        self.sock = sock
        self.peer = peer
        self.tls_ctx = tls_ctx
        self.accepted = time.monotonic()
        self.last_request = self.accepted
        self.in_request = False
        self.hello_done = False
        self.evicted = False
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Idempotent; safe from another thread (the admitting one evicts idle sessions this way)."""
        if not self._closed:
            self._closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def idle_s(self, now: float) -> float:
        return 0.0 if self.in_request else now - self.last_request

    def evict(self) -> None:
        """From the admitting thread: end this idle session. Only its reading side is shut here; its own thread
        then tells the client why and closes (one thread per socket: TLS allows no other)."""
        self.evicted = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            self.close()

    def send(self, message: Any) -> None:
        """Send one message within the send deadline, or end this connection."""
        try:
            self.sock.settimeout(self.daemon.config.send_timeout_s)
            self.sock.sendall(P.encode(message))
        except (OSError, ValueError) as exc:  # ValueError: the socket was closed under us
            raise Gone(f"send failed: {exc}") from None

    def reply(self, rid: int | None, result: dict, rx_ns: int) -> None:
        self.send(P.Reply(rid, result, rx_ns=rx_ns, tx_ns=self.daemon.clock.now_ns()))

    def _recv(self) -> bytes:
        cfg = self.daemon.config
        deadline = (self.accepted + cfg.hello_timeout_s) if not self.hello_done else (self.last_request + cfg.idle_timeout_s)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        try:
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise
        except (OSError, ValueError) as exc:
            raise Gone(f"recv failed: {exc}") from None
        if not chunk:
            if self.evicted:
                self._end("evicted: idle while every slot was taken; reconnect")
            raise Gone("peer closed")
        return chunk

    def _end(self, reason: str) -> None:
        try:
            self.send(P.EndEvent(reason))
        except Gone:
            pass

    # -- life -----------------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self.tls_ctx is not None:
                self._handshake()
            self._loop()
        except socket.timeout:
            self._timed_out()
        except Gone as exc:
            log.debug("connection %s: %s", self.peer, exc)
        except Exception:  # noqa: BLE001 - never let one connection take the daemon down
            log.exception("connection %s failed", self.peer)
        finally:
            self.close()
            self.daemon.forget(self)

    def _handshake(self) -> None:
        ctx, ident = self.tls_ctx
        wrapped = ctx.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock = wrapped
        try:
            wrapped.settimeout(max(self.accepted + self.daemon.config.hello_timeout_s - time.monotonic(), 0.01))
            wrapped.do_handshake()
            tls.check_peer(wrapped, ident)
        except Exception as exc:  # noqa: BLE001 - SSL, socket, pinning: refuse and log once
            self.daemon.counters.tls_failures += 1
            log.warning("TLS client %s refused: %s", self.peer, str(exc).splitlines()[0][:200])
            raise Gone("TLS handshake failed") from None

    def _timed_out(self) -> None:
        if not self.hello_done:
            self.daemon.counters.hello_timeouts += 1
            limit = self.daemon.config.hello_timeout_s
            try:
                self.send(P.ErrorReply(None, P.HELLO_TIMEOUT, f"no hello within {limit:g} s of connecting"))
            except Gone:
                pass
        else:
            self.daemon.counters.idle_closed += 1
            log.info("closing %s: no request for %.0f s", self.peer, self.daemon.config.idle_timeout_s)
            self._end(f"idle: no request for {self.daemon.config.idle_timeout_s:g} s")

    def _loop(self) -> None:
        buf = b""
        discarding = False
        while not self.daemon.stop_event.is_set():
            buf += self._recv()
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > P.MAX_LINE_BYTES:
                        if not discarding:
                            self._error(None, P.ProtocolError(P.TOO_LARGE, f"request exceeds {P.MAX_LINE_BYTES} bytes without a newline"))
                        discarding = True
                        buf = b""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if discarding:
                    discarding = False  # the tail of the oversized request
                    continue
                if line.strip() and not self._handle_line(line):
                    return

    def _error(self, rid: int | None, exc: P.ProtocolError) -> None:
        self.daemon.counters.request_errors += 1
        self.send(P.ErrorReply(rid, exc.code, exc.message))

    def _handle_line(self, line: bytes) -> bool:
        """Answer one line; False ends the connection (failed handshake, no slot)."""
        rx_ns = self.daemon.clock.now_ns()
        self.daemon.counters.requests += 1
        self.last_request = time.monotonic()
        if not self.hello_done:
            return self._hello(line)
        try:
            request = P.decode_request(line)
        except P.ProtocolError as exc:
            self._error(P.request_id(line), exc)
            return True
        self.in_request = True
        try:
            result = HANDLERS[request.op](self.daemon, self, request)
        except P.ProtocolError as exc:
            self._error(request.id, exc)
            return True
        except Gone:
            raise
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            log.exception("handler %s failed", request.op)
            self._error(request.id, P.ProtocolError(P.INTERNAL, f"{type(exc).__name__}: {exc}"[:200]))
            return True
        finally:
            self.in_request = False
            self.last_request = time.monotonic()
        if result is not None:
            self.reply(request.id, result, rx_ns)
        return True

    def _hello(self, line: bytes) -> bool:
        try:
            P.decode_hello(line, expect_role="client")
        except P.ProtocolError as exc:
            self._error(P.request_id(line), exc)
            return exc.code != P.VERSION_MISMATCH
        refusal = self.daemon.admit(self)
        if refusal:
            self.daemon.counters.refused_busy += 1
            self.send(P.ErrorReply(None, P.BUSY, refusal))
            try:
                self.sock.shutdown(socket.SHUT_WR)  # the refusal is read before the close, never a reset
            except OSError:
                pass
            return False
        self.hello_done = True
        self.send(P.Hello(role="daemon", software=f"bench-meter-daemon/{DAEMON_VERSION}", clock=self.daemon.clock_identity))
        return True
