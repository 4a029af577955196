"""What a meter daemon is told at start, as one typed record with a TOML form.

The same file drives every way a daemon starts: ``bench meter serve`` builds the record from its options, the
runner's local daemon and the systemd unit on a meter host both run ``python -m bench.meter --config FILE``. So a
daemon's settings are written down once, and a bad key or value is one line naming it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from bench.errors import MeterError

DEFAULT_PORT = 7461
RUNTIME_CONFIG, RUNTIME_SOCKET = "daemon.toml", "meter.sock"  # what a local daemon's private directory holds


@dataclass(frozen=True)
class DaemonConfig:
    """Everything a daemon needs; ``socket_path`` and ``listen`` may both be set (local status + remote runner)."""

    driver: str
    options: dict[str, str] = field(default_factory=dict)
    socket_path: str | None = None
    listen: str | None = None  # HOST:PORT, TLS 1.3 with pinned client certificates only
    tls_dir: str | None = None  # the daemon's key/cert and the trusted client certs (see bench/meter/tls.py)
    group: str | None = None
    log_dir: str | None = None
    buffer_s: float = 1260.0  # the query horizon: the paper's 20-minute answer timeout and a minute
    max_buffer_mb: float = 20.0  # the ring never takes more (RSS ~40 MiB + this); at high rates the horizon shrinks
    gap_s: float | None = None  # None: max(10 sample periods, 20 ms)
    rotate_mb: float = 64.0
    keep_files: int = 0
    backoff_max_s: float = 5.0
    hello_timeout_s: float = 2.0  # a connection that has not said hello by then is closed
    idle_timeout_s: float = 600.0  # a connection silent this long is closed (clients reconnect)
    send_timeout_s: float = 5.0  # a client that does not read its replies is dropped after this
    evict_idle_s: float = 5.0  # with every slot taken, a session idle this long gives its slot to a newcomer
    parent_pid: int | None = None  # the process that started it (its parent): a run's daemon exits when it ends
    runtime_dir: str | None = None  # made for this daemon alone (socket, config): emptied and removed at exit
    clock_offset_s: float = 0.0  # tests only: stamp everything on a synthetic meter-host clock
    clock_drift_ppm: float = 0.0

    def __post_init__(self) -> None:
        if not self.socket_path and not self.listen:
            raise MeterError("meter daemon: nothing to serve on; give a Unix socket path or --listen HOST:PORT")
        if self.listen:
            parse_listen(self.listen)
            if not self.tls_dir:
                raise MeterError(f"meter daemon: --listen {self.listen} needs --tls-dir (TLS with pinned client "
                                 f"certificates); an open port without authentication is never served")
        for name in ("buffer_s", "max_buffer_mb", "rotate_mb", "hello_timeout_s", "idle_timeout_s", "send_timeout_s",
                     "evict_idle_s"):
            if not getattr(self, name) > 0:
                raise MeterError(f"meter daemon: {name} must be positive, got {getattr(self, name)}")
        if abs(self.clock_drift_ppm) >= 1000:
            raise MeterError(f"meter daemon: clock_drift_ppm must be within +-1000, got {self.clock_drift_ppm}")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); anything else is one line naming the value."""
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MeterError(f"listen address {text!r}: expected HOST:PORT, e.g. 0.0.0.0:{DEFAULT_PORT} or [::]:{DEFAULT_PORT}")
    return host, int(port)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(DaemonConfig)}


def from_dict(data: dict[str, Any], where: str = "meter config") -> DaemonConfig:
    known = _fields()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MeterError(f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(sorted(known))}")
    if "driver" not in data:
        raise MeterError(f"{where}: key 'driver' is required")
    values = dict(data)
    values["options"] = {str(k): str(v) for k, v in dict(values.get("options", {})).items()}
    try:
        return DaemonConfig(**values)
    except TypeError as exc:
        raise MeterError(f"{where}: {exc}") from None


def to_dict(config: DaemonConfig) -> dict[str, Any]:
    """Only what differs from the defaults (TOML has no null), so a written file stays short and readable."""
    out: dict[str, Any] = {}
    for name, f in _fields().items():
        value = getattr(config, name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value is not None and (name == "driver" or value != default):
            out[name] = value
    return out


def load(path: str | Path) -> DaemonConfig:
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise MeterError(f"meter config {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MeterError(f"meter config {path}: not valid TOML: {exc}") from None
    return from_dict(data, f"meter config {path}")


def dumps(config: DaemonConfig) -> str:
    return tomli_w.dumps(to_dict(config))


def dump(config: DaemonConfig, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(dumps(config), "utf-8")
    return path
