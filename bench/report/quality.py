"""Data-quality findings on any answers frame (the authors' or ours), each with what it touches and what the
report's tables, fronts and claims become when the affected answers are set aside.

* item sets: cells whose answered items differ from the spec's (a subset, skipped items, repeated items, more
  answers than items, rows whose item cannot be told);
* answers recorded at 0 J (idle-subtracted and clipped) while the meter shows the device under load;
* windows the meter covered less than ``COVERAGE_MIN`` of;
* timeouts and other unrecorded answers, per cell.

"What they become" is recomputed, not described: the tables (4, 5, 9, 10), fronts and pooled claims of the frame,
against the same computed on the frame without the affected answers (for item-set problems: every model restricted
to the items all models answered on that dataset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.report import aggregate, compare, pareto
from bench.report.matching import common_items
from bench.report.metrics import COVERAGE_MIN, answered

log = logging.getLogger(__name__)

LOAD_MARGIN_W = 0.5
"""An answer's window shows load when its mean power exceeds the idle baseline by more than this (the paper's idle
sd is 0.17 W, Table 3)."""
CHANGE_REL = 0.005
"""A table value counts as changed when it moves by more than 0.5% (2 decimals of the published values)."""


@dataclass(frozen=True)
class Impact:
    """What the report's numbers become without the affected answers: changed table values, fronts, claims."""

    tables: pd.DataFrame  # table, row, col, before, after, change
    fronts: dict[str, tuple[list[str], list[str]]]  # dataset -> (leave, join)
    claims: list[tuple[str, str, str]]  # (claim, before, after)

    def words(self, limit: int = 3) -> str:
        """The largest table changes, then how many values, which fronts and which claims change."""
        parts = []
        if len(self.tables):
            top = self.tables.reindex(self.tables["change"].abs().sort_values(ascending=False).index).head(limit)
            parts.append(f"{len(self.tables)} table values change, most "
                         + ", ".join(f"Table {r.table[1:]} {r.row}/{r.col} {r.before:.2f} -> {r.after:.2f}"
                                     for r in top.itertuples()))
        if self.fronts:
            parts.append("the front changes for " + ", ".join(
                f"{ds} ({len(gone)} leave, {len(new)} join)" for ds, (gone, new) in self.fronts.items()))
        parts += [f"claim {k} {a} -> {b}" for k, a, b in self.claims]
        return "; ".join(parts) or "no table value, front or claim changes"


@dataclass(frozen=True)
class Finding:
    """One data-quality finding: which cells, how many answers, what it touches, what the numbers become."""

    key: str
    title: str
    words: str
    cells: pd.DataFrame
    touches: str
    impact: Impact | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def anchor(self) -> str:
        return f"quality-{self.key}"


@dataclass(frozen=True)
class Outcome:
    """Tables, fronts and claims of one frame: what an impact compares."""

    tables: pd.DataFrame
    fronts: dict[str, list[str]]
    claims: dict[str, str]

    @classmethod
    def of(cls, frame: pd.DataFrame, pub: dict | None) -> Outcome:
        cells_ = aggregate.cells(frame)
        tables = aggregate.paper_tables(cells_)
        summary = aggregate.model_summary(cells_, ["accuracy", "energy_j", "j_per_token"])
        fronts_ = pareto.fronts(cells_, summary=summary)
        claims = compare.evaluate_claims(tables, cells_, fronts_, pub, summary=summary) if pub else []
        return cls.of_aggregates(tables, fronts_, claims)

    @classmethod
    def of_aggregates(cls, tables: pd.DataFrame, fronts_: dict[str, list[str]], claims: list) -> Outcome:
        """The outcome of aggregates already derived (the report's own, for the frame as it is)."""
        return cls(tables[tables["stat"] == "mean"], fronts_, {c.key: c.ours for c in claims
                                                             if not c.key.startswith("pareto_front_")})


def impact(before: Outcome, after: Outcome) -> Impact:
    keys = ["table", "row", "col"]
    m = before.tables.merge(after.tables, on=keys, how="left", suffixes=("_b", "_a"))
    m[["value_b", "value_a"]] = m[["value_b", "value_a"]].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (m["value_a"] - m["value_b"]) / m["value_b"].abs()
    moved = m[(change.abs() > CHANGE_REL) | (m["value_a"].isna() != m["value_b"].isna())]
    tables = pd.DataFrame({"table": moved["table"], "row": moved["row"], "col": moved["col"],
                           "before": moved["value_b"], "after": moved["value_a"], "change": change[moved.index]})
    fronts = {ds: (sorted(set(f) - set(after.fronts.get(ds, []))), sorted(set(after.fronts.get(ds, [])) - set(f)))
              for ds, f in before.fronts.items() if set(f) != set(after.fronts.get(ds, []))}
    claims = [(k, v, after.claims.get(k, "n/a")) for k, v in before.claims.items() if after.claims.get(k) != v]
    return Impact(tables.reset_index(drop=True), fronts, claims)


def touches(cells_: pd.DataFrame) -> str:
    """Where the listed cells enter the report."""
    if cells_.empty:
        return ""
    bases = sorted(set(cells_["base"]))
    groups = sorted({f"{g}/{b}" for g, b in zip(cells_["precision_group"], cells_["base"])})
    datasets = sorted(set(cells_["dataset"]))
    return (f"Table 4 ({', '.join(bases)}); Tables 5 and 9 ({', '.join(groups)}, and their averages); "
            f"Table 10 ({', '.join(datasets)}); fronts {', '.join(datasets)} and all; every claim built on these")


def item_sets(frame: pd.DataFrame, expected: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per cell: rows, answers, expected items, answered distinct items, repeats, unknown ids, missing items."""
    rows = []
    ok = answered(frame)
    for (model, ds), block in frame.groupby(["model", "dataset"], sort=True):
        want = list(expected.get(ds, []))
        done = block[ok.loc[block.index]]
        ids = done["item_id"].dropna()
        distinct = set(ids)
        unknown = int(done["item_id"].isna().sum())
        repeats = int(len(ids) - len(distinct))
        base, group = _model_facts(block)
        prefix = not unknown and 0 < len(distinct) < len(want) and distinct == set(want[:len(distinct)])
        rows.append({"model": model, "base": base, "precision_group": group,
                     "dataset": ds, "rows": len(block), "answers": len(done), "expected": len(want),
                     "items": len(distinct), "repeats": repeats, "unknown": unknown,
                     # unanswered items; with rows of unknown item a lower bound (they may repeat others)
                     "missing": max(len(want) - (len(done) - repeats), 0) if want else 0,
                     "extra": len(distinct - set(want)) if want else 0, "prefix_subset": prefix,
                     "timeouts": int((block["status"] == "timeout").sum()) if "status" in block else 0})
    return pd.DataFrame(rows)


def _kind(r) -> str:
    if r.answers > r.expected > 0:
        return f"more answers ({r.answers}) than items ({r.expected})"
    if r.prefix_subset and r.missing >= 0.5 * r.expected:
        return f"ran a subset: the first {r.items} of {r.expected} items"
    return f"{r.missing} of {r.expected} items not answered"


def find(frame: pd.DataFrame, expected: Mapping[str, Sequence[str]], pub: dict | None = None, *,
         base: Outcome | None = None) -> list[Finding]:
    """Every data-quality finding of ``frame`` against the spec's item sets ``expected`` (dataset -> item ids);
    ``base``: the frame's own outcome, where the caller has derived it already."""
    base = base or Outcome.of(frame, pub)

    def without(drop: pd.Series | Callable[[pd.DataFrame], pd.DataFrame]) -> Impact:
        after = drop(frame) if callable(drop) else frame[~drop]
        return impact(base, Outcome.of(after, pub))

    sets = item_sets(frame, expected)
    out = []
    odd = sets[(sets["answers"] != sets["expected"]) | (sets["repeats"] > 0) | (sets["unknown"] > 0)
               | (sets["missing"] > 0) | (sets["extra"] > 0)] if len(sets) else sets
    if len(odd):
        shown = odd.assign(problem=[_kind(r) for r in odd.itertuples()])
        subsets = shown[shown["problem"].str.startswith("ran a subset")]
        over = shown[shown["answers"] > shown["expected"]]
        skipped = shown[(shown["missing"] > 0) & ~shown.index.isin(subsets.index)]
        parts = ["; ".join(f"{len(b)} ran only the first {n} of {e} {ds} items ({', '.join(b['model'])})"
                           for (ds, n, e), b in subsets.groupby(["dataset", "items", "expected"])),
                 ", ".join(f"{r.model} {r.dataset} holds {r.answers} answers for {r.expected} items"
                           for r in over.itertuples()),
                 f"{len(skipped)} skipped {int(skipped['missing'].sum())} items (timeouts are not recorded)"
                 if len(skipped) else "",
                 f"{int(shown['unknown'].sum())} answers cannot be tied to an item" if shown["unknown"].sum() else ""]
        affected = set(odd["dataset"])
        imp = without(lambda f: pd.concat([f[~f["dataset"].isin(affected)],
                                          common_items(f[f["dataset"].isin(affected)])]))
        words = (f"{len(odd)} of {len(sets)} cells did not answer exactly the spec's items: "
                 + "; ".join(p for p in parts if p) + ". Restricted to the items every model answered: "
                 + imp.words() + ".")
        out.append(Finding("item_sets", "Cells whose item set differs from the spec", words, shown, touches(odd),
                           imp))
    for check in (zero_energy, low_coverage):
        found = check(frame, without)
        if found is not None:
            out.append(found)
    timeouts = sets[sets["timeouts"] > 0] if len(sets) else sets
    if len(timeouts):
        out.append(Finding("timeouts", "Answers that timed out", f"{int(timeouts['timeouts'].sum())} answers in "
                           f"{len(timeouts)} cells timed out; they are counted, never averaged, so those cells "
                           "average fewer items than the others (see the matched-items finding).", timeouts,
                           touches(timeouts)))
    log.info("data quality: %d finding(s)", len(out))
    return out


def _model_facts(block: pd.DataFrame) -> tuple[str, str]:
    """A cell's base and precision group; a frame without model facts names the model itself (as ``cells`` does)."""
    base = block["base"].dropna()
    group = block["precision_group"].dropna()
    return (str(base.iloc[0]) if len(base) and base.iloc[0] else str(block["model"].iloc[0]),
            str(group.iloc[0]) if len(group) and group.iloc[0] else "unknown")


def _per_cell(frame: pd.DataFrame, mask: pd.Series, **extra: pd.Series) -> pd.DataFrame:
    ok = answered(frame)
    rows = []
    for (model, ds), block in frame.assign(_hit=mask & ok, _ok=ok, **extra).groupby(["model", "dataset"], sort=True):
        if block["_hit"].any():
            base, group = _model_facts(block)
            rows.append({"model": model, "dataset": ds, "base": base, "precision_group": group,
                         "answers": int(block["_ok"].sum()), "affected": int(block["_hit"].sum()),
                         **{k: int(block[k].sum()) for k in extra}})
    return pd.DataFrame(rows, columns=["model", "dataset", "base", "precision_group", "answers", "affected",
                                       *extra])


def zero_energy(frame: pd.DataFrame, without: Callable[[pd.Series], Impact]) -> Finding | None:
    """Answers at 0 J: the idle-subtracted energy clipped at 0. Expected now and then for a short answer near
    idle power; a contradiction when the window's own mean power shows load (above idle by ``LOAD_MARGIN_W``)."""
    energy = pd.to_numeric(frame["energy_j"], errors="coerce")
    zero = answered(frame) & (energy == 0)
    if not zero.any():
        return None
    mean_w = pd.to_numeric(frame["mean_w"], errors="coerce")
    idle = pd.to_numeric(frame["idle_w"], errors="coerce")
    known = zero & mean_w.notna()
    load = known & (mean_w > idle + LOAD_MARGIN_W)
    cells_ = _per_cell(frame, zero, traced=known, under_load=load)
    cells_ = cells_[(cells_["under_load"] > 0) | (cells_["affected"] >= 0.1 * cells_["answers"])]
    if cells_.empty:
        return None
    keys = pd.MultiIndex.from_frame(frame[["model", "dataset"]])
    mask = zero & keys.isin(pd.MultiIndex.from_frame(cells_[["model", "dataset"]]))
    watts = mean_w[mask & load]
    evidence = (f"; of the {int(cells_['traced'].sum())} with a power reading, {int(cells_['under_load'].sum())} show "
                f"the device under load (window mean {watts.min():.2f}-{watts.max():.2f} W against idle "
                f"{float(idle[mask].median()):.2f} W)" if len(watts) else
                f"; {int(cells_['traced'].sum())} have a power reading, none above idle")
    imp = without(mask)
    words = (f"{int(mask.sum())} answers in {len(cells_)} cell(s) are recorded at 0 J "
             + ", ".join(f"({r.model} {r.dataset}: {r.affected} of {r.answers})" for r in cells_.itertuples())
             + evidence + ". Without them: " + imp.words() + ".")
    return Finding("zero_energy", "Answers at 0 J while the meter shows load", words, cells_, touches(cells_), imp)


def low_coverage(frame: pd.DataFrame, without: Callable[[pd.Series], Impact]) -> Finding | None:
    """Answer windows the meter covered less than ``COVERAGE_MIN`` of (gaps in the samples). The energy stage
    already leaves their energy out of every mean (``metrics.derive``); the finding says where and how many."""
    coverage = pd.to_numeric(frame["coverage"], errors="coerce")
    low = answered(frame) & (coverage < COVERAGE_MIN)
    if not low.any():
        return None
    cells_ = _per_cell(frame, low)
    words = (f"{int(low.sum())} answer windows in {len(cells_)} cell(s) were covered less than {COVERAGE_MIN:.0%} by "
             f"meter samples (lowest {coverage[low].min():.2f}); their energy is left out of every mean (counted per "
             "cell as energy_excluded_n), so those cells average fewer answers for energy than for latency.")
    return Finding("coverage", f"Windows covered less than {COVERAGE_MIN:.0%}", words, cells_, touches(cells_))
