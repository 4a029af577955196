"""Opening a byte stream to a meter daemon: a Unix socket on this machine, or TLS 1.3 to a meter host.

``open_stream`` honours its timeout whatever the failure: a Unix socket whose listen backlog is full answers a
non-blocking connect with EAGAIN at once, so that is retried (with backoff) until the deadline rather than
reported as a failure. Errors come in two kinds: ``Unreachable`` (nothing there yet, busy, timed out: worth
retrying) and plain ``MeterError`` (a certificate that is not pinned: retrying cannot help).
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

import tenacity

from bench.errors import MeterError
from bench.meter import tls
from bench.meter.address import MeterAddress


class Unreachable(MeterError):
    """The daemon is not there (yet), refused us for now, or did not answer in time."""


class Busy(Unreachable):
    """The daemon is there but has no free slot (or is stopping); a moment later it may have one."""


def _connect_unix(path: str, deadline: float) -> socket.socket:
    def attempt() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            return sock
        except BaseException:
            sock.close()
            raise

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, BlockingIOError) or getattr(e, "errno", None) == errno.EAGAIN),
        wait=tenacity.wait_exponential(multiplier=0.005, max=0.1),
        stop=tenacity.stop_before_delay(max(deadline - time.monotonic(), 0.0)),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise Unreachable(f"no meter daemon at {path} ({exc.strerror}); start one with `bench meter serve`") from None
    except (BlockingIOError, socket.timeout):
        raise Unreachable(f"meter daemon at {path} did not accept the connection in time (backlog full)") from None
    except OSError as exc:
        raise Unreachable(f"cannot connect to the meter daemon at {path}: {exc.strerror or exc}") from None


def _connect_tls(address: MeterAddress, deadline: float) -> socket.socket:
    ctx, ident = tls.client_context(address.tls_dir)
    where = f"meter daemon at {address}"
    try:
        raw = socket.create_connection((address.host, address.port), timeout=max(deadline - time.monotonic(), 0.001))
    except socket.timeout:
        raise Unreachable(f"{where} did not answer within the connect timeout") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the {where}: {exc.strerror or exc}") from None
    try:
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        sock = ctx.wrap_socket(raw)
        tls.check_peer(sock, ident)
        return sock
    except ssl.SSLError as exc:
        raw.close()
        raise MeterError(tls.explain(exc, where, ident)) from None
    except (socket.timeout, ConnectionError) as exc:
        raw.close()
        raise Unreachable(f"TLS handshake with the {where} did not complete: {exc}") from None
    except MeterError:
        raw.close()
        raise


def open_stream(address: MeterAddress, timeout_s: float) -> socket.socket:
    """A connected (and for TLS, authenticated) socket to the daemon, within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    return _connect_tls(address, deadline) if address.remote else _connect_unix(str(address.path), deadline)
