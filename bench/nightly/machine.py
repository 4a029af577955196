"""The machine's conditions around a night, and the verdict that a night was measured on a busy machine.

Energy and latency are only comparable night to night on a quiet machine: a neighbour process, thermal throttling
or a background update changes them as much as a regression would. So every night records the load average, the
SoC temperature and throttle state at its start and end, the CPU other processes used in a short quiet check
before the run (nothing of ours running: valid for every backend) and, per answer, what the runner read
(`bench.conditions`). A night whose other processes used more than ``busy_share`` of the machine before the run,
or during more than a quarter of its answers, is exit 2; the answers that were disturbed are left out of the
comparison (`drift.judge`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bench import conditions, results
from bench.backends import in_process
from bench.thermal import temperature_c, throttled

DEFAULT_BUSY_SHARE = 0.10
"""Busy above a tenth of the machine's CPU capacity used by other processes (0.4 of a core on a Pi 4). Measured on
a shared 2-core machine (133 real llama.cpp answers, tests/benchmarks/bench_nightly_real.py): answers during which
others used under 10% ran within 6% (median; 90th percentile 22%) of their fastest time, 10-20% ran 1.33x slower,
30-50% 3.3x, above 50% 5.4x; the others' share and the log slowdown correlate at r = 0.93."""

MAX_DISTURBED_SHARE = 0.25
"""With the in-process backend, a night is busy when more than a quarter of its answers were disturbed (others
above ``busy_share`` during them): the comparison would rest on too few undisturbed answers."""



@dataclass(frozen=True)
class NightConditions:
    cpus: int
    load1_before: float | None = None
    load1_after: float | None = None
    temp_before_c: float | None = None
    temp_after_c: float | None = None
    throttled_before: str | None = None
    throttled_after: str | None = None
    quiet_other_share: float | None = None     # before the run, over the (last) quiet check
    quiet_waited_s: float = 0.0                 # how long the night waited for the machine to become quiet
    answers: int = 0                            # answers with a conditions reading
    answers_other_share: float | None = None    # median over those answers
    answers_max_temp_c: float | None = None
    answers_throttled: int = 0                  # answers that ran throttled (`throttled_during`)
    answers_disturbed: int = 0                  # answers during which others used more than the busy share

    def describe(self) -> str:
        """A short clause for the night's line: enough to tell a busy or hot machine from a changed system."""
        parts = []
        if self.quiet_other_share is not None:
            waited = f" (after waiting {self.quiet_waited_s:.0f} s)" if self.quiet_waited_s else ""
            parts.append(f"others {_pct(self.quiet_other_share)} before the run{waited}")
        if self.answers_other_share is not None:
            parts.append(f"{_pct(self.answers_other_share)} during answers")
        if self.load1_after is not None:
            parts.append(f"load {self.load1_after:.2f}")
        if self.answers_max_temp_c is not None:
            parts.append(f"SoC max {self.answers_max_temp_c:.0f} C")
        if self.answers_disturbed:
            parts.append(f"{self.answers_disturbed} of {self.answers} answers disturbed")
        if self.answers_throttled:
            parts.append(f"throttled in {self.answers_throttled} answers")
        return "machine: " + (", ".join(parts) if parts else "no readings")


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def at_start() -> NightConditions:
    return NightConditions(cpus=conditions.cpus(), load1_before=conditions.load1(), temp_before_c=temperature_c(),
                           throttled_before=throttled())


def quiet_share(seconds: float, *, sleep=time.sleep) -> float | None:
    """Share of the machine's CPU capacity used by other processes while this one sleeps for ``seconds``."""
    start = conditions.read_counters()
    sleep(seconds)
    window = conditions.between(start, conditions.read_counters())
    return window.other_share if window is not None else None


def wait_until_quiet(cond: NightConditions, quiet_s: float, limit: float, max_wait_s: float, *,
                     sleep=time.sleep, measure=None, retry_s: float = 30.0) -> NightConditions:
    """Quiet checks until other processes use at most ``limit`` of the machine or ``max_wait_s`` has passed (a
    cron night can outwait a backup or an update that is finishing); the last check's share is kept."""
    measure = measure or (lambda: quiet_share(quiet_s, sleep=sleep))
    waited = 0.0
    share = measure()
    while share is not None and share > limit and waited < max_wait_s:
        pause = min(retry_s, max_wait_s - waited)
        sleep(pause)
        waited += pause
        share = measure()
    return replace(cond, quiet_other_share=share, quiet_waited_s=waited)


def other_shares(frame) -> list[float | None]:
    """Per answer of `results.conditions_frame`: the share of the machine other processes used meanwhile (None
    for an answer without a reading)."""
    return [None if pd.isna(r.span_s) else
            conditions.AnswerConditions(r.span_s, r.machine_cpu_s, r.own_cpu_s, int(r.cpus), r.load1).other_share
            for r in frame.itertuples()]


def disturbed_keys(db_path: Path, limit: float) -> frozenset[tuple[str, str, str]]:
    """(model, dataset, item_id) of the answers during which other processes used more than ``limit``."""
    frame = results.conditions_frame(db_path)
    return frozenset((r.model, r.dataset, r.item_id) for r, share in zip(frame.itertuples(), other_shares(frame))
                     if share is not None and share > limit)


def with_answers(cond: NightConditions, db_path: Path, limit: float) -> NightConditions:
    """Add what the runner read around each answer of the night's run, and the night's end readings."""
    frame = results.conditions_frame(db_path)
    shares = [s for s in other_shares(frame) if s is not None]
    temps = frame[["temp_before_c", "temp_after_c"]].max(axis=1).dropna()
    hot = sum(throttled_during(b, a) for b, a in zip(frame["throttled_before"], frame["throttled_after"]))
    return replace(cond, answers=len(shares),
                   answers_other_share=statistics.median(shares) if shares else None,
                   answers_max_temp_c=float(temps.max()) if len(temps) else None, answers_throttled=int(hot),
                   answers_disturbed=sum(s > limit for s in shares),
                   load1_after=conditions.load1(), temp_after_c=temperature_c(), throttled_after=throttled())


def busy_before(cond: NightConditions, limit: float, quiet_s: float) -> str | None:
    share = cond.quiet_other_share
    if share is None or share <= limit:
        return None
    load = f", load average {cond.load1_before:.2f}" if cond.load1_before is not None else ""
    return (f"machine busy: other processes used {_pct(share)} of the {cond.cpus} CPUs in the {quiet_s:g} s before "
            f"the run (limit {_pct(limit)}){load}; energy and latency would not be comparable")


def busy_during(cond: NightConditions, limit: float, backend_kind: str) -> str | None:
    """Only for a backend in the runner's process does the per-answer reading separate the system under test
    from other work (for Ollama it includes the server), so only it gets the during-night check."""
    if not in_process(backend_kind) or not cond.answers:
        return None
    if cond.answers_disturbed <= MAX_DISTURBED_SHARE * cond.answers:
        return None
    return (f"machine busy: {cond.answers_disturbed} of {cond.answers} answers ran while other processes used more "
            f"than {_pct(limit)} of the {cond.cpus} CPUs (at most {_pct(MAX_DISTURBED_SHARE)} may); energy and "
            f"latency are not comparable")


THROTTLE_NOW = 0xF             # under-voltage, ARM frequency capped, throttled, soft temperature limit: now
THROTTLE_OCCURRED = 0xF0000    # the same four conditions: "has occurred" since boot


def throttled_during(before: str | None, after: str | None) -> bool:
    """Whether an answer ran throttled, from ``vcgencmd get_throttled`` before and after it: a condition active
    at either end, or one that first occurred in between (the since-boot bits are sticky, so only new ones count)."""
    b, a = _throttle_word(before), _throttle_word(after)
    if b is None and a is None:
        return False
    b, a = b or 0, a or 0
    return bool((b | a) & THROTTLE_NOW or (a & ~b) & THROTTLE_OCCURRED)


def _throttle_word(word) -> int | None:
    if not isinstance(word, str) or not word:
        return None
    try:
        return int(word, 16)
    except ValueError:
        return None
