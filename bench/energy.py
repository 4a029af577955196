"""What a stored energy window means: idle subtraction on the covered duration, why a window is unusable, and the
window's error bound from sampling at its edges and the meter's declared uncertainty.

The meter's uncertainty reaches this module only as the daemon's ``info()["uncertainty"]`` dict
(``power_rel``, ``power_abs_w``, ``time_s``, ``source``; ROSTER contract A). A meter that declares none is taken
as exact (zeros), and the report says that its bounds then cover sampling only.

The bound of a window with raw energy ``E`` over a covered duration ``T`` (docs/report.md, "Energy windows"):

    bound = edge_j + time_s * edge_w + power_rel * |E| + power_abs_w * T

(``time_s`` plus the clock-conversion bound for a window of a meter on another machine.)

``edge_j`` is the worst-case trapezoid error in the sample intervals near the window's edges (within ``time_s`` of
them) and near the instants inside it where power changes (an answer's first token); ``edge_w`` is the power change
at the two edges (``bench.meter.buffer.EdgeSampling``): a stamp error of ``time_s`` moves ``time_s * dP`` joules
across an edge. The same bound holds for the idle-subtracted energy: the idle power is a constant here, and an idle
baseline measured with the same meter only cancels part of the meter error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from bench.errors import MeterError
from bench.records import EnergyReading

UNDECLARED = "not declared by the meter driver (taken as 0: bounds cover sampling at the window edges only)"
UNCERTAINTY_FIELDS = ("power_rel", "power_abs_w", "time_s")


@dataclass(frozen=True)
class MeterUncertainty:
    """How good the meter says its samples are: gain error (fraction), offset error (W), stamp error (s)."""

    power_rel: float = 0.0
    power_abs_w: float = 0.0
    time_s: float = 0.0
    source: str = UNDECLARED
    declared: bool = False

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> "MeterUncertainty":
        """Read ``info["uncertainty"]``; absent means undeclared (zeros), malformed is a one-line error."""
        raw = info.get("uncertainty")
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise MeterError(f"meter info: 'uncertainty' must be an object with {', '.join(UNCERTAINTY_FIELDS)}, "
                             f"got {type(raw).__name__}")
        values = {}
        for key in UNCERTAINTY_FIELDS:
            v = raw.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise MeterError(f"meter info: uncertainty.{key} must be a finite number >= 0, got {v!r:.40}")
            values[key] = float(v)
        return cls(**values, source=str(raw.get("source") or "declared by the meter driver, source not given"),
                   declared=True)

    def as_dict(self) -> dict[str, Any]:
        return {"power_rel": self.power_rel, "power_abs_w": self.power_abs_w, "time_s": self.time_s,
                "source": self.source, "declared": self.declared}

    def describe(self) -> str:
        """One line for the report header."""
        if not self.declared:
            return UNDECLARED
        if not (self.power_rel or self.power_abs_w or self.time_s):
            return f"declared as none ({self.source}): bounds cover sampling at the window edges only"
        return (f"gain ±{self.power_rel:.2%}, offset ±{self.power_abs_w:g} W, stamps ±{self.time_s * 1e3:g} ms "
                f"({self.source})")


def describe_sessions(sessions: list[Mapping[str, Any]]) -> str:
    """What a run's windows were bounded with, from its ``meter_uncertainty`` events (``as_dict`` form)."""
    if not sessions:
        return "not recorded (a run from before window bounds were kept: its windows have no bound)"
    return "; ".join(dict.fromkeys(MeterUncertainty(**s).describe() for s in sessions))


@dataclass(frozen=True)
class StoredWindow:
    """One window as the results store keeps it. Energies are ``None`` when the meter saw none of the window;
    ``reason`` says why a window is empty or partial ('' when it is whole)."""

    start_ns: int
    end_ns: int
    energy_raw_j: float | None
    energy_j: float | None
    mean_w: float | None
    n_samples: int
    coverage: float
    edge_j: float | None
    edge_w: float | None
    bound_j: float | None
    reason: str


def bound_j(reading: EnergyReading, unc: MeterUncertainty) -> float:
    """The error bound (J) of the window's covered energy, raw or idle-subtracted (formula in the module doc).
    A window converted from a remote meter's clock may sit off by its clock bound too: a stamp error like any."""
    time_s = unc.time_s + (reading.clock_bound_ns or 0) / 1e9
    return (reading.edge_j + time_s * reading.edge_w + unc.power_rel * abs(reading.energy_j)
            + unc.power_abs_w * reading.covered_s)


def idle_subtracted(reading: EnergyReading, idle_w: float) -> float:
    """The paper's definition on the part the meter saw: raw energy minus idle power x *covered* time, clipped at 0.

    Subtracting idle over the whole window from an integral over only its covered part would make every gap look
    like a saving; the report then excludes or marks windows that are not fully covered (docs/report.md)."""
    return max(0.0, reading.energy_j - idle_w * reading.covered_s)


def _reason(reading: EnergyReading) -> str:
    d = reading.duration_s
    if reading.reason:
        return reading.reason
    if reading.n_samples == 0:
        return f"no meter sample inside the {d:.3f} s window"
    if reading.coverage <= 0:
        return f"the {d:.3f} s window lies in a gap of the meter data"
    if reading.coverage < 1:
        return (f"coverage {reading.coverage:.3f}: {d - reading.covered_s:.3f} s of the {d:.3f} s window not measured "
                f"(energy is of the measured part)")
    return ""


def store(reading: EnergyReading, idle_w: float, unc: MeterUncertainty) -> StoredWindow:
    """The stored form of a meter reading: a window with nothing measured keeps its stamps and a reason, no energy."""
    if reading.end_ns == reading.start_ns:  # an instant: nothing to measure, and nothing spent
        return StoredWindow(reading.start_ns, reading.end_ns, 0.0, 0.0, None, reading.n_samples, 1.0, 0.0, 0.0, 0.0, "")
    reason = _reason(reading)
    if reading.coverage <= 0 or reading.n_samples == 0:
        return StoredWindow(reading.start_ns, reading.end_ns, None, None, None, reading.n_samples, 0.0, None, None,
                            None, reason)
    mean = reading.mean_w if math.isfinite(reading.mean_w) else None
    return StoredWindow(reading.start_ns, reading.end_ns, reading.energy_j, idle_subtracted(reading, idle_w), mean,
                        reading.n_samples, reading.coverage, reading.edge_j, reading.edge_w, bound_j(reading, unc),
                        reason)
