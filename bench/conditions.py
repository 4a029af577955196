"""What else the machine was doing while an answer ran: CPU used by other processes and the load average.

An answer's energy and latency are only comparable night to night if the machine was as quiet as before, so the
runner reads this around every answer. The reading is two small /proc reads and one ``times()`` call at each end
of the answer (no thread, no polling): the toolkit must not perturb what it measures (`make bench` times it).

"Other processes" means every process but this one: with the in-process llama.cpp backend that is exactly the
machine's work that is not the system under test; with a backend in another process (Ollama) it includes that
server's work too, so only the quiet check of a night (nothing of ours running) says whether the machine was busy.
The local meter daemon, a child process, is counted as other (it stays under 0.5% of a core by design).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

PROC_STAT = "/proc/stat"
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuCounters:
    """Cumulative CPU seconds at one moment: the whole machine's busy time and this process's own."""

    t_ns: int
    machine_busy_s: float
    own_s: float


def machine_busy_s(path: str = PROC_STAT) -> float | None:
    """Busy CPU seconds of all CPUs since boot: the aggregate ``cpu`` line minus idle and iowait (steal counts as
    busy: a hypervisor giving our CPU to someone else is other work too). None where /proc is absent."""
    try:
        with open(path, "rb") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)) * TICK_S


def read_counters() -> CpuCounters | None:
    busy = machine_busy_s()
    if busy is None:
        return None
    own = os.times()
    return CpuCounters(time.monotonic_ns(), busy, own.user + own.system)


@dataclass(frozen=True)
class AnswerConditions:
    """The machine during one answer (stored per answer by `results.record_answer`)."""

    span_s: float          # wall time between the two readings
    machine_cpu_s: float   # CPU seconds used by all processes on all CPUs
    own_cpu_s: float       # CPU seconds used by this process (the runner and an in-process backend)
    cpus: int
    load1: float | None    # 1-minute load average at the end

    @property
    def other_cpu_s(self) -> float:
        return max(0.0, self.machine_cpu_s - self.own_cpu_s)

    @property
    def other_share(self) -> float | None:
        """Share of the machine's CPU capacity (all cores) used by other processes, at most 1 (the counters tick
        at 1/CLK_TCK, so a short span can round past it); None for a zero-length span."""
        capacity = self.cpus * self.span_s
        return min(1.0, self.other_cpu_s / capacity) if capacity > 0 else None


def between(start: CpuCounters | None, end: CpuCounters | None) -> AnswerConditions | None:
    """The conditions between two readings (None when /proc could not be read)."""
    if start is None or end is None:
        return None
    return AnswerConditions(span_s=(end.t_ns - start.t_ns) / 1e9,
                            machine_cpu_s=max(0.0, end.machine_busy_s - start.machine_busy_s),
                            own_cpu_s=max(0.0, end.own_s - start.own_s), cpus=cpus(), load1=load1())


def load1() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpus() -> int:
    return os.cpu_count() or 1
