"""The published values (``bench/catalog/published.json``) in the report's long form.

Long form = one row per number: ``table, row, col, stat, value``, the same keys ``aggregate.paper_tables`` uses, so
ours and theirs join cell by cell.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import pandas as pd

from bench.report.authors import AGG_METRICS

LONG = ["table", "row", "col", "stat", "value"]


@lru_cache(maxsize=1)
def load_published() -> dict:
    """The reference catalog shipped with the package (written by scripts/make_published.py)."""
    return json.loads(resources.files("bench.catalog").joinpath("published.json").read_text("utf-8"))


def published_tables(pub: dict, energy_table: str = "t5") -> pd.DataFrame:
    """Tables 4, 5 (or 11, the Pi 5 energy table, under the name t5), 9 and 10 in long form."""
    t = pub["tables"]
    rows = []
    for base, v in t["t4"].items():
        rows += [("t4", "j_per_token", base, "mean", v["mean"]), ("t4", "j_per_token", base, "sd", v["sd"])]
    for name, src in (("t5", energy_table), ("t9", "t9")):
        for group, cols in t[src].items():
            rows += [(name, group, col, "mean", val) for col, val in cols.items()]
    rows += [("t10", "latency_s", ds, "mean", v) for ds, v in t["t10"].items()]
    return pd.DataFrame(rows, columns=LONG)


def published_cells(pub: dict) -> pd.DataFrame:
    """Per-model values per dataset and ``all``: table ``cell``, row = model tag, col = dataset, stat = metric."""
    rows = []
    for tag, m in pub["models"].items():
        for ds, a in list(m["datasets"].items()) + [("all", m["all"])]:
            for key, metric in AGG_METRICS.items():
                if key in a:
                    rows.append(("cell", tag, ds, metric, a[key]))
            rows.append(("cell", tag, ds, "n_answers", a["n"]))
    return pd.DataFrame(rows, columns=LONG)
