"""Where the meter daemon is: the one owner of its address.

Resolution order, the same for the CLI, the runner and nightly: the spec's ``meter.socket`` (or a command-line
``--socket``), then ``$BENCH_METER_SOCKET``, then ``/run/edge-llm-bench/meter.sock``. An address is a Unix socket
path, or ``tls://HOST:PORT`` for a daemon on another machine (the meter host of the paper's set-up), reached with
this machine's key and the daemon's pinned certificate from ``$BENCH_METER_TLS_DIR`` (default
``~/.config/edge-llm-bench/meter-tls``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bench.meter.config import parse_listen

ENV_SOCKET = "BENCH_METER_SOCKET"
ENV_TLS_DIR = "BENCH_METER_TLS_DIR"
DEFAULT_SOCKET = "/run/edge-llm-bench/meter.sock"
DEFAULT_TLS_DIR = "~/.config/edge-llm-bench/meter-tls"
TLS_SCHEME = "tls://"


@dataclass(frozen=True)
class MeterAddress:
    """A Unix socket (``path``) or a TLS endpoint (``host``, ``port``, with the keys in ``tls_dir``)."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    tls_dir: str | None = None

    @property
    def remote(self) -> bool:
        return self.host is not None

    def __str__(self) -> str:
        if self.remote:
            host = f"[{self.host}]" if ":" in str(self.host) else self.host
            return f"{TLS_SCHEME}{host}:{self.port}"
        return str(self.path)


def parse(text: str, env: Mapping[str, str] | None = None) -> MeterAddress:
    """A path (``unix:`` prefix optional) or ``tls://HOST:PORT``."""
    env = os.environ if env is None else env
    text = str(text).strip()
    if text.startswith(TLS_SCHEME):
        host, port = parse_listen(text[len(TLS_SCHEME):])
        return MeterAddress(host=host, port=port, tls_dir=resolve_tls_dir(None, env))
    return MeterAddress(path=text.removeprefix("unix:"))


def resolve_tls_dir(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """This machine's TLS key directory: given, else ``$BENCH_METER_TLS_DIR``, else the default."""
    env = os.environ if env is None else env
    return str(Path(explicit or env.get(ENV_TLS_DIR) or DEFAULT_TLS_DIR).expanduser())


def resolve(explicit: str | None = None, env: Mapping[str, str] | None = None) -> MeterAddress:
    """The spec's or command line's value, else the environment, else the default."""
    env = os.environ if env is None else env
    return parse(explicit or env.get(ENV_SOCKET) or DEFAULT_SOCKET, env)
