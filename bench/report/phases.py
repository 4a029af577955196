"""Per-phase energy: what the prompt costs per token, what generation costs per token, and how the paper's J/token
(whole answer / generated tokens) relates to the decode-only figure.

Each per-token cost carries its error bound (the mean over the cell's answers of each window's bound, per token:
a bound of the mean, since the mean's error is at most the mean of the errors). A cell's phase value is *flagged*
when that bound allows an error above ``metrics.BOUND_TOL`` of it (``metrics.over_bound``), whatever the number of
samples behind it: short windows are dominated by how the meter samples the power step at their edges, and the
bound says by how much.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bench.report.metrics import BOUND_TOL, over_bound

log = logging.getLogger(__name__)

PHASE_COLUMNS = ["model", "base", "quant", "dataset", "n_answers", "j_per_prompt_token", "j_per_prompt_token_bound",
                 "j_per_gen_token_decode", "j_per_gen_token_decode_bound", "prefill_energy_share", "j_per_token",
                 "host_gap_s", "ttft_gap_s", "prefill_flagged", "decode_flagged", "prefill_excluded_n",
                 "decode_excluded_n", "prefill_over_bound_n", "decode_over_bound_n"]
PHASE_VALUES = {"prefill": "j_per_prompt_token", "decode": "j_per_gen_token_decode"}


def phase_table(cells_: pd.DataFrame) -> pd.DataFrame:
    """Per cell: J per prompt token (prefill) and J per generated token (decode) with their bounds and flags, the
    share of energy before the first token, the paper's J/token, and how many phase windows were excluded for
    coverage or were over the bound on their own."""
    out = cells_[[c for c in PHASE_COLUMNS if not c.endswith("_flagged")]].copy()
    for phase, metric in PHASE_VALUES.items():
        out[f"{phase}_flagged"] = over_bound(cells_[metric].to_numpy(), cells_[f"{metric}_bound"].to_numpy())
    return out[PHASE_COLUMNS]


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
    confident = both[~(both["prefill_flagged"] | both["decode_flagged"])]
    return (
        f"Over {len(both)} model x dataset cells the paper's J/token (whole-answer energy / generated tokens) is "
        f"{ratio.median():.2f}x the decode-only J per generated token (median; range {ratio.min():.2f}x for "
        f"{lo_model['model']} on {lo_model['dataset']} to {ratio.max():.2f}x for {hi_model['model']} on "
        f"{hi_model['dataset']}), because it also charges the prompt: on average {share:.0%} of an answer's energy "
        f"is spent before the first token. {len(both) - len(confident)} of these cells are flagged (a phase value "
        f"whose error bound allows an error above {BOUND_TOL:.0%} of it)."
    )
