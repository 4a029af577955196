"""Per-phase energy: what the prompt costs per token, what generation costs per token, and how the paper's J/token
(whole answer / generated tokens) relates to the decode-only figure.

A phase value of a cell is *low-confidence* when more than half of its answers had a phase window with fewer than
``metrics.MIN_PHASE_SAMPLES`` meter samples (short windows are dominated by the edge quantisation of the meter).
"""

from __future__ import annotations

import logging
import numpy as np
import pandas as pd

from bench.report.metrics import MIN_PHASE_SAMPLES

log = logging.getLogger(__name__)

LOW_CONF_SHARE = 0.5
PHASE_COLUMNS = ["model", "base", "quant", "dataset", "n_answers", "j_per_prompt_token", "j_per_gen_token_decode",
                 "prefill_energy_share", "j_per_token", "host_gap_s", "ttft_gap_s", "prefill_low_conf",
                 "decode_low_conf"]


def phase_table(cells_: pd.DataFrame) -> pd.DataFrame:
    """Per cell: J per prompt token (prefill), J per generated token (decode), share of energy before the first
    token, the paper's J/token, and the low-confidence flags."""
    out = cells_[["model", "base", "quant", "dataset", "n_answers", "j_per_prompt_token", "j_per_gen_token_decode",
                  "prefill_energy_share", "j_per_token", "host_gap_s", "ttft_gap_s"]].copy()
    n = cells_["n_answers"].where(cells_["n_answers"] > 0)
    out["prefill_low_conf"] = (cells_["prefill_low_conf_n"] / n) > LOW_CONF_SHARE
    out["decode_low_conf"] = (cells_["decode_low_conf_n"] / n) > LOW_CONF_SHARE
    return out[PHASE_COLUMNS]


def has_phases(cells_: pd.DataFrame) -> bool:
    return bool(cells_["j_per_gen_token_decode"].notna().any())


def jpt_vs_decode_note(phases: pd.DataFrame) -> str:
    """One sentence, from the data, on how the paper's J/token compares with the decode-only J per generated token."""
    both = phases[np.isfinite(phases["j_per_token"]) & np.isfinite(phases["j_per_gen_token_decode"])
                  & (phases["j_per_gen_token_decode"] > 0)]
    if both.empty:
        return ("The paper's J/token could not be compared with the decode-only figure: this run has no per-phase "
                "energy (prefill_/decode_ columns are empty).")
    ratio = both["j_per_token"] / both["j_per_gen_token_decode"]
    share = float(both["prefill_energy_share"].mean())
    lo_model = both.loc[ratio.idxmin()]
    hi_model = both.loc[ratio.idxmax()]
    confident = both[~(both["prefill_low_conf"] | both["decode_low_conf"])]
    return (
        f"Over {len(both)} model x dataset cells the paper's J/token (whole-answer energy / generated tokens) is "
        f"{ratio.median():.2f}x the decode-only J per generated token (median; range {ratio.min():.2f}x for "
        f"{lo_model['model']} on {lo_model['dataset']} to {ratio.max():.2f}x for {hi_model['model']} on "
        f"{hi_model['dataset']}), because it also charges the prompt: on average {share:.0%} of an answer's energy "
        f"is spent before the first token. {len(both) - len(confident)} of these cells are low-confidence "
        f"(most phase windows under {MIN_PHASE_SAMPLES} meter samples)."
    )
