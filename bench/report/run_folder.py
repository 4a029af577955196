"""Read what the report needs from a result folder: the answers frame, one stored power trace, run facts.

The results stage is imported lazily so the report package stays importable (and testable) on its own.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import ResultsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInput:
    """A result folder's answers (one row each), the traces to plot, and facts to show in the report header."""

    frame: pd.DataFrame
    traces: list
    run_info: dict


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
    info = {"name": Path(result_dir).resolve().name, "result_dir": str(result_dir), "score_mode": mode}
    run_ids = sorted({str(r) for r in frame["run_id"].dropna()}) if "run_id" in frame.columns else []
    if run_ids:
        info["run_id"] = ", ".join(run_ids)
    return RunInput(frame=frame, traces=stored, run_info=info)


def _with_idle(trace: dict, frame: pd.DataFrame) -> dict:
    """Add the answer's idle baseline (from the frame) so the trace plot can draw it."""
    if trace.get("idle_w") is not None or "idle_w" not in frame.columns:
        return trace
    hit = frame[(frame["model"] == trace.get("model")) & (frame["dataset"] == trace.get("dataset"))
                & (frame["item_id"].astype(str) == str(trace.get("item_id")))]["idle_w"].dropna()
    return {**trace, "idle_w": float(hit.iloc[0])} if len(hit) else trace
