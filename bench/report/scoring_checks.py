"""What the paper's accuracy numbers measure, checked on the answers and on the items themselves.

* HumanEval: the paper's "accuracy" is "answer + test code ran without an exception" (``check()`` is never called).
  Real pass@1 (``strict``) beside it, per model and family, with the flips and the rank correlation across models.
* TruthfulQA: in the paper's items the right answer is listed first, so position baselines (always the first
  choice, always the last, a constant answer with no words) show what a score measures, per mode; the lettered
  variant (choices shuffled) is the remedy.
"""

from __future__ import annotations

import logging
import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from bench.records import Item
from bench.report.rescoring import verdicts

log = logging.getLogger(__name__)

TRUTHFULQA = ("truthfulqa", "truthfulqa_lettered")
CONSTANT = "<ANS>?</ANS>"
"""A constant answer sharing no word with any choice."""


def spearman(a, b) -> float:
    """Rank correlation (average ranks for ties; Pearson of the ranks), NaN with fewer than 3 pairs."""
    x, y = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    ok = x.notna().to_numpy() & y.notna().to_numpy()
    if ok.sum() < 3:
        return math.nan
    rx, ry = x[ok].rank().to_numpy(), y[ok].rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class PassAtOne:
    """HumanEval scored both ways: per model, per family, the flips and the rank correlations."""

    per_model: pd.DataFrame
    per_family: pd.DataFrame
    words: str
    anchor: str = "pass-at-1"


def pass_at_one(scored: pd.DataFrame, published: Mapping[str, float] | None = None, what: str = "") -> PassAtOne:
    """``scored``: HumanEval answers with ``model``, ``base``, ``correct_paper``, ``correct_strict`` (1/0).
    ``published``: each model's published HumanEval accuracy (over its whole cell), if any."""
    both = scored.dropna(subset=["correct_paper", "correct_strict"])
    if both.empty:
        empty = pd.DataFrame()
        return PassAtOne(empty, empty, "No HumanEval answer is scored in both modes here.")
    paper, strict = both["correct_paper"].astype(bool), both["correct_strict"].astype(bool)
    both = both.assign(paper_only=paper & ~strict, strict_only=strict & ~paper)
    g = both.groupby("model", sort=False)
    per_model = pd.DataFrame({"base": g["base"].first(), "answers": g.size(), "paper": g["correct_paper"].mean(),
                              "pass_at_1": g["correct_strict"].mean(), "paper_only": g["paper_only"].sum(),
                              "strict_only": g["strict_only"].sum()})
    if published:
        per_model["published"] = [published.get(m, math.nan) for m in per_model.index]
    per_model = per_model.sort_values("pass_at_1", ascending=False).reset_index()
    f = both.groupby("base", sort=True)
    per_family = pd.DataFrame({"models": f["model"].nunique(), "answers": f.size(), "paper": f["correct_paper"].mean(),
                               "pass_at_1": f["correct_strict"].mean()}).reset_index()
    flips = int(both["paper_only"].sum() + both["strict_only"].sum())
    rho = spearman(per_model["paper"], per_model["pass_at_1"])
    top_paper = per_model.sort_values("paper", ascending=False)["model"].iloc[0]
    top_strict = per_model["model"].iloc[0]
    words = (f"Of {len(both)} HumanEval answers{what} scored both ways, {flips} verdicts flip ({flips / len(both):.0%}):"
             f" {int(both['paper_only'].sum())} pass only the paper's check (code + tests run, check() never called),"
             f" {int(both['strict_only'].sum())} pass only real pass@1.")
    if math.isfinite(rho):
        words += (f" Across {len(per_model)} models the rank correlation of the paper's accuracy with pass@1 on the "
                  f"same answers is {rho:.2f}; first by the paper's accuracy: {top_paper}, first by pass@1: "
                  f"{top_strict}.")
    else:
        words += f" A rank correlation needs at least 3 models with both scores ({len(per_model)} here)."
    rho_pub = spearman(per_model["published"], per_model["pass_at_1"]) if "published" in per_model else math.nan
    if math.isfinite(rho_pub):
        words += f" Against the published HumanEval accuracy (whole cells) the rank correlation is {rho_pub:.2f}."
    return PassAtOne(per_model, per_family, words)


@dataclass(frozen=True)
class Baselines:
    """Position baselines for TruthfulQA, per dataset variant and mode."""

    table: pd.DataFrame
    words: str
    anchor: str = "truthfulqa-baselines"


def _responses(item: Item) -> dict[str, str]:
    if item.dataset == "truthfulqa_lettered":
        last = string.ascii_uppercase[len(item.reference["order"]) - 1]
        return {"first choice": "<ANS>A</ANS>", "last choice": f"<ANS>{last}</ANS>", "constant '?'": CONSTANT}
    choices = item.fields["mc1_targets"]["choices"]
    return {"first choice": f"<ANS>{choices[0]}</ANS>", "last choice": f"<ANS>{choices[-1]}</ANS>",
            "constant '?'": CONSTANT}


def position_baselines(items: Mapping[str, list[Item]], cache: Path | None = None) -> Baselines:
    """Accuracy of answers that ignore the question, on the given TruthfulQA items, in both scoring modes."""
    rows = []
    for ds in TRUTHFULQA:
        for mode in ("paper", "strict"):
            its = items.get(ds, [])
            if not its:
                continue
            per = [_responses(i) for i in its]
            for name in per[0]:
                got = verdicts([(i, r[name]) for i, r in zip(its, per)], mode, cache)
                rows.append({"dataset": ds, "mode": mode, "baseline": name, "items": len(its),
                             "accuracy": sum(got) / len(got)})
    table = pd.DataFrame(rows, columns=["dataset", "mode", "baseline", "items", "accuracy"])
    if table.empty:
        return Baselines(table, "No TruthfulQA items were available to this report.")
    plain = items.get("truthfulqa", [])
    first = sum(i.fields["mc1_targets"]["labels"][0] == 1 for i in plain)

    def acc(ds: str, mode: str, name: str) -> str:
        hit = table[(table["dataset"] == ds) & (table["mode"] == mode) & (table["baseline"] == name)]["accuracy"]
        return f"{hit.iloc[0]:.2f}" if len(hit) else "n/a"

    words = (f"In {first} of {len(plain)} TruthfulQA items the right answer is listed first. Always answering the "
             f"first choice scores {acc('truthfulqa', 'paper', 'first choice')} in paper mode and "
             f"{acc('truthfulqa', 'strict', 'first choice')} in strict mode; a constant '?' scores "
             f"{acc('truthfulqa', 'paper', 'constant ' + repr('?'))} in paper mode. Both modes measure position, not "
             f"truthfulness, on these items. With the choices shuffled and lettered (truthfulqa_lettered) the first "
             f"choice scores {acc('truthfulqa_lettered', 'strict', 'first choice')}: use truthfulqa_lettered.")
    return Baselines(table, words)
