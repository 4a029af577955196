"""Pareto fronts of accuracy vs energy per answer, per dataset and over all datasets.

A model is on the front if no other model dominates it: at least as accurate and at most as costly, and strictly
better in one of the two. This is the paper's "no other model has both higher accuracy and lower energy" with ties
settled as the authors' ``build_data.py`` settled them (of two equally accurate models the cheaper one is kept);
it reproduces the site's six published fronts exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.aggregate import model_summary

ALL = "all"


def front(models: list[str], accuracy: np.ndarray, energy_j: np.ndarray) -> list[str]:
    """Models not dominated by any other (models with a NaN coordinate take no part)."""
    acc = np.asarray(accuracy, dtype=float)
    en = np.asarray(energy_j, dtype=float)
    ok = np.isfinite(acc) & np.isfinite(en)
    out = []
    for i in np.flatnonzero(ok):
        dominated = np.any(ok & (acc >= acc[i]) & (en <= en[i]) & ((acc > acc[i]) | (en < en[i])))
        if not dominated:
            out.append(models[i])
    return out


def fronts(cells_: pd.DataFrame, *, summary: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Per dataset (cell means) and ``all`` (each model's unweighted means over datasets): the front's models.
    ``summary``: the cells' `model_summary` where the caller has it already."""
    out: dict[str, list[str]] = {}
    for ds, block in cells_.groupby("dataset", sort=True):
        out[ds] = front(list(block["model"]), block["accuracy"].to_numpy(), block["energy_j"].to_numpy())
    if summary is None:
        summary = model_summary(cells_, ["accuracy", "energy_j"])
    out[ALL] = front(list(summary["model"]), summary["accuracy"].to_numpy(), summary["energy_j"].to_numpy())
    return out


def fronts_table(fronts_: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": ds, "model": m} for ds, ms in fronts_.items() for m in ms],
                        columns=["dataset", "model"])
