"""Scoring answers: ``paper`` (the authors' rules, quirks included) and ``strict`` (corrected) modes.

One module per dataset, each with a scorer per mode; `bench.suite` binds them to their datasets and dispatches
(`bench.suite.score`). Every scorer returns a `Score` whose ``reason`` says why, and invalid answers are
``correct=False`` with a reason starting ``invalid:``.
"""

from __future__ import annotations

from typing import Callable

from bench.records import Item, Score

MODES = ("paper", "strict")
SCORING_VERSION = "2"  # 2: HumanEval judged over plain data in a separate process; stray </ANS> removed

Scorer = Callable[[Item, str], Score]

__all__ = ["MODES", "SCORING_VERSION", "Scorer"]
