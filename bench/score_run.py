"""Scoring as its own stage: score (or re-score) a stored run in any mode without asking the model again.

Every check comes before the first write: the DB is opened read-only (is it ours, is its run whole, are its items
unchanged), and if HumanEval answers are to be scored, the sandbox must be complete here (or explicitly waived).
Only then is the DB opened for writing, and only if there is something to score.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bench import results
from bench.errors import ResultsError
from bench.records import Item
from bench.scoring import MODES, SCORING_VERSION
from bench.suite import dataset, score

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ScoreSummary:
    mode: str
    scored: int
    correct_by_dataset: dict[str, tuple[int, int]]  # dataset -> (correct, scored) over all scores of the mode


def stored_items(db) -> dict[tuple[str, str], Item]:
    """The run's items, re-loaded from its own spec and checked against the hashes recorded with each answer."""
    from bench.runner import load_tasks

    items = {(t.item.dataset, t.item.item_id): t.item for t in load_tasks(results.stored_spec(db))}
    for name, item_id, sha256 in results.asked_items(db):
        item = items.get((name, item_id))
        if item is None or item.sha256 != sha256:
            raise ResultsError(f"item {name}/{item_id} is missing or changed since it was asked "
                               f"(recorded sha256 {sha256[:12]}); cannot score it")
    return items


def score_run(out_dir: Path, modes: tuple[str, ...] = MODES, *, rescore: bool = False,
              batch: int = 50) -> list[ScoreSummary]:
    db_path = out_dir / "results.db"
    with closing(results.connect_readonly(db_path)) as db:
        items = stored_items(db)
        todo = {mode: results.answers_to_score(db, mode, rescore=rescore or _stale(db, mode)) for mode in modes}
    if any(dataset(row["dataset"]).executes_answers for rows in todo.values() for row in rows):
        from bench.scoring.execution import require

        require()  # refuses, in one line, before anything is written
    if any(todo.values()):
        with closing(results.connect(db_path)) as db:
            for mode, rows in todo.items():
                log.info("scoring %d answers in %s mode", len(rows), mode)
                for start in range(0, len(rows), batch):
                    chunk = rows[start:start + batch]
                    results.record_scores(db, mode, [(r["id"], score(items[(r["dataset"], r["item_id"])],
                                                                      r["response"] or "", mode)) for r in chunk],
                                          SCORING_VERSION)
    with closing(results.connect_readonly(db_path)) as db:
        return [ScoreSummary(mode, len(todo[mode]), results.correct_by_dataset(db, mode)) for mode in modes]


def _stale(db: sqlite3.Connection, mode: str) -> bool:
    """Scores of ``mode`` made by another scorer version: all of them are scored again."""
    stored_version = results.scoring_version(db, mode)
    if stored_version in (None, SCORING_VERSION):
        return False
    log.warning("%s scores came from scorer version %s; re-scoring all with %s", mode, stored_version,
                SCORING_VERSION)
    return True

