"""Which interval an answer's energy was integrated over, and what the right interval changes.

The authors' window is ``[created_at, created_at + total_duration]`` from Ollama's reply, but ``created_at`` of a
finished (non-streamed) reply is its *completion* time, so that window covers what ran *after* the answer (mostly
the next one). Their own 2 Hz traces prove it: two answers of one model that ran one after the other share
identical samples, and the offset at which they match is the later answer's duration (completion stamps), not the
earlier one's (start stamps). Stitching the two traces gives the answer's true window ``[created_at - duration,
created_at]``, so the start-stamped / published energy ratio can be measured per answer and per cell.

Our runs stamp the request on the host and store both windows (``energy_j`` over ``[send, last byte]``,
``completion_energy_j`` over the authors' ``[last byte, last byte + total_duration]``), so the same table exists for
every run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.authors_items import PowerTrace, SampledAnswer

log = logging.getLogger(__name__)

MIN_SHARED = 4
"""Identical samples two traces must share (not all one value) to count as the same stretch of the meter's log."""
STAMP_TOL_S = 0.25
"""Half a sample interval at 2 Hz: how close the measured offset must be to a duration to be that duration."""
RATIO_COLUMNS = ["model", "dataset", "item", "duration_s", "published_j", "start_j", "ratio"]


@dataclass(frozen=True)
class Shift:
    """The window-shift analysis: the proof (authors' data only), and the ratio per answer and per cell."""

    source: str
    proof: pd.DataFrame
    per_answer: pd.DataFrame
    per_cell: pd.DataFrame
    words: str

    @property
    def anchor(self) -> str:
        return "window-shift"


def shared_offset(a: PowerTrace, b: PowerTrace) -> float | None:
    """Seconds from ``a``'s time zero to ``b``'s at which ``b`` starts with samples identical to ``a``'s
    (at least ``MIN_SHARED``, not all equal); None if there is no such overlap."""
    pa, pb = np.asarray(a.power_w), np.asarray(b.power_w)
    for s in np.flatnonzero(pa[1:len(pa) - MIN_SHARED + 1] == pb[0]) + 1:
        n = min(len(pa) - s, len(pb))
        if n >= MIN_SHARED and np.array_equal(pa[s:s + n], pb[:n]) and np.ptp(pb[:n]) > 0:
            return a.t0_s + s * a.dt_s - b.t0_s
    return None


def _stitch(a: PowerTrace, b: PowerTrace, offset_s: float) -> PowerTrace:
    """``a`` moved onto ``b``'s time axis, followed by ``b``'s own samples (the same meter log, one series)."""
    lead = int(round((b.t0_s - (a.t0_s - offset_s)) / a.dt_s))
    return PowerTrace(a.t0_s - offset_s, a.dt_s, a.power_w[:lead] + b.power_w)


def authors_shift(sampled: list[SampledAnswer], idle_w: float) -> Shift:
    """The proof and the ratios from the authors' sample answers (those placed in their cell with a trace)."""
    by_cell: dict[tuple[str, str], list[SampledAnswer]] = {}
    for s in sampled:
        if s.trace is not None and s.position is not None:
            by_cell.setdefault((s.model, s.dataset), []).append(s)
    proof, ratios = [], []
    for (model, ds), answers in sorted(by_cell.items()):
        answers.sort(key=lambda s: s.position)
        for i, b in enumerate(answers):
            before = [a for a in answers[:i] if a.position < b.position]
            for a in reversed(before):
                offset = shared_offset(a.trace, b.trace)
                if offset is None:
                    continue
                if b.position - a.position == 1:
                    proof.append({"model": model, "dataset": ds, "positions": f"{a.position}->{b.position}",
                                  "earlier_s": a.latency_s, "later_s": b.latency_s, "offset_s": round(offset, 3),
                                  "off_later_s": round(abs(offset - b.latency_s), 3),
                                  "off_earlier_s": round(abs(offset - a.latency_s), 3)})
                start = _stitch(a.trace, b.trace, offset).energy_j(-b.latency_s, 0.0)
                if math.isfinite(start):
                    mine = max(0.0, b.trace.energy_j(0.0, b.latency_s) - idle_w * b.latency_s)
                    start_j = max(0.0, start - idle_w * b.latency_s)
                    ratios.append({"model": model, "dataset": ds, "item": b.item_index, "duration_s": b.latency_s,
                                   "published_j": b.energy_j, "recomputed_j": round(mine, 4), "start_j": round(start_j, 4),
                                   "ratio": start_j / b.energy_j if b.energy_j > 0 else math.nan})
                break
    proof_df = pd.DataFrame(proof)
    per_answer = pd.DataFrame(ratios)
    words = _proof_words(proof_df) + " " + _ratio_words(per_answer, "the authors' sample answers")
    zero = per_answer[per_answer["published_j"] == 0] if len(per_answer) else per_answer
    if len(zero):
        words += (f" {len(zero)} answers published at 0 J measure {zero['start_j'].min():.0f}-"
                  f"{zero['start_j'].max():.0f} J in their own window.")
    if len(per_answer):
        check = (per_answer["recomputed_j"] / per_answer["published_j"]).replace([np.inf, -np.inf], np.nan).dropna()
        words += (f" (Method check: the same nearest-sample integration over the published window gives their own "
                  f"energy back, median ratio {check.median():.4f}.)")
    return Shift("authors' 2 Hz traces", proof_df, per_answer, per_cell(per_answer), words)


def _proof_words(proof: pd.DataFrame) -> str:
    if proof.empty:
        return "No two consecutive sample answers share samples, so the stamp cannot be tested on this data."
    later = int((proof["off_later_s"] <= STAMP_TOL_S).sum())
    earlier = int((proof["off_earlier_s"] <= STAMP_TOL_S).sum())
    return (f"In {len(proof)} pairs of answers that ran one after the other, the two traces share identical samples at "
            f"an offset equal to the later answer's duration in {later} pairs (median difference "
            f"{proof['off_later_s'].median():.3f} s) and to the earlier one's in {earlier} (median difference "
            f"{proof['off_earlier_s'].median():.1f} s): created_at is the completion time, and the published window "
            f"[created_at, created_at + duration] lies after the answer.")


def _ratio_words(per_answer: pd.DataFrame, what: str) -> str:
    r = per_answer["ratio"].replace([np.inf, -np.inf], np.nan).dropna() if len(per_answer) else pd.Series(dtype=float)
    if r.empty:
        return f"No start-stamped window could be measured for {what}."
    q = r.quantile([0.1, 0.5, 0.9])
    off = float((np.abs(r - 1) > 0.10).mean())
    return (f"Over {len(r)} of {what}, start-stamped / published energy: median {q[0.5]:.3f}, 10-90% "
            f"{q[0.1]:.3f}-{q[0.9]:.3f}, range {r.min():.3f}-{r.max():.3f}; {off:.0%} of answers move by more than "
            f"10%.")


def per_cell(per_answer: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset): answers, median per-answer ratio, and the ratio of the summed energies."""
    cols = ["model", "dataset", "answers", "median_ratio", "sum_ratio"]
    if per_answer.empty:
        return pd.DataFrame([], columns=cols)
    g = per_answer.groupby(["model", "dataset"], sort=True)
    out = pd.DataFrame({"answers": g.size(), "median_ratio": g["ratio"].median(),
                        "sum_ratio": g["start_j"].sum() / g["published_j"].sum()}).reset_index()
    return out[cols]


def run_shift(frame: pd.DataFrame) -> Shift:
    """Both windows of our own run, from its host stamps: ``energy_j`` vs ``completion_energy_j``."""
    if "completion_energy_j" not in frame.columns:
        empty = pd.DataFrame([], columns=RATIO_COLUMNS)
        return Shift("this run", pd.DataFrame(), empty, per_cell(empty), "This run stored no completion-stamped window.")
    rows = frame[frame["completion_energy_j"].notna() & frame["energy_j"].notna()]
    published = rows["completion_energy_j"].astype(float)
    per_answer = pd.DataFrame({
        "model": rows["model"], "dataset": rows["dataset"], "item": rows["item_id"],
        "duration_s": rows["total_s"], "published_j": published, "start_j": rows["energy_j"].astype(float),
        "ratio": np.where(published > 0, rows["energy_j"].astype(float) / published.where(published > 0), np.nan),
    }).reset_index(drop=True)
    words = ("Host-stamped window [send, last byte] against the authors' [last byte, last byte + total_duration], "
             "both measured on this run's meter. " + _ratio_words(per_answer, "this run's answers"))
    return Shift("this run", pd.DataFrame(), per_answer, per_cell(per_answer), words)
