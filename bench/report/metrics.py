"""Per-answer metrics: the paper's definitions applied to one row of the answers frame.

Everything downstream (cells, tables, fronts, numbers.json) is a mean of one of these columns, so a definition
lives here once. Ratios are computed per answer and then averaged (the paper's "mean of ratios").
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bench.errors import ResultsError

log = logging.getLogger(__name__)

DATASETS = ("commonsenseqa", "bigbenchhard", "gsm8k", "truthfulqa", "humaneval")
"""The paper's five datasets; ``all`` is the unweighted mean over them."""

IDENTITY = ("model", "base", "quant", "precision_group", "size_bytes", "dataset")
"""Who answered what: the model facts come with the frame (a run's own snapshot), never from the catalog."""

MIN_PHASE_SAMPLES = 4
"""A phase window with fewer meter samples than this is low-confidence (at 2 Hz: under ~2 s)."""

# metric name -> (what it is, unit). Order is the order of columns in cells.csv.
METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("fraction of scored answers that are correct", "fraction"),
    "energy_j": ("idle-subtracted energy per answer", "J"),
    "j_per_token": ("energy per answer / generated tokens, per answer then averaged (the paper's J/token)", "J/token"),
    "tokens": ("generated tokens (eval_count)", "tokens"),
    "latency_s": ("backend total duration (load + prefill + generation)", "s"),
    "tokens_per_s": ("generation rate eval_count / eval_s", "tokens/s"),
    "prefill_s": ("prompt evaluation seconds", "s"),
    "gen_s": ("generation seconds", "s"),
    "load_s": ("model load seconds", "s"),
    "ttft_s": ("host time to first token", "s"),
    "prefill_energy_j": ("idle-subtracted energy before the first token (load + prefill)", "J"),
    "decode_energy_j": ("idle-subtracted energy from first to last token", "J"),
    "j_per_prompt_token": ("prefill energy / prompt tokens", "J/token"),
    "j_per_gen_token_decode": ("decode energy / generated tokens", "J/token"),
    "prefill_energy_share": ("share of the answer's energy spent before the first token", "fraction"),
    "host_gap_s": ("host-stamped answer time minus the backend's total_duration (transport, queueing, client)", "s"),
    "ttft_gap_s": ("host time to first token minus the backend's load + prompt-eval durations", "s"),
}

PHASE_METRICS = {
    "prefill_energy_j": "prefill",
    "j_per_prompt_token": "prefill",
    "decode_energy_j": "decode",
    "j_per_gen_token_decode": "decode",
    "prefill_energy_share": "both",
}

_NUMERIC_INPUTS = (
    "correct", "energy_j", "eval_count", "prompt_eval_count", "total_s", "eval_s", "prompt_eval_s", "load_s",
    "ttft_s", "prefill_energy_j", "decode_energy_j", "prefill_n_samples", "decode_n_samples", "host_total_s",
)


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric column as float64, all-NaN when the frame lacks it (older runs, the authors' data)."""
    if name in frame.columns:
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return np.full(len(frame), np.nan)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(len(num), np.nan)
    ok = np.isfinite(num) & np.isfinite(den) & (den > 0)
    out[ok] = num[ok] / den[ok]
    return out


def answered(frame: pd.DataFrame) -> pd.Series:
    """Rows that are recorded answers: status ``ok`` (a frame without a status column counts every row)."""
    if "status" not in frame.columns:
        return pd.Series(True, index=frame.index)
    status = frame["status"].astype("object")
    return status.isna() | (status == "ok")


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per recorded answer: the identity columns plus every metric of ``METRICS`` (NaN where unknown).

    Timeouts, errors and skips are left out here; ``cells`` counts them separately.
    """
    missing = [c for c in ("model", "dataset") if c not in frame.columns]
    if missing:
        raise ResultsError(f"answers frame: missing columns {missing}; expected the columns of docs/internals.md")
    rows = frame.loc[answered(frame)]
    out = pd.DataFrame(index=rows.index)
    for name in IDENTITY:
        out[name] = rows[name].astype("object") if name in rows.columns else None
    c = {name: _col(rows, name) for name in _NUMERIC_INPUTS}
    out["accuracy"] = c["correct"]
    out["energy_j"] = c["energy_j"]
    out["j_per_token"] = _ratio(c["energy_j"], c["eval_count"])
    out["tokens"] = c["eval_count"]
    out["latency_s"] = c["total_s"]
    out["tokens_per_s"] = _ratio(c["eval_count"], c["eval_s"])
    out["prefill_s"] = c["prompt_eval_s"]
    out["gen_s"] = c["eval_s"]
    out["load_s"] = c["load_s"]
    out["ttft_s"] = c["ttft_s"]
    out["prefill_energy_j"] = c["prefill_energy_j"]
    out["decode_energy_j"] = c["decode_energy_j"]
    out["j_per_prompt_token"] = _ratio(c["prefill_energy_j"], c["prompt_eval_count"])
    out["j_per_gen_token_decode"] = _ratio(c["decode_energy_j"], c["eval_count"])
    both = c["prefill_energy_j"] + c["decode_energy_j"]
    out["prefill_energy_share"] = _ratio(c["prefill_energy_j"], both)
    # How far the backend's own accounting is from the host stamps the energy windows use.
    out["host_gap_s"] = c["host_total_s"] - c["total_s"]
    out["ttft_gap_s"] = c["ttft_s"] - (np.nan_to_num(c["load_s"]) + c["prompt_eval_s"])
    # Low-confidence phase windows: known sample count below the threshold (unknown counts are not flagged).
    out["prefill_low_conf"] = np.isfinite(c["prefill_n_samples"]) & (c["prefill_n_samples"] < MIN_PHASE_SAMPLES)
    out["decode_low_conf"] = np.isfinite(c["decode_n_samples"]) & (c["decode_n_samples"] < MIN_PHASE_SAMPLES)
    log.debug("derived %d answer rows from %d frame rows", len(out), len(frame))
    return out
