"""``report/numbers.json``: the report's key numbers in machine-readable form, and the check that recomputes them.

``bench verify`` loads the run's answers frame and calls ``recompute_check(frame, report_dir)``; an empty list means
every stored number is what the stored answers give. A report built from supplied aggregates (the authors' ``agg``)
records the tolerance its frame path differs by (tenths rounding), and the check applies it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from bench.report import energy_bounds
from bench.report.aggregate import cells as cells_of
from bench.report.derived import Derived, from_cells

log = logging.getLogger(__name__)

SCHEMA = 1
KEY_METRICS = ["accuracy", "energy_j", "j_per_token", "latency_s", "tokens_per_s"]
REL_EPS = 1e-9


def key_numbers(derived: Derived, frame: pd.DataFrame, *, cells_source: str = "frame",
                tolerance_abs: float = 0.0) -> dict:
    """The numbers a reader quotes: Tables 4/5/9/10, each model's "all" values, the fronts, the answer counts, and
    the coverage counts and error bounds behind every energy figure (``energy_bounds.key_values``)."""
    values: dict[str, float | None] = {}
    for _, r in derived.tables.iterrows():
        values[f"{r['table']}/{r['row']}/{r['col']}/{r['stat']}"] = _num(r["value"])
    for _, r in derived.summary.iterrows():
        for m in KEY_METRICS:
            values[f"model/{r['model']}/{m}"] = _num(r[m])
    for key, value in energy_bounds.key_values(derived.cells, derived.qualities, derived.phases).items():
        values[key] = _num(value)
    return {
        "schema": SCHEMA,
        "cells_source": cells_source,
        "tolerance_abs": tolerance_abs,
        "n_rows": int(len(frame)),
        "energy_rule": energy_bounds.RULE,
        "values": values,
        "fronts": {k: sorted(v) for k, v in derived.fronts.items()},
    }


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def write_numbers(numbers: dict, report_dir: Path) -> Path:
    path = Path(report_dir) / "numbers.json"
    path.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n", "utf-8")
    return path


def _differs(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(a - b) > tol + REL_EPS * max(abs(a), abs(b))


def recompute_check(frame: pd.DataFrame, report_dir: Path) -> list[str]:
    """Recompute the key numbers from ``frame`` and list every disagreement with ``report_dir/numbers.json``."""
    path = Path(report_dir) / "numbers.json"
    if not path.is_file():
        return [f"{path}: missing; the report stores its numbers there (rebuild the report)"]
    try:
        stored = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        return [f"{path}: not valid JSON ({exc})"]
    if stored.get("schema") != SCHEMA:
        return [f"{path}: schema {stored.get('schema')!r}, expected {SCHEMA}"]
    tol = float(stored.get("tolerance_abs", 0.0))
    fresh = key_numbers(from_cells(cells_of(frame)), frame)
    problems = []
    if stored.get("n_rows") != fresh["n_rows"]:
        problems.append(f"n_rows: report has {stored.get('n_rows')}, the answers frame has {fresh['n_rows']}")
    old, new = stored.get("values", {}), fresh["values"]
    supplied = stored.get("cells_source") == "supplied"
    for key in sorted(set(old) | set(new)):
        if supplied and new.get(key) is None:
            continue  # supplied aggregates may carry metrics the answers lack (the authors' tokens/s)
        if key not in new:
            problems.append(f"{key}: in the report ({old[key]}) but not recomputable from the answers")
        elif key not in old:
            problems.append(f"{key}: recomputed ({new[key]}) but absent from the report")
        elif _differs(old[key], new[key], tol):
            problems.append(f"{key}: report has {old[key]}, recomputed {new[key]} (tolerance {tol})")
    for ds in sorted(set(stored.get("fronts", {})) | set(fresh["fronts"])):
        a, b = stored.get("fronts", {}).get(ds), fresh["fronts"].get(ds)
        if a != b:
            problems.append(f"front {ds}: report has {a}, recomputed {b}")
    log.info("recompute check of %s: %d problem(s)", report_dir, len(problems))
    return problems
