"""Scoring answers: ``paper`` (the authors' rules, quirks included) and ``strict`` (corrected) modes.

`score(item, response, mode)` dispatches on the item's dataset; every scorer returns a `Score` whose ``reason``
says why, and invalid answers are ``correct=False`` with a reason starting ``invalid:``.
"""

from __future__ import annotations

import logging
from typing import Callable

from bench.errors import CatalogError, did_you_mean
from bench.records import Item, Score
from bench.scoring import bigbenchhard, commonsenseqa, gsm8k, humaneval, truthfulqa

log = logging.getLogger(__name__)

MODES = ("paper", "strict")
SCORING_VERSION = "2"  # 2: HumanEval judged over plain data in a separate process; stray </ANS> removed

Scorer = Callable[[Item, str], Score]
SCORERS: dict[tuple[str, str], Scorer] = {
    ("commonsenseqa", "paper"): commonsenseqa.paper,
    ("commonsenseqa", "strict"): commonsenseqa.strict,
    ("bigbenchhard", "paper"): bigbenchhard.paper,
    ("bigbenchhard", "strict"): bigbenchhard.strict,
    ("gsm8k", "paper"): gsm8k.paper,
    ("gsm8k", "strict"): gsm8k.strict,
    ("truthfulqa", "paper"): truthfulqa.paper,
    ("truthfulqa", "strict"): truthfulqa.strict,
    ("truthfulqa_lettered", "paper"): truthfulqa.lettered,
    ("truthfulqa_lettered", "strict"): truthfulqa.lettered,
    ("humaneval", "paper"): humaneval.paper,
    ("humaneval", "strict"): humaneval.strict,
}


def score(item: Item, response: str, mode: str) -> Score:
    """Score one answer to ``item`` under ``mode`` ("paper" or "strict")."""
    if mode not in MODES:
        raise CatalogError(did_you_mean("scoring mode", mode, list(MODES)))
    try:
        scorer = SCORERS[(item.dataset, mode)]
    except KeyError:
        raise CatalogError(did_you_mean("dataset", item.dataset, sorted({d for d, _ in SCORERS}))) from None
    result = scorer(item, response)
    log.debug("%s %s [%s]: %s (%s)", item.dataset, item.item_id, mode, result.correct, result.reason)
    return result


__all__ = ["MODES", "score", "SCORERS"]
