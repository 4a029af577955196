"""Ours vs theirs: every published number next to the recomputed one, and the headline claims re-decided.

A number is *within* tolerance when ``|ours - theirs| <= tol``: accuracy uses an absolute tolerance (fractions),
everything else a relative one (``rel * |theirs|``). A published number whose model or dataset was not run is
reported as ``not run``, never as a failure. Claims are evaluated True/False with the numbers that decide them,
or None with the reason they cannot be decided on this run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.catalog import precision_group
from bench.report.aggregate import model_summary
from bench.report.published import published_cells, published_tables

log = logging.getLogger(__name__)

REL_TOL = 0.10
"""Relative tolerance for energy, latency, tokens and rates: within 10% of the published value."""
ACC_TOL = 0.05
"""Absolute tolerance for accuracy (fractions): within 5 percentage points."""
CLAIM_TOL = 0.10
"""A claimed reduction ("up to 79%") is reproduced when ours is within 10 percentage points of it."""
TOLERANCE_NOTE = (f"within tolerance: |ours - published| <= {ACC_TOL} for accuracy (absolute), "
                  f"<= {REL_TOL:.0%} of the published value otherwise; counts (n) are compared exactly")

COMPARE_COLUMNS = ["table", "row", "col", "stat", "ours", "theirs", "ratio", "diff", "tolerance", "within", "status"]


@dataclass(frozen=True)
class Claim:
    """One headline claim re-decided on the new data; ``holds`` is None when it cannot be evaluated."""

    key: str
    text: str
    published: str
    ours: str
    holds: bool | None
    deciding: dict = field(default_factory=dict)


def ours_cells_long(cells_: pd.DataFrame, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our per-model values per dataset and ``all`` in the long form of ``published_cells``."""
    metrics = ["accuracy", "energy_j", "j_per_token", "tokens", "latency_s", "tokens_per_s", "prefill_s", "gen_s",
               "load_s"]
    rows = []
    for _, r in cells_.iterrows():
        rows += [("cell", r["model"], r["dataset"], m, r[m]) for m in metrics]
        rows.append(("cell", r["model"], r["dataset"], "n_answers", r["n_answers"]))
    for _, r in (model_summary(cells_, metrics) if summary is None else summary).iterrows():
        rows += [("cell", r["model"], "all", m, r[m]) for m in metrics]
        rows.append(("cell", r["model"], "all", "n_answers", r["n_answers"]))
    return pd.DataFrame(rows, columns=["table", "row", "col", "stat", "value"])


def _tolerance(stat: str, theirs: float) -> float:
    if stat == "accuracy":
        return ACC_TOL
    if stat == "n_answers":
        return 0.0
    return REL_TOL * abs(theirs)


def compare_long(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Join on (table, row, col, stat); every published number gets a row."""
    keys = ["table", "row", "col", "stat"]
    m = theirs.merge(ours[keys + ["value"]], on=keys, how="left", suffixes=("_theirs", "_ours"))
    out = pd.DataFrame({k: m[k] for k in keys})
    out["ours"] = m["value_ours"].astype(float)
    out["theirs"] = m["value_theirs"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = np.where(out["theirs"] != 0, out["ours"] / out["theirs"], np.nan)
    out["diff"] = out["ours"] - out["theirs"]
    out["tolerance"] = [_tolerance(s, t) for s, t in zip(out["stat"], out["theirs"])]
    ran = out["ours"].notna()
    out["within"] = np.where(ran, (out["diff"].abs() <= out["tolerance"] + 1e-12), np.nan)
    out["status"] = np.where(ran, np.where(out["within"] == 1, "within", "outside"), "not run")
    return out[COMPARE_COLUMNS]


def models_of(cells_: pd.DataFrame) -> dict[str, tuple[str, str, frozenset]]:
    """Each model of the cells with its base, precision group and datasets (the input of ``table_members``)."""
    return {m: (blk["base"].iloc[0], blk["precision_group"].iloc[0], frozenset(blk["dataset"]))
            for m, blk in cells_.groupby("model")}


def table_members(models: dict[str, tuple[str, str, frozenset]], table: str, row: str, col: str) -> set[str]:
    """The models a table cell averages over: ``models`` maps tag -> (base, precision group, datasets)."""
    if table == "t10":
        return {m for m, (_, _, ds) in models.items() if col in ds}
    if table == "t4" or row == "avg":
        return {m for m, (b, _, _) in models.items() if b == col}
    if col == "avg":
        return {m for m, (_, g, _) in models.items() if g == row}
    return {m for m, (b, g, _) in models.items() if b == col and g == row}


def _mark_partial(out: pd.DataFrame, cells_: pd.DataFrame, pub: dict) -> pd.DataFrame:
    """A table cell averaging over other models (or fewer datasets) than the paper's is ``partial``, not judged."""
    theirs = {t: (m["base"], precision_group(m["quant"]), frozenset(m["datasets"])) for t, m in pub["models"].items()}
    ours = models_of(cells_)
    status = out["status"].copy()
    for i, r in out.iterrows():
        if r["status"] == "not run":
            continue
        mine = table_members(ours, r["table"], r["row"], r["col"])
        paper = table_members(theirs, r["table"], r["row"], r["col"])
        complete = all(theirs[m][2] <= ours[m][2] for m in paper & mine) or r["table"] == "t10"
        if mine != paper or not complete:
            status[i] = "partial"
    out["status"] = status
    out.loc[status == "partial", "within"] = np.nan
    return out


def compare(tables: pd.DataFrame, cells_: pd.DataFrame, pub: dict, energy_table: str = "t5", *,
            summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tables 4/5/9/10 and the per-model cells, ours vs published (``summary``: the cells' `model_summary`, if the
    caller has it).

    Status per number: ``within`` / ``outside`` tolerance, ``not run`` (no value of ours), or ``partial`` (a table
    cell whose value averages over a different set of models or datasets than the paper's: shown, not judged).
    """
    return pd.concat([
        _mark_partial(compare_long(tables, published_tables(pub, energy_table)), cells_, pub),
        compare_long(ours_cells_long(cells_, summary), published_cells(pub)),
    ], ignore_index=True)


def _cell(tables: pd.DataFrame, table: str, row: str, col: str) -> float:
    hit = tables[(tables["table"] == table) & (tables["row"] == row) & (tables["col"] == col)
                 & (tables["stat"] == "mean")]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def _reduction_claim(key: str, spec: dict, candidates: list[tuple[str, str, float, str, float]],
                     unit: str) -> Claim:
    """Largest reduction (1 - to/from) among (base, from, from_value, to, to_value) candidates vs the claim."""
    claimed = float(spec["value"])
    usable = [c for c in candidates if math.isfinite(c[2]) and math.isfinite(c[4]) and c[2] > 0]
    if not usable:
        return Claim(key, spec["text"], f"{claimed:.0%}", "n/a", None,
                     {"reason": "cannot be evaluated: no base model has an fp16 and a quantized version in this run"})
    best = max(usable, key=lambda c: 1 - c[4] / c[2])
    red = 1 - best[4] / best[2]
    holds = abs(red - claimed) <= CLAIM_TOL
    return Claim(key, spec["text"], f"{claimed:.0%}", f"{red:.1%}", holds, {
        "base": best[0], "from": best[1], "from_value": round(best[2], 4), "to": best[3], "to_value": round(best[4], 4),
        "unit": unit, "reduction": round(red, 4), "tolerance_pp": CLAIM_TOL * 100,
    })


def evaluate_claims(tables: pd.DataFrame, cells_: pd.DataFrame, fronts_: dict[str, list[str]],
                    pub: dict, *, summary: pd.DataFrame | None = None) -> list[Claim]:
    """Re-decide each headline claim of ``published.json`` on this run's numbers (``summary``: the cells'
    `model_summary`, if the caller has it)."""
    specs = pub["claims"]
    if summary is None:
        summary = model_summary(cells_, ["j_per_token"])
    # 1. J/token: each model's "all" value against its base's fp16 model.
    cand = []
    for base, block in summary.groupby("base"):
        fp = block[block["quant"] == "fp16"]
        if len(fp):
            for _, r in block[block["quant"] != "fp16"].iterrows():
                cand.append((base, "fp16", float(fp["j_per_token"].iloc[0]), r["quant"], float(r["j_per_token"])))
    claims = [_reduction_claim("energy_per_token_reduction", specs["energy_per_token_reduction"], cand, "J/token")]
    # 2. Latency: Table 9 precision-group cells against the same base's fp16 cell (as the paper's 31.40 -> 9.84).
    t9 = tables[(tables["table"] == "t9") & (tables["stat"] == "mean")]
    cand = []
    for base in sorted(set(t9["col"]) - {"avg"}):
        start = _cell(tables, "t9", "fp16", base)
        for group in sorted(set(t9["row"]) - {"avg", "fp16"}):
            cand.append((base, "fp16", start, group, _cell(tables, "t9", group, base)))
    claims.append(_reduction_claim("latency_reduction", specs["latency_reduction"], cand, "s"))
    # 3./4. Precision groups by Table 5's avg column.
    t5 = tables[(tables["table"] == "t5") & (tables["col"] == "avg") & (tables["row"] != "avg")]
    avgs = {r: float(v) for r, v in zip(t5["row"], t5["value"]) if math.isfinite(v)}
    spec = specs["cheapest_group_per_answer"]
    if "q8_0" in avgs and len(avgs) >= 2:
        cheapest = min(avgs, key=avgs.get)
        claims.append(Claim("cheapest_group_per_answer", spec["text"], spec["value"], cheapest,
                            cheapest == spec["value"], {"table5_avg_j": {k: round(v, 2) for k, v in avgs.items()}}))
    else:
        claims.append(Claim("cheapest_group_per_answer", spec["text"], spec["value"], "n/a", None,
                            {"reason": "cannot be evaluated: needs q8_0 and at least one other precision group",
                             "table5_avg_j": avgs}))
    spec = specs["group_order_per_answer"]
    if set(spec["value"]) <= set(avgs):
        order = sorted(spec["value"], key=avgs.get)
        claims.append(Claim("group_order_per_answer", spec["text"], " < ".join(spec["value"]), " < ".join(order),
                            order == list(spec["value"]), {"table5_avg_j": {k: round(avgs[k], 2) for k in order}}))
    else:
        missing = sorted(set(spec["value"]) - set(avgs))
        claims.append(Claim("group_order_per_answer", spec["text"], " < ".join(spec["value"]), "n/a", None,
                            {"reason": f"cannot be evaluated: precision groups not run: {', '.join(missing)}"}))
    # 5. Pareto fronts per dataset and over all tasks.
    ran = set(cells_["model"])
    for ds, theirs in pub["fronts"].items():
        text = f"{pub['claims']['pareto_fronts']['text']} [{ds}]"
        needed = {t for t, m in pub["models"].items() if ds == "all" or ds in m["datasets"]}
        not_run = sorted(needed - set(cells_.loc[cells_["dataset"] == ds, "model"] if ds != "all" else ran))
        if not_run:
            shown = not_run[:3] + ([f"... {len(not_run) - 3} more"] if len(not_run) > 3 else [])
            claims.append(Claim(f"pareto_front_{ds}", text, f"{len(theirs)} models", "n/a", None, {
                "reason": f"cannot be evaluated: {len(not_run)} of the paper's models not run on {ds}",
                "not_run": shown}))
            continue
        ours = fronts_.get(ds, [])
        missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        claims.append(Claim(f"pareto_front_{ds}", text, f"{len(theirs)} models",
                            f"{len(ours)} models, {len(set(ours) & set(theirs))} shared", not missing and not extra,
                            {"missing": missing, "extra": extra}))
    log.info("claims: %s", {c.key: c.holds for c in claims})
    return claims


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": c.key, "text": c.text, "published": c.published, "ours": c.ours,
                          "holds": c.holds, "deciding": c.deciding} for c in claims])
