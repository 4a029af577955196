"""Matched items: compare models on the same questions.

A pooled or per-model mean over whatever each cell answered mixes item sets: a cell that ran a cheaper subset, or
that lost its slowest items to timeouts, looks cheaper. These helpers restrict a frame to the items that every
model of a comparison answered, per dataset, so both sides of a comparison average over the same questions.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from bench.report.metrics import answered

KEYS = ["dataset", "item_id"]


def answered_once(frame: pd.DataFrame) -> pd.DataFrame:
    """Recorded answers whose item is known, the first answer of each (model, dataset, item) only."""
    ok = answered(frame) & frame["item_id"].notna()
    return frame.loc[ok].drop_duplicates(["model", *KEYS], keep="first")


def common_items(frame: pd.DataFrame, models: Iterable[str] | None = None) -> pd.DataFrame:
    """The answers of ``models`` (default: every model) on the items, per dataset, that all of them answered.

    A dataset that one of the models never ran drops out for all of them (nothing is matched there)."""
    rows = answered_once(frame)
    wanted = sorted(set(rows["model"]) if models is None else set(models))
    rows = rows[rows["model"].isin(wanted)]
    if rows.empty:
        return rows
    counts = rows.groupby(KEYS, sort=False)["model"].nunique()
    shared = counts.index[counts.to_numpy() == len(wanted)]
    return rows[pd.MultiIndex.from_frame(rows[KEYS]).isin(shared)]

