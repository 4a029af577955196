"""Score answers the report did not get scored (the authors' sample answers), once, with a cache.

Strict HumanEval scoring runs every answer in the sandbox (tenths of a second each); the authors' 342 sample
HumanEval answers would cost most of a report build every time. Verdicts are cached in SQLite keyed by the scorer
version, the mode, the item's content hash and the response, so a rebuild re-scores nothing and a scorer change
re-scores everything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from bench.records import Item
from bench.scoring import SCORING_VERSION
from bench.suite import score

log = logging.getLogger(__name__)

WORKERS = 2
"""Sandboxed runs in parallel: the sandbox starts a process per answer, so threads suffice; 2 cores here."""


def default_cache() -> Path:
    """``$BENCH_SCORE_CACHE`` or ``~/.cache/edge-llm-bench/scores.sqlite``."""
    return Path(os.environ.get("BENCH_SCORE_CACHE") or Path.home() / ".cache" / "edge-llm-bench" / "scores.sqlite")


def _key(item: Item, response: str, mode: str) -> str:
    return hashlib.sha256("\0".join((SCORING_VERSION, mode, item.dataset, item.sha256, response)).encode()).hexdigest()


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, correct INTEGER NOT NULL) STRICT")
    return db


def verdicts(pairs: Iterable[tuple[Item, str]], mode: str, cache: Path | None = None) -> list[bool]:
    """``score(item, response, mode).correct`` for each pair, in order; identical pairs are scored once and
    verdicts come from (and go to) the cache at ``cache`` (default ``default_cache()``)."""
    pairs = list(pairs)
    keys = [_key(item, response, mode) for item, response in pairs]
    db = _open(cache or default_cache())
    try:
        known = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            known.update(db.execute(f"SELECT key, correct FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall())
        todo = {k: pair for k, pair in zip(keys, pairs) if k not in known}
        if todo:
            log.info("scoring %d answers in %s mode (%d cached)", len(todo), mode, len(set(keys)) - len(todo))
            with ThreadPoolExecutor(WORKERS) as pool:
                fresh = dict(zip(todo, pool.map(lambda p: int(score(p[0], p[1], mode).correct), todo.values())))
            db.execute("BEGIN")  # one transaction: a commit per verdict would sync the file thousands of times
            db.executemany("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", fresh.items())
            db.execute("COMMIT")
            known.update(fresh)
    finally:
        db.close()
    return [bool(known[k]) for k in keys]
