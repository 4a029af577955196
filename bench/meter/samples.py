"""Samples as the drivers hand them to the daemon: one frozen record per sample, and a batch of them held as
numpy arrays, because the daemon ingests tens of thousands per second and per-object overhead would dominate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One power reading at one host CLOCK_MONOTONIC instant."""

    t_ns: int
    power_w: float


@dataclass(frozen=True)
class SampleBatch:
    """Samples read in one go, time-ordered. ``gap_before`` says the device lost continuity just before the first
    sample (a reconnect, a device reboot, lost packets), so the interval leading into it must not be integrated."""

    t_ns: np.ndarray  # int64, host CLOCK_MONOTONIC ns
    power_w: np.ndarray  # float64
    gap_before: bool = False

    def __post_init__(self) -> None:
        if self.t_ns.shape != self.power_w.shape or self.t_ns.ndim != 1:
            raise ValueError(f"t_ns and power_w must be 1-d of equal length, got {self.t_ns.shape} and {self.power_w.shape}")

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    def __iter__(self) -> Iterator[Sample]:
        for t, p in zip(self.t_ns.tolist(), self.power_w.tolist()):
            yield Sample(t, p)

    @classmethod
    def empty(cls) -> "SampleBatch":
        return cls(np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def of(cls, t_ns: Sequence[int] | np.ndarray, power_w: Sequence[float] | np.ndarray, gap_before: bool = False) -> "SampleBatch":
        return cls(np.asarray(t_ns, dtype=np.int64), np.asarray(power_w, dtype=np.float64), gap_before)
