"""How good each energy figure is, said next to it: the error bound carried by the answers' windows and the answers
the coverage rule left out (or kept, partially measured), for every energy number of Tables 4 and 5 and of the
per-model results; the same counts and bounds go into notes and ``numbers.json``.

Bounds aggregate exactly like the values they bound (a mean's error is at most the mean of the errors), so the
bound of a Table 5 cell is Table 5's averaging applied to the cells' mean bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.report.aggregate import group_by_base, model_summary, paper_cells, table4
from bench.report.compare import models_of, table_members
from bench.report.metrics import BOUND_TOL, COUNT_FLAGS, COVERAGE_MIN

MODEL_METRICS = {"energy_j": "energy_bound_j", "j_per_token": "j_per_token_bound"}
PHASE_BOUNDS = ("j_per_prompt_token", "j_per_gen_token_decode")


@dataclass(frozen=True)
class Quality:
    """What stands next to one energy figure: its error bound, and the answers the coverage rule excluded from it
    or kept with a partially measured window."""

    bound: float
    excluded: int
    partial: int

    def text(self, digits: int = 2) -> str:
        parts = [f"meter ±{self.bound:.{digits}f}"] if math.isfinite(self.bound) else []
        if self.excluded:
            parts.append(f"{self.excluded} excl.: coverage < {COVERAGE_MIN:g}")
        if self.partial:
            parts.append(f"{self.partial} partial")
        return f"[{'; '.join(parts)}]" if parts else ""


def _bound_tables(cells_: pd.DataFrame) -> pd.DataFrame:
    t4 = table4(cells_, "j_per_token_bound")
    return pd.concat([t4[t4["stat"] == "mean"], group_by_base(cells_, "energy_bound_j", "t5", "models")],
                     ignore_index=True)


def qualities(cells_: pd.DataFrame, *,
              summary: pd.DataFrame | None = None) -> dict[tuple[str, str, str, str], Quality]:
    """Keyed like the comparison's rows, ``(table, row, col, stat)``: Tables 4 and 5 as ``(t4|t5, row, col,
    "mean")``, each model's figures per dataset and over all as ``("cell", model, dataset|"all", metric)``
    (``summary``: the cells' `model_summary`, if the caller has it)."""
    pc = paper_cells(cells_)
    models = models_of(pc)
    excluded = pc.groupby("model")["energy_excluded_n"].sum()
    partial = pc.groupby("model")["energy_partial_n"].sum()
    out = {}
    for r in _bound_tables(cells_).itertuples():
        members = sorted(table_members(models, r.table, r.row, r.col))
        out[(r.table, r.row, r.col, "mean")] = Quality(float(r.value), int(excluded[members].sum()),
                                                       int(partial[members].sum()))
    for r in cells_.itertuples():
        for metric, bound in MODEL_METRICS.items():
            out[("cell", r.model, r.dataset, metric)] = Quality(float(getattr(r, bound)), int(r.energy_excluded_n),
                                                                int(r.energy_partial_n))
    if summary is None:
        summary = model_summary(cells_, list(MODEL_METRICS.values()))
    for r in summary.itertuples():
        for metric, bound in MODEL_METRICS.items():
            out[("cell", r.model, "all", metric)] = Quality(float(getattr(r, bound)), int(excluded[r.model]),
                                                            int(partial[r.model]))
    return out


def marks(quals: dict[tuple[str, str, str, str], Quality]) -> dict[tuple[str, str, str, str], str]:
    """The text shown after each energy figure (only where there is something to say)."""
    return {k: t for k, q in quals.items()
            if (t := q.text(digits=3 if k[0] == "t4" or k[3] == "j_per_token" else 2))}


def notes(cells_: pd.DataFrame, uncertainty: str | None) -> list[str]:
    """The coverage rule's totals and where the bounds come from, for the report's notes."""
    n = {flag: int(cells_[f"{flag}_n"].sum()) for flag in COUNT_FLAGS}
    hit = int((cells_["energy_excluded_n"] > 0).sum())
    out = []
    if n["energy_excluded"] or n["energy_partial"] or n["prefill_excluded"] or n["decode_excluded"]:
        out.append(
            f"Coverage rule: a window's energy enters the means only when the meter saw at least {COVERAGE_MIN:.0%} of "
            f"it. {n['energy_excluded']} answers in {hit} cells had their energy excluded (accuracy and latency "
            f"still count), {n['energy_partial']} were kept with coverage in [{COVERAGE_MIN:g}, 1) (energy of the "
            f"measured part, at most {1 - COVERAGE_MIN:.0%} low), and {n['prefill_excluded']} prefill / "
            f"{n['decode_excluded']} decode windows were excluded from the per-phase figures; each affected number "
            f"says so (cells.csv has the counts per cell).")
    if cells_["energy_bound_j"].notna().any():
        out.append(
            "\"meter ±\" after an energy figure bounds its systematic error: how the meter sampled the power change "
            "at each window's edges plus the meter's declared uncertainty; the ± before it is the 95% interval over "
            f"answers. Meter uncertainty: {uncertainty or 'not recorded'}.")
    else:
        out.append("These answers carry no per-window error bound (data recorded without one): energy figures are "
                   "shown without a meter bound.")
    over = n["prefill_over_bound"] + n["decode_over_bound"]
    if over:
        out.append(f"{n['prefill_over_bound']} prefill and {n['decode_over_bound']} decode windows have an error bound "
                   f"that allows more than {BOUND_TOL:.0%} of their energy (short windows: the edges dominate).")
    return out


def key_values(cells_: pd.DataFrame, quals: dict[tuple[str, str, str, str], Quality],
               phase_tab: pd.DataFrame) -> dict[str, float]:
    """For ``numbers.json``: per-cell coverage counts, the bounds of Tables 4/5 and per-model figures, and each
    cell's per-phase values with their bounds and flags (all recomputed by ``recompute_check``)."""
    values: dict[str, float] = {}
    for r in cells_.itertuples():
        for flag in COUNT_FLAGS:
            values[f"coverage/{r.model}/{r.dataset}/{flag}"] = float(getattr(r, f"{flag}_n"))
    for key, q in quals.items():
        values["bound/" + "/".join(key)] = q.bound
    for r in phase_tab.itertuples():
        for metric in PHASE_BOUNDS:
            values[f"phase/{r.model}/{r.dataset}/{metric}"] = float(getattr(r, metric))
            values[f"phase/{r.model}/{r.dataset}/{metric}_bound"] = float(getattr(r, f"{metric}_bound"))
        values[f"phase/{r.model}/{r.dataset}/flagged"] = float(r.prefill_flagged) + 2 * float(r.decode_flagged)
    return values


RULE = {"coverage_min": COVERAGE_MIN, "bound_tolerance": BOUND_TOL,
        "flagged": "phase/*/flagged: 0 none, 1 prefill, 2 decode, 3 both (bound > bound_tolerance x (value - bound))"}
