"""From answers to the paper's numbers, through one intermediate: the *cells* table.

A cell is one (model, dataset) pair with, for every metric of ``metrics.METRICS``, its mean, sample sd and count
(columns ``m``, ``m_sd``, ``m_n``). Every table, front and plot is computed from cells, so a run's answers frame and
the authors' published per-(model, dataset) aggregates go through the same table code (``authors.load_authors_cells``
builds cells directly). Pooled means are exact from (mean, sd, n); see ``stats``.

The paper's tables, as reverse-engineered from the authors' aggregates (each reproduces the published 2 decimals):

* Table 4 (J/token by base): mean over the base's models of each model's unweighted mean over datasets; the "±" is
  the mean over the base's (model, dataset) cells of the within-cell sample sd.
* Table 5 (energy per answer, precision group x base): mean over the group's models of each model's unweighted mean
  over datasets; the ``avg`` row and column are unweighted means of the table's cells.
* Table 9 (latency, group x base): the pooled mean over all answers of the group's models; ``avg`` as Table 5.
* Table 10 (latency by dataset): the pooled mean over all answers on the dataset.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from bench.catalog import precision_group
from bench.report.metrics import COUNT_FLAGS, IDENTITY, METRICS, answered, derive, drop_partial_bounds
from bench.report.stats import Estimate, Z, mean_of, pooled
from bench.suite import PAPER_DATASETS

log = logging.getLogger(__name__)

GROUP_ORDER = ("fp16", "q8_0", "q4", "q3")
TABLE_COLUMNS = ["table", "row", "col", "stat", "value", "half", "n"]


def _fill_identity(cells: pd.DataFrame) -> pd.DataFrame:
    """Where the frame carries no model facts (a run stored before its identity was snapshotted), a model is its
    own base with an unknown quant; today's catalog is never consulted for a stored run."""
    for col in ("base", "quant", "precision_group"):
        cells[col] = cells[col].astype(object) if col in cells.columns else None
    missing = cells["base"].isna() | (cells["base"] == "")
    cells.loc[missing, "base"] = cells.loc[missing, "model"]
    cells.loc[cells["quant"].isna() | (cells["quant"] == ""), "quant"] = "unknown"
    group = cells["precision_group"].isna() | (cells["precision_group"] == "")
    cells.loc[group, "precision_group"] = [precision_group(q) for q in cells.loc[group, "quant"]]
    return cells


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset): counts, and mean/sd/n of every metric over the recorded answers."""
    derived = derive(frame)
    keys = ["model", "dataset"]
    metric_cols = list(METRICS)
    grouped = derived.groupby(keys, sort=True)
    means = grouped[metric_cols].mean()
    sds = grouped[metric_cols].std(ddof=1)
    ns = grouped[metric_cols].count()
    flags = grouped[list(COUNT_FLAGS)].sum()
    # Identity and counts from every row, so a cell whose answers all failed still has its base and quant.
    all_rows = frame.assign(_ok=answered(frame))
    for col in IDENTITY:
        if col not in all_rows.columns:
            all_rows[col] = None
    raw_groups = all_rows.groupby(keys, sort=True)
    raw = raw_groups["_ok"].agg(["size", "sum"])
    ident = raw_groups[[c for c in IDENTITY if c not in keys]].first()
    parts = [ident]
    for m in metric_cols:
        parts.append(pd.DataFrame({m: means[m], f"{m}_sd": sds[m], f"{m}_n": ns[m]}))
    out = pd.concat(parts, axis=1)
    out = out.join(raw.rename(columns={"size": "n_rows", "sum": "n_answers"}), how="left")
    out["n_failed"] = out["n_rows"] - out["n_answers"]
    for flag in COUNT_FLAGS:
        out[f"{flag}_n"] = flags[flag].reindex(out.index).fillna(0).astype(int)
    out = out.reset_index()
    out = _fill_identity(out)
    for m in metric_cols:
        out[f"{m}_n"] = out[f"{m}_n"].fillna(0).astype(int)
    drop_partial_bounds(out)
    log.info("aggregated %d answers into %d cells", len(derived), len(out))
    return out


def _datasets_for(cells_: pd.DataFrame) -> list[str]:
    """The datasets "all" averages over: the paper's five where present, else whatever the run has."""
    present = [d for d in PAPER_DATASETS if d in set(cells_["dataset"])]
    return present or sorted(set(cells_["dataset"]))


def paper_cells(cells_: pd.DataFrame) -> pd.DataFrame:
    """Cells of the datasets that enter "all" and the paper's tables."""
    return cells_[cells_["dataset"].isin(_datasets_for(cells_))]


def _model_all_frame(cells_: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Vectorised ``stats.mean_of`` over each model's cells: columns mean, half, n (index: model)."""
    pc = paper_cells(cells_)
    mean = pc[metric].to_numpy(dtype=float)
    n = pc[f"{metric}_n"].to_numpy(dtype=float)
    sd = pc[f"{metric}_sd"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(n >= 2, sd / np.sqrt(n), np.nan)
    finite = np.isfinite(mean)
    parts = pd.DataFrame({
        "model": pc["model"].to_numpy(), "k": finite.astype(int), "sum": np.where(finite, mean, 0.0),
        "se2": np.where(finite & np.isfinite(se), se**2, 0.0), "bad": (finite & ~np.isfinite(se)).astype(int),
        "n": np.where(finite, n, 0.0),
    })
    g = parts.groupby("model", sort=False).sum()
    k = g["k"].where(g["k"] > 0)
    return pd.DataFrame({
        "mean": g["sum"] / k,
        "half": (Z * np.sqrt(g["se2"]) / k).where(g["bad"] == 0),
        "n": g["n"].astype(int),
    })


def model_all(cells_: pd.DataFrame, metric: str) -> dict[str, Estimate]:
    """Each model's unweighted mean over its datasets' cell means ("all" in the paper), with propagated CI."""
    f = _model_all_frame(cells_, metric)
    return {m: Estimate(float(r["mean"]), float(r["half"]), int(r["n"])) for m, r in f.iterrows()}


def model_summary(cells_: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per model: identity, number of datasets, and the "all" mean and CI half-width of each metric."""
    metrics = metrics or list(METRICS)
    pc = paper_cells(cells_)
    facts = [c for c in IDENTITY if c not in ("model", "dataset") and c in pc.columns]
    ident = pc.groupby("model", sort=False)[facts].first()
    ident["n_datasets"] = pc.groupby("model", sort=False)["dataset"].nunique()
    ident["n_answers"] = pc.groupby("model", sort=False)["n_answers"].sum()
    for m in metrics:
        f = _model_all_frame(cells_, m).reindex(ident.index)
        ident[m] = f["mean"]
        ident[f"{m}_half"] = f["half"]
    return ident.reset_index()


def _ordered(values, order) -> list:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def _rows(table: str, grid: dict[tuple[str, str], Estimate], stat: str = "mean") -> list[dict]:
    return [
        {"table": table, "row": r, "col": c, "stat": stat, "value": e.mean, "half": e.half, "n": e.n}
        for (r, c), e in grid.items()
    ]


def _with_averages(grid: dict[tuple[str, str], Estimate], rows: list[str], cols: list[str]) -> None:
    """Add the paper's ``avg`` column (per row) and ``avg`` row (per column): unweighted means of the cells."""
    for r in rows:
        grid[(r, "avg")] = mean_of([grid[(r, c)] for c in cols if (r, c) in grid])
    for c in cols:
        grid[("avg", c)] = mean_of([grid[(r, c)] for r in rows if (r, c) in grid])


def group_by_base(cells_: pd.DataFrame, metric: str, table: str, how: str) -> pd.DataFrame:
    """A precision-group x base table of ``metric``: ``how`` is ``models`` (Table 5) or ``pooled`` (Table 9)."""
    pc = paper_cells(cells_)
    rows = _ordered(pc["precision_group"], GROUP_ORDER)
    cols = _ordered(pc["base"], ())
    per_model = model_all(cells_, metric) if how == "models" else {}
    grid: dict[tuple[str, str], Estimate] = {}
    for (g, b), block in pc.groupby(["precision_group", "base"], sort=False):
        if how == "models":
            grid[(g, b)] = mean_of([per_model[m] for m in block["model"].unique()])
        else:
            grid[(g, b)] = pooled(*_triples(block, metric))
    grid = {k: grid[k] for k in ((r, c) for r in rows for c in cols) if k in grid}
    _with_averages(grid, rows, cols)
    return pd.DataFrame(_rows(table, grid), columns=TABLE_COLUMNS)


def _triples(block: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        block[metric].to_numpy(dtype=float),
        block[f"{metric}_sd"].to_numpy(dtype=float),
        block[f"{metric}_n"].to_numpy(dtype=float),
    )


def table4(cells_: pd.DataFrame, metric: str = "j_per_token") -> pd.DataFrame:
    """Energy per token by base: mean (over models of the 5-dataset mean) and the mean within-cell sd (``metric``
    is another per-token column, e.g. its error bound, through the same averaging)."""
    pc = paper_cells(cells_)
    per_model = model_all(cells_, metric)
    out = []
    for b in _ordered(pc["base"], ()):
        block = pc[pc["base"] == b]
        est = mean_of([per_model[m] for m in block["model"].unique()])
        sd = float(block[f"{metric}_sd"].mean())
        out.append({"table": "t4", "row": "j_per_token", "col": b, "stat": "mean", "value": est.mean,
                    "half": est.half, "n": est.n})
        out.append({"table": "t4", "row": "j_per_token", "col": b, "stat": "sd", "value": sd,
                    "half": math.nan, "n": est.n})
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def table5(cells_: pd.DataFrame) -> pd.DataFrame:
    return group_by_base(cells_, "energy_j", "t5", "models")


def table9(cells_: pd.DataFrame) -> pd.DataFrame:
    return group_by_base(cells_, "latency_s", "t9", "pooled")


def table10(cells_: pd.DataFrame) -> pd.DataFrame:
    """Latency by dataset, pooled over every answer of every model on it."""
    grid = {}
    for d in _ordered(cells_["dataset"], PAPER_DATASETS):
        grid[("latency_s", d)] = pooled(*_triples(cells_[cells_["dataset"] == d], "latency_s"))
    return pd.DataFrame(_rows("t10", grid), columns=TABLE_COLUMNS)


def paper_tables(cells_: pd.DataFrame) -> pd.DataFrame:
    """Tables 4, 5, 9 and 10 in long form (table, row, col, stat, value, half, n)."""
    return pd.concat([table4(cells_), table5(cells_), table9(cells_), table10(cells_)], ignore_index=True)


def wide(table: pd.DataFrame, stat: str = "mean") -> pd.DataFrame:
    """A long-form table pivoted for display (rows x cols), keeping the first-seen order."""
    t = table[table["stat"] == stat]
    rows = list(dict.fromkeys(t["row"]))
    cols = sorted({c for c in t["col"] if c != "avg"}) + (["avg"] if "avg" in set(t["col"]) else [])
    return t.pivot(index="row", columns="col", values="value").reindex(index=rows, columns=cols)
