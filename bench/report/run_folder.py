"""Read what the report needs from a result folder: the answers frame, one stored power trace, run facts.

The results stage is imported lazily so the report package stays importable (and testable) on its own.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.datasets import DataSource
from bench.errors import ResultsError
from bench.report.review import ReviewInputs, load_review_items
from bench.report.scoring_checks import TRUTHFULQA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInput:
    """A result folder's answers (one row each), the traces to plot, facts to show in the report header, and what
    the re-analysis needs (the run's own item sets and TruthfulQA items)."""

    frame: pd.DataFrame
    traces: list
    run_info: dict
    review: ReviewInputs


def load_run(result_dir: Path, mode: str = "paper", n_traces: int = 1) -> RunInput:
    """Load ``result_dir/results.db`` read-only through ``bench.results``."""
    from bench.results import answers_frame, connect_readonly, traces

    db_path = Path(result_dir) / "results.db"
    if not db_path.is_file():
        raise ResultsError(f"{result_dir}: no results.db; expected a result folder written by `bench run`")
    frame = answers_frame(db_path, mode)
    db = connect_readonly(db_path)
    try:
        stored = traces(db, limit=n_traces)
    except sqlite3.Error as exc:  # an older schema without traces: report without the trace plot
        log.warning("%s: no power traces (%s)", db_path, exc)
        stored = []
    finally:
        db.close()
    stored = [_with_idle(t, frame) for t in stored]
    review = _review_inputs(db_path)
    info = {"name": Path(result_dir).resolve().name, "result_dir": str(result_dir), "score_mode": mode}
    run_ids = sorted({str(r) for r in frame["run_id"].dropna()}) if "run_id" in frame.columns else []
    if run_ids:
        info["run_id"] = ", ".join(run_ids)
    return RunInput(frame=frame, traces=stored, run_info=info, review=review)


def _review_inputs(db_path: Path) -> ReviewInputs:
    """The run's item sets from its identity snapshot; the TruthfulQA items it asked, re-read from the source its
    spec names (if that source is not here, the baselines say so)."""
    from bench.results import connect_readonly, run_identity, stored_spec

    db = connect_readonly(db_path)
    try:
        ident = run_identity(db)
        spec = stored_spec(db) if ident is not None else None
    finally:
        db.close()
    if ident is None or spec is None:
        return ReviewInputs(items_note="the run predates the identity snapshot")
    expected = {d.name: d.item_ids for d in ident.datasets}
    items, notes = {}, []
    for ds in spec.datasets:
        if ds.name not in TRUTHFULQA:
            continue
        source = DataSource(kind=ds.source, selection=ds.selection, limit=ds.limit, path=ds.path, revision=ds.revision)
        got, note = load_review_items(source, TRUTHFULQA)
        items.update(got)
        notes += [note] if note else []
    return ReviewInputs(expected=expected, items=items, items_note="; ".join(notes))



def _with_idle(trace: dict, frame: pd.DataFrame) -> dict:
    """Add the answer's idle baseline (from the frame) so the trace plot can draw it."""
    if trace.get("idle_w") is not None or "idle_w" not in frame.columns:
        return trace
    hit = frame[(frame["model"] == trace.get("model")) & (frame["dataset"] == trace.get("dataset"))
                & (frame["item_id"].astype(str) == str(trace.get("item_id")))]["idle_w"].dropna()
    return {**trace, "idle_w": float(hit.iloc[0])} if len(hit) else trace
