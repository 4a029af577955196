"""The daemon's listening sockets: a Unix socket (mode 0660, a group may query it) and, for a meter on another
machine, a TCP port that only speaks TLS 1.3 with pinned client certificates. Every way binding can fail is one
line naming the address."""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat

from bench.errors import MeterError
from bench.meter.config import parse_listen

log = logging.getLogger(__name__)

BACKLOG = 64


def bind_unix(path: str, group: str | None) -> socket.socket:
    """Bind ``path``, replacing a stale socket but never a live daemon's or a file that is not a socket."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise MeterError(f"socket path {path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
            raise MeterError(f"another meter daemon is serving {path}; stop it first")
        except (ConnectionRefusedError, FileNotFoundError, socket.timeout):
            os.unlink(path)
            log.info("removed stale socket %s", path)
        finally:
            probe.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise MeterError(f"cannot create the meter socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            sock.close()
            os.unlink(path)
            raise MeterError(f"group {group!r} does not exist; create it or pass another --group") from None
        os.chown(path, -1, gid)
    sock.listen(BACKLOG)
    return sock


def bind_tcp(listen: str) -> socket.socket:
    """Bind ``HOST:PORT`` (IPv4 or IPv6); the caller wraps accepted connections in TLS."""
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise MeterError(f"listen address {listen!r}: cannot resolve {host!r} ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        why = {errno.EADDRNOTAVAIL: "no interface of this machine has that address",
               errno.EADDRINUSE: "the port is in use (another daemon?)",
               errno.EACCES: "ports below 1024 need privileges"}.get(exc.errno, exc.strerror)
        raise MeterError(f"cannot listen on {listen}: {why}") from None
    sock.listen(BACKLOG)
    return sock
