"""The drift rule: has the system under test changed since the baseline, beyond what an unchanged one varies?

The nightly subset asks the same items every night, so each per-answer metric is compared on matched answers:
the ratio of tonight's mean to the baseline's mean (accuracy: the difference) gets a paired bootstrap interval
over the items (4,000 resamples, fixed seed) at the rule's level: 1 - 5%/7 for each of the 7 metrics
(Bonferroni), so that a night of an unchanged system raises a false alarm with probability at most
``NIGHT_FALSE_ALARM`` (5%) when the spreads are right. Answers during which other processes used more than the busy share
of the machine (in either night; read per answer by the runner, see `machine`) are left out: they ran up to
several times slower for reasons that are not the system's. The interval only knows item-to-item noise; a shift
that moves a whole night (thermal state, a background update) is invisible to it. So it is widened by the
night-to-night spread ``s`` of the metric:

    interval = point -/+ sqrt(within_half_width^2 + (z * sqrt(2) * s)^2)      (z = 2.69 for 1 - 5%/7)

on the log scale for ratios (sqrt(2): tonight and the baseline are both one night's draw). ``s`` is learned from
the changes judged on the accepted (exit 0) nights compared with the same baseline: 1.4826 x their median absolute
deviation (robust to an odd night). A spread from a handful of nights is itself noisy and can come out far too
small, so it is pooled with the metric's documented conservative default as if that were ``PRIOR_NIGHTS`` nights:
``s^2 = (k s_learned^2 + PRIOR_NIGHTS s_default^2) / (k + PRIOR_NIGHTS)``; below ``MIN_LEARN_NIGHTS`` the default
alone is used. A metric has drifted when the widened interval excludes "no change" *and* the point change exceeds
the metric's tolerance, so neither a noisy night nor a tiny consistent shift raises an alarm. Each judgement
states the smallest change it could have detected (``detectable``: the tolerance or the interval's half-width,
whichever is larger), so a night with a wide spread says what it cannot see instead of passing silently.
Idle power, one value per night, gets its within-night interval from the idle window's 1-second sub-windows.
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import dataclass
from statistics import NormalDist
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench import results
from bench.nightly import machine
from bench.nightly.outcome import NightFailed
from bench.records import IdleBaseline
from bench.report.metrics import derive

NIGHT_FALSE_ALARM = 0.05  # the rule's promise: at most this share of an unchanged system's nights alarm
MIN_LEARN_NIGHTS = 5
PRIOR_NIGHTS = 5      # the weight of the default spread, in nights, when pooled with a learned one
MAD_TO_SD = 1.4826  # the MAD of a normal sample times this estimates its standard deviation
KEY = ["model", "dataset", "item_id"]


@dataclass(frozen=True)
class Metric:
    name: str
    column: str            # column of `night_values` (from `report.metrics.derive`, or mean answer power)
    tolerance: float       # relative (fraction) or absolute, per ``kind``
    kind: str              # "relative" (ratio of means) or "absolute" (difference of means)
    unit: str
    default_spread: float  # night-to-night sd before enough nights are learned (log scale for relative metrics)


# Default spreads (sd of a night's level; the band is +-Z x sqrt(2) x this, 3.80x): the metrics that follow the
# answer's time (latency, tokens/s, and energy, which is time x power) get 6%, as wide as the whole-night shifts of
# unchanged real-inference nights on a shared 2-core machine once prefill stopped spinning two threads (issue 21:
# they were -16%..+16% before); power and idle power 2% (a meter's reading of the same load repeats closely).
# Before nights are learned, +10% power is detectable (log 9.5% > 3.80 x 2% = 7.6%) but +20% latency is not
# (log 18.2% < 22.8%): the judgements say so (``detectable``) until the learned spread narrows the band. Greedy
# decoding makes accuracy repeat exactly, so its default only absorbs an answer or two flipping.
METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "accuracy", 0.10, "absolute", "", 0.02),
    Metric("energy_per_answer_j", "energy_j", 0.05, "relative", "J", 0.06),
    Metric("j_per_token", "j_per_token", 0.05, "relative", "J/token", 0.06),
    Metric("power_w", "power_w", 0.05, "relative", "W", 0.02),
    Metric("latency_s", "latency_s", 0.10, "relative", "s", 0.06),
    Metric("tokens_per_s", "tokens_per_s", 0.10, "relative", "tokens/s", 0.06),
    Metric("idle_w", "idle_w", 0.05, "relative", "W", 0.02),
)
BY_NAME = {m.name: m for m in METRICS}
TAIL = NIGHT_FALSE_ALARM / len(METRICS)      # each metric's two-sided miss probability (Bonferroni)
Z = NormalDist().inv_cdf(1.0 - TAIL / 2.0)   # 2.69 for 7 metrics
LEVEL_TEXT = f"{(1.0 - TAIL) * 100:.1f}%"    # "99.3%"
ANSWER_METRICS = tuple(m for m in METRICS if m.name != "idle_w")


@dataclass(frozen=True)
class NightValues:
    """One night's per-answer metric values indexed by (model, dataset, item_id), its idle baseline, and the
    answers that other processes disturbed (left out of every comparison)."""

    answers: pd.DataFrame
    idle: IdleBaseline | None
    disturbed: frozenset[tuple[str, str, str]] = frozenset()

    def means(self) -> dict[str, tuple[float, int]]:
        """Night-level mean and count of every metric (what the history stores and the spread is learned from)."""
        out = {m.name: (float(self.answers[m.column].mean()), int(self.answers[m.column].notna().sum()))
               for m in ANSWER_METRICS}
        out["idle_w"] = (self.idle.mean_w if self.idle else float("nan"), 1 if self.idle else 0)
        return out


def night_values(folder: Path, mode: str = "paper", busy_share: float | None = None) -> NightValues:
    """The metrics of a sealed night folder, by the report's own definitions (`report.metrics.derive`); with
    ``busy_share``, the answers during which other processes used more than that are marked disturbed."""
    db_path = folder / "results.db"
    frame = results.answers_frame(db_path, mode)
    derived = derive(frame)
    answers = derived[[m.column for m in ANSWER_METRICS if m.column in derived.columns]].copy()
    answers["power_w"] = pd.to_numeric(frame.loc[derived.index, "mean_w"], errors="coerce")  # mean answer power, raw
    answers.index = pd.MultiIndex.from_frame(frame.loc[derived.index, KEY])
    with closing(results.connect_readonly(db_path)) as db:
        idle = results.latest_idle(db)
    disturbed = machine.disturbed_keys(db_path, busy_share) if busy_share is not None else frozenset()
    return NightValues(answers, idle, disturbed)


@dataclass(frozen=True)
class Spread:
    """Night-to-night standard deviation of a metric's night mean, and how many nights it was learned from."""

    value: float
    nights: int  # 0: the documented default

    def describe(self, metric: Metric) -> str:
        size = f"{self.value * 100:.1f}%" if metric.kind == "relative" else f"{self.value:.3f}"
        return f"night-to-night {size} " + (f"from {self.nights} nights" if self.nights else "(default)")


def learn_spread(metric: Metric, changes: Sequence[float]) -> Spread:
    """Robust spread of the changes judged on accepted nights, pooled with the default (module doc); the default
    alone until there are ``MIN_LEARN_NIGHTS`` of them."""
    values = np.asarray([v for v in changes if v is not None and math.isfinite(v)], dtype=float)
    if metric.kind == "relative":
        values = np.log1p(values[values > -1])
    k = int(values.size)
    if k < MIN_LEARN_NIGHTS:
        return Spread(metric.default_spread, 0)
    learned = MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))
    pooled = (k * learned**2 + PRIOR_NIGHTS * metric.default_spread**2) / (k + PRIOR_NIGHTS)
    return Spread(math.sqrt(pooled), k)


def paired_bootstrap(base: np.ndarray, new: np.ndarray, kind: str, *, resamples: int = 4000,
                     seed: int = 20250403) -> tuple[float, float, float]:
    """Point change and interval (at the rule's level) of mean(new)/mean(base) - 1 (relative) or mean(new) -
    mean(base)."""
    def change(b: np.ndarray, n: np.ndarray) -> np.ndarray:
        mb, mn = b.mean(axis=-1), n.mean(axis=-1)
        if kind == "relative":
            with np.errstate(divide="ignore", invalid="ignore"):
                return mn / mb - 1.0
        return mn - mb

    point = float(change(base, new))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(resamples, len(base)))
    dist = change(base[idx], new[idx])
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.percentile(dist, [50.0 * TAIL, 100.0 - 50.0 * TAIL])
    return point, float(low), float(high)


def widen(point: float, low: float, high: float, spread: float, kind: str) -> tuple[float, float]:
    """The within-night interval widened by the night-to-night spread, added in quadrature (see the module doc)."""
    between = Z * math.sqrt(2.0) * spread
    to, back = (math.log1p, math.expm1) if kind == "relative" else (float, float)
    p = to(point)
    lo = to(low) if math.isfinite(low) and low > -1 else p
    hi = to(high) if math.isfinite(high) else p
    return back(p - math.hypot(p - lo, between)), back(p + math.hypot(hi - p, between))


@dataclass(frozen=True)
class Judgement:
    metric: str
    baseline: float
    tonight: float
    change: float      # relative (ratio - 1) or absolute difference, per the metric's kind
    ci_low: float      # the widened interval of ``change`` (level 1 - TAIL)
    ci_high: float
    spread: float
    spread_nights: int
    tolerance: float
    n: int             # matched answers (1 for idle power)
    drifted: bool
    detectable: float = math.nan  # the smallest change (either way) this night could flag: see `_detectable`

    def describe(self) -> str:
        """``energy_per_answer_j +17.5% (2.04 -> 2.40 J; 99.3% +8.1% to +27.7%, night-to-night 3.0% (default);
        detects ±12.9%; tolerance ±5%)``: the change first, then what it is judged against."""
        m = BY_NAME[self.metric]
        unit = f" {m.unit}" if m.unit else ""
        if m.kind == "relative":
            change = f"{self.change * 100:+.1f}%"
            interval = f"{self.ci_low * 100:+.1f}% to {self.ci_high * 100:+.1f}%"
            tol = f"±{self.tolerance * 100:g}%"
            detects = f"±{self.detectable * 100:.1f}%"
        else:
            change = f"{self.change:+.3f}"
            interval = f"{self.ci_low:+.3f} to {self.ci_high:+.3f}"
            tol = f"±{self.tolerance:g} absolute"
            detects = f"±{self.detectable:.3f}"
        spread = Spread(self.spread, self.spread_nights).describe(m)
        return (f"{self.metric} {change} ({self.baseline:.4g} -> {self.tonight:.4g}{unit}; {LEVEL_TEXT} {interval}, "
                f"{spread}; detects {detects}; tolerance {tol})")


def judge(base: NightValues, new: NightValues, spreads: Mapping[str, Spread],
          tolerances: Mapping[str, float] | None = None) -> list[Judgement]:
    """Every metric of tonight against the baseline on matched answers; idle power from the idle windows."""
    tolerances = tolerances or {}
    matched = base.answers.index.intersection(new.answers.index)
    if len(matched) == 0:
        raise NightFailed("no answers in common with the baseline: is it the same subset (spec)?")
    common = matched[~matched.isin(base.disturbed | new.disturbed)]
    if len(common) == 0:
        raise NightFailed(f"machine busy: all {len(matched)} answers in common with the baseline were disturbed by "
                          f"other processes in one of the two nights")
    out = []
    for m in ANSWER_METRICS:
        pair = pd.DataFrame({"b": base.answers.loc[common, m.column], "n": new.answers.loc[common, m.column]}).dropna()
        if pair.empty:
            continue
        b, n = pair["b"].to_numpy(float), pair["n"].to_numpy(float)
        point, low, high = paired_bootstrap(b, n, m.kind)
        out.append(_decide(m, float(b.mean()), float(n.mean()), point, low, high, spreads[m.name],
                           tolerances.get(m.name, m.tolerance), len(pair)))
    idle = _judge_idle(base.idle, new.idle, spreads["idle_w"], tolerances.get("idle_w", BY_NAME["idle_w"].tolerance))
    return out + ([idle] if idle else [])


def _decide(m: Metric, baseline: float, tonight: float, point: float, low: float, high: float, spread: Spread,
            tolerance: float, n: int) -> Judgement:
    lo, hi = widen(point, low, high, spread.value, m.kind)
    excludes_zero = math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0)
    drifted = bool(excludes_zero and math.isfinite(point) and abs(point) > tolerance)
    return Judgement(m.name, baseline, tonight, point, lo, hi, spread.value, spread.nights, tolerance, n, drifted,
                     _detectable(m, lo, hi, tolerance))


def _detectable(m: Metric, lo: float, hi: float, tolerance: float) -> float:
    """The smallest change for which an interval as wide as tonight's widened one would exclude "no change", or
    the tolerance if that is larger: the change the rule can promise to see with this spread."""
    to, back = (math.log1p, math.expm1) if m.kind == "relative" else (float, float)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo > -1):
        return math.nan
    return max(tolerance, back((to(hi) - to(lo)) / 2.0))


def _judge_idle(base: IdleBaseline | None, new: IdleBaseline | None, spread: Spread,
                tolerance: float) -> Judgement | None:
    """Idle power's change, its within-night interval from each idle window's standard error (sd of its 1-second
    sub-windows over sqrt(their count)), widened like every other metric."""
    if base is None or new is None or not base.mean_w > 0 or not new.mean_w > 0:
        return None
    point = new.mean_w / base.mean_w - 1.0
    rel_se = math.hypot(_idle_se(base) / base.mean_w, _idle_se(new) / new.mean_w)
    y = math.log1p(point)
    low, high = math.expm1(y - Z * rel_se), math.expm1(y + Z * rel_se)
    return _decide(BY_NAME["idle_w"], base.mean_w, new.mean_w, point, low, high, spread, tolerance, 1)


def _idle_se(idle: IdleBaseline) -> float:
    seconds = max(1, int((idle.end_ns - idle.start_ns) // 1_000_000_000))
    return idle.sd_w / math.sqrt(seconds)
