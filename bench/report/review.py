"""The reviewer's re-analysis of one frame: claim robustness, data quality, what the accuracy numbers measure, and
which window the energy was integrated over. Runs the same way on the authors' data and on ours; what differs is
only what the caller can supply (``ReviewInputs``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from bench.datasets import DataSource
from bench.datasets.selection import load_selection
from bench.errors import BenchError
from bench.records import Item
from bench.report import quality, robustness, scoring_checks, window_shift
from bench.report.authors import load_authors_sampled, load_site
from bench.report.authors_items import SampledAnswer
from bench.report.compare import Claim
from bench.report.derived import Derived
from bench.report.rescoring import verdicts
from bench.suite import load_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewInputs:
    """What the re-analysis needs beyond the frame: the spec's item ids per dataset (for item-set checks), items
    (HumanEval, TruthfulQA) for re-scoring and baselines, and for the authors' data their sample answers."""

    expected: Mapping[str, Sequence[str]] = field(default_factory=dict)
    items: Mapping[str, list[Item]] = field(default_factory=dict)
    items_note: str = ""
    sampled: Sequence[SampledAnswer] | None = None
    idle_w: float = math.nan
    score_cache: Path | None = None


@dataclass(frozen=True)
class Review:
    robustness: list[robustness.Robustness]
    quality: list[quality.Finding]
    pass_at_one: scoring_checks.PassAtOne
    baselines: scoring_checks.Baselines
    shift: window_shift.Shift


ITEM_DATASETS = ("humaneval", "truthfulqa", "truthfulqa_lettered")
"""The datasets whose items the re-analysis reads: HumanEval to re-score, TruthfulQA for the position baselines."""


def load_review_items(source: DataSource, names: Sequence[str] = ITEM_DATASETS) -> tuple[dict[str, list[Item]], str]:
    """The items of ``names`` from ``source``; what cannot be loaded is left out and said in the note."""
    items, missing = {}, []
    for name in names:
        try:
            items[name] = load_items(name, source)
        except BenchError as exc:
            missing.append(str(exc))
    return items, "; ".join(missing)


def _authors_humaneval(inputs: ReviewInputs, bases: Mapping[str, str]) -> pd.DataFrame | str:
    """The authors' HumanEval sample answers with their own verdict (paper) and real pass@1 (strict)."""
    by_id = {i.item_id: i for i in inputs.items.get("humaneval", [])}
    if not by_id:
        return ("the HumanEval items are not available to this report " + (f"({inputs.items_note})" if
                                                                            inputs.items_note else ""))
    ids = load_selection("humaneval").ids
    rows = [s for s in inputs.sampled or [] if s.dataset == "humaneval" and s.item_index is not None
            and ids[s.item_index] in by_id]
    strict = verdicts([(by_id[ids[s.item_index]], s.response) for s in rows], "strict", inputs.score_cache)
    return pd.DataFrame({"model": [s.model for s in rows], "base": [bases.get(s.model, "") for s in rows],
                         "correct_paper": [float(s.ok) for s in rows], "correct_strict": [float(v) for v in strict]})


def _published_humaneval(pub: dict | None) -> dict[str, float]:
    if not pub:
        return {}
    return {tag: m["datasets"]["humaneval"]["acc"] for tag, m in pub["models"].items() if "humaneval" in m["datasets"]}


def review(frame: pd.DataFrame, agg: Derived, claims: list[Claim], pub: dict | None,
           inputs: ReviewInputs) -> Review:
    """Every check of the re-analysis of ``frame``, whose aggregates ``agg`` the report derived; ``claims`` are the
    pooled verdicts (empty without published values)."""
    fronts = {} if not pub else pub["fronts"]
    robust = robustness.evaluate(claims, agg.cells, agg.summary, frame, fronts) if claims else []
    base = quality.Outcome.of_aggregates(agg.tables, agg.fronts, claims)
    found = quality.find(frame, inputs.expected, pub, base=base)
    bases = dict(zip(agg.cells["model"], agg.cells["base"]))
    if inputs.sampled is not None:
        scored = _authors_humaneval(inputs, bases)
        what = " (the authors' sample answers)"
    else:
        scored = frame[frame["dataset"] == "humaneval"]
        what = ""
    if isinstance(scored, str):
        p1 = scoring_checks.PassAtOne(pd.DataFrame(), pd.DataFrame(), f"Real pass@1 cannot be computed: {scored}.")
    else:
        p1 = scoring_checks.pass_at_one(scored, _published_humaneval(pub), what)
    tqa = {k: v for k, v in inputs.items.items() if k in scoring_checks.TRUTHFULQA}
    baselines = scoring_checks.position_baselines(tqa, inputs.score_cache) if tqa else scoring_checks.Baselines(
        pd.DataFrame(), "TruthfulQA position baselines cannot be computed: no TruthfulQA items are available to this "
        "report" + (f" ({inputs.items_note})." if inputs.items_note else "."))
    shift = (window_shift.authors_shift(list(inputs.sampled), inputs.idle_w) if inputs.sampled is not None
             else window_shift.run_shift(frame))
    return Review(robust, found, p1, baselines, shift)


def authors_inputs(path: Path, source: DataSource, score_cache: Path | None = None) -> ReviewInputs:
    """The re-analysis inputs for the authors' site data: the paper's item ids, their sample answers, and the
    paper's HumanEval and TruthfulQA items from ``source`` (the dataset cache, or ``--data``)."""
    meta = load_site(path)["meta"]
    items, note = load_review_items(source)
    return ReviewInputs(expected={ds: load_selection(ds).ids for ds in meta["datasets"]}, items=items,
                        items_note=note, sampled=load_authors_sampled(path), idle_w=float(meta.get("idleW", math.nan)),
                        score_cache=score_cache)
