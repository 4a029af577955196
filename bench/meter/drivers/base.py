"""What every driver is: one class per module, registered by name, with strictly parsed options.

A driver reads one instrument and hands back batches of samples already stamped on the host's CLOCK_MONOTONIC.
The daemon only calls ``available()``, ``open()``, ``read()``, ``close()`` and ``describe()``; it retries ``open``
with backoff and treats ``DeviceGone`` (or any OSError) from ``read`` as an unplug: it records a gap and reconnects.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Mapping

from bench.errors import CatalogError, MeterError, did_you_mean
from bench.meter.samples import SampleBatch

log = logging.getLogger(__name__)

DRIVERS: dict[str, type["Driver"]] = {}


class DeviceGone(MeterError):
    """The instrument went away (unplugged, silent, reset); the daemon records a gap and reconnects."""


def register(name: str) -> Callable[[type["Driver"]], type["Driver"]]:
    """Class decorator adding a driver to ``DRIVERS`` under ``name``; a name can be taken only once."""

    def deco(cls: type[Driver]) -> type[Driver]:
        if name in DRIVERS:
            raise ValueError(f"driver name {name!r} is already registered by {DRIVERS[name].__name__}")
        DRIVERS[name] = cls
        return cls

    return deco


def driver_class(name: str) -> type["Driver"]:
    """The class registered under ``name``; an unknown name lists near matches and all choices."""
    import bench.meter.drivers  # noqa: F401 - fills DRIVERS by explicit imports

    try:
        return DRIVERS[name]
    except KeyError:
        raise CatalogError(did_you_mean("meter driver", name, list(DRIVERS))) from None


def create(name: str, options: Mapping[str, Any]) -> "Driver":
    return driver_class(name)(name, options)


@dataclass(frozen=True)
class Option:
    """One driver option: its type, default and a short help text."""

    kind: type
    default: Any
    help: str


@dataclass(frozen=True)
class Uncertainty:
    """How good a driver's samples are (contract A with the energy stage, reported in ``info()["uncertainty"]``):
    the gain error as a fraction of the reading, the offset error in W, the uncertainty of each sample's stamp in
    seconds, and where these numbers come from (datasheet or manual section), so a bound can be put on every window.
    """

    power_rel: float
    power_abs_w: float
    time_s: float
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choice(driver: str, key: str, value: str, legal: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``legal``, else the one-line option error naming the legal set."""
    if value not in legal:
        raise MeterError(f"driver {driver!r}: option {key}={value!r} is not one of {', '.join(map(str, legal))}")
    return value


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


class Driver(ABC):
    """Base of all drivers: strict option parsing and counters; subclasses implement the four verbs."""

    OPTIONS: ClassVar[dict[str, Option]] = {}
    NOTE: ClassVar[str] = ""  # what the driver suits (and does not), shown by `bench meter drivers`

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.opts = self._parse_options(options)
        self.garbage = 0  # lines/frames that failed framing or checksum
        self.lost = 0  # samples the device numbered but we never received

    def _parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise MeterError(
                f"driver {self.name!r}: unknown option {unknown[0]!r}; expected one of {', '.join(sorted(self.OPTIONS)) or '(none)'}"
            )
        parsed: dict[str, Any] = {}
        for key, opt in self.OPTIONS.items():
            raw = options.get(key, opt.default)
            if raw is None:
                parsed[key] = None
                continue
            try:
                if opt.kind is bool:
                    parsed[key] = raw if isinstance(raw, bool) else _parse_bool(str(raw))
                elif isinstance(raw, str) and opt.kind is not str:
                    parsed[key] = opt.kind(raw.strip())
                else:
                    parsed[key] = opt.kind(raw)
            except (TypeError, ValueError) as exc:
                raise MeterError(f"driver {self.name!r}: option {key}={raw!r}: expected {opt.kind.__name__} ({exc})") from None
        return parsed

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this host can run the driver at all (a library installed, ...), and why not."""
        return True, "ok"

    @property
    @abstractmethod
    def nominal_rate_hz(self) -> float:
        """The sample rate the driver expects to deliver; sets the ring size and the gap threshold."""

    @abstractmethod
    def open(self) -> None:
        """Connect to the instrument; raise MeterError/OSError when it is not there (the daemon retries)."""

    @abstractmethod
    def read(self) -> SampleBatch:
        """Block briefly (well under a second), return the samples that arrived; empty is fine."""

    @abstractmethod
    def close(self) -> None:
        """Release the instrument; must be safe to call twice or after a failed open."""

    def on_mark(self, t_ns: int, label: str) -> None:
        """A client's mark (e.g. ``answer-begin ...``); real instruments ignore it, the sim's ``busy`` mode uses it."""

    @abstractmethod
    def uncertainty(self) -> Uncertainty:
        """What the samples are worth: instrument accuracy and stamp timing, with the source of each number."""

    def describe(self) -> dict[str, Any]:
        """Facts for ``info`` and the log header: device id, rate, calibration, uncertainty, options."""
        return {
            "driver": self.name,
            "device_id": self.device_id(),
            "nominal_rate_hz": self.nominal_rate_hz,
            "calibration": self.calibration(),
            "uncertainty": self.uncertainty().as_dict(),
            "options": {k: v for k, v in self.opts.items()},
        }

    def device_id(self) -> str:
        return self.name

    def calibration(self) -> dict[str, Any]:
        return {}

    def counters(self) -> dict[str, int]:
        return {"garbage": self.garbage, "lost": self.lost}
