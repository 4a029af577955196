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

IDENTITY = ("model", "base", "quant", "precision_group", "size_bytes", "dataset")
"""Who answered what: the model facts come with the frame (a run's own snapshot), never from the catalog."""

COVERAGE_MIN = 0.95
"""A window's energy enters the means only when the meter saw at least this share of it; between this and 1 it is
kept (its energy is of the measured part: at most 5% low) and the cell says how many such answers it holds."""

BOUND_TOL = 0.05
"""A cell's phase value (J per prompt token, J per output token) is flagged when its error bound allows an error
above this share of the true value (``over_bound``); so is a window, when counting a cell's windows over it."""

WINDOWS = {"energy": "", "prefill": "prefill_", "decode": "decode_"}
"""Each metered window and the prefix of its frame columns (``coverage``, ``prefill_coverage``, ...)."""

COUNT_FLAGS = ("energy_excluded", "energy_partial", "prefill_excluded", "decode_excluded", "prefill_over_bound",
               "decode_over_bound")
"""Per-answer booleans of ``derive`` that ``aggregate.cells`` counts per cell as ``<flag>_n``."""

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
    "j_per_prompt_token": ("prefill energy / evaluated prompt tokens (prompt_eval_count minus the tokens Ollama "
                           "reused from its prompt cache, where known)", "J/token"),
    "j_per_gen_token_decode": ("decode energy / generated tokens", "J/token"),
    "prefill_energy_share": ("share of the answer's energy spent before the first token", "fraction"),
    "energy_bound_j": ("error bound of energy_j: sampling at the window edges + the meter's declared uncertainty", "J"),
    "j_per_token_bound": ("error bound of j_per_token", "J/token"),
    "prefill_energy_bound_j": ("error bound of prefill_energy_j", "J"),
    "decode_energy_bound_j": ("error bound of decode_energy_j", "J"),
    "j_per_prompt_token_bound": ("error bound of j_per_prompt_token", "J/token"),
    "j_per_gen_token_decode_bound": ("error bound of j_per_gen_token_decode", "J/token"),
    "host_gap_s": ("host-stamped answer time minus the backend's total_duration (transport, queueing, client)", "s"),
    "ttft_gap_s": ("host time to first token minus the backend's load + prompt-eval durations", "s"),
}

BOUNDS = {m: m.replace("_bound", "") for m in METRICS if "_bound" in m}
"""Each bound metric and the metric it bounds (``energy_bound_j`` -> ``energy_j``)."""

_NUMERIC_INPUTS = (
    "correct", "eval_count", "prompt_eval_count", "prompt_cached_tokens", "total_s", "eval_s", "prompt_eval_s",
    "load_s", "ttft_s", "host_total_s",
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


def _window(frame: pd.DataFrame, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(energy, bound, excluded, partial) of one window, by the coverage rule: a window the meter saw less than
    ``COVERAGE_MIN`` of has no energy here; an unknown coverage (the authors' data) is not judged."""
    cov = _col(frame, f"{prefix}coverage")
    energy = _col(frame, f"{prefix}energy_j")
    known = np.isfinite(cov)
    excluded = known & ((cov < COVERAGE_MIN) | ~np.isfinite(energy))
    partial = known & ~excluded & (cov < 1.0)
    energy = np.where(excluded, np.nan, energy)
    bound = np.where(np.isfinite(energy), _col(frame, f"{prefix}energy_bound_j"), np.nan)
    return energy, bound, excluded, partial


def over_bound(value: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """True where the bound allows an error above ``BOUND_TOL`` of the *true* value, which is at least
    ``|value| - bound``; so a value left unflagged is within BOUND_TOL of the truth. An unknown bound is not a flag."""
    value, bound = np.asarray(value, dtype=float), np.asarray(bound, dtype=float)
    return np.isfinite(bound) & np.isfinite(value) & (bound > BOUND_TOL * (np.abs(value) - bound))


def drop_partial_bounds(cells_: pd.DataFrame) -> pd.DataFrame:
    """A cell's mean bound is a bound of its mean only if every answer in that mean has one: else it is unknown."""
    for bound, metric in BOUNDS.items():
        short = cells_[f"{bound}_n"] < cells_[f"{metric}_n"]
        cells_.loc[short, [bound, f"{bound}_sd"]] = np.nan
    return cells_


def evaluated_prompt_tokens(prompt_eval_count: np.ndarray, cached: np.ndarray) -> np.ndarray:
    """Prompt tokens the server evaluated: Ollama's ``prompt_eval_count`` counts the cached prefix it reused too
    (runner/llamarunner at v0.6.0), so the cached tokens come off where they are known."""
    return prompt_eval_count - np.nan_to_num(cached)


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
    for window, prefix in WINDOWS.items():
        energy, bound, excluded, partial = _window(rows, prefix)
        c[f"{prefix}energy_j"], c[f"{prefix}energy_bound_j"] = energy, bound
        out[f"{window}_excluded"] = excluded
        if window == "energy":
            out["energy_partial"] = partial
    out["accuracy"] = c["correct"]
    out["energy_j"] = c["energy_j"]
    out["j_per_token"] = _ratio(c["energy_j"], c["eval_count"])
    out["energy_bound_j"] = c["energy_bound_j"]
    out["j_per_token_bound"] = _ratio(c["energy_bound_j"], c["eval_count"])
    out["tokens"] = c["eval_count"]
    out["latency_s"] = c["total_s"]
    out["tokens_per_s"] = _ratio(c["eval_count"], c["eval_s"])
    out["prefill_s"] = c["prompt_eval_s"]
    out["gen_s"] = c["eval_s"]
    out["load_s"] = c["load_s"]
    out["ttft_s"] = c["ttft_s"]
    out["prefill_energy_j"] = c["prefill_energy_j"]
    out["decode_energy_j"] = c["decode_energy_j"]
    out["j_per_prompt_token"] = _ratio(c["prefill_energy_j"], evaluated_prompt_tokens(c["prompt_eval_count"],
                                                                                   c["prompt_cached_tokens"]))
    out["j_per_gen_token_decode"] = _ratio(c["decode_energy_j"], c["eval_count"])
    out["prefill_energy_bound_j"] = c["prefill_energy_bound_j"]
    out["decode_energy_bound_j"] = c["decode_energy_bound_j"]
    out["j_per_prompt_token_bound"] = _ratio(c["prefill_energy_bound_j"],
                                             evaluated_prompt_tokens(c["prompt_eval_count"], c["prompt_cached_tokens"]))
    out["j_per_gen_token_decode_bound"] = _ratio(c["decode_energy_bound_j"], c["eval_count"])
    out["prefill_over_bound"] = over_bound(c["prefill_energy_j"], c["prefill_energy_bound_j"])
    out["decode_over_bound"] = over_bound(c["decode_energy_j"], c["decode_energy_bound_j"])
    both = c["prefill_energy_j"] + c["decode_energy_j"]
    out["prefill_energy_share"] = _ratio(c["prefill_energy_j"], both)
    # How far the backend's own accounting is from the host stamps the energy windows use.
    out["host_gap_s"] = c["host_total_s"] - c["total_s"]
    out["ttft_gap_s"] = c["ttft_s"] - (np.nan_to_num(c["load_s"]) + c["prompt_eval_s"])
    log.debug("derived %d answer rows from %d frame rows", len(out), len(frame))
    return out
