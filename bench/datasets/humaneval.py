"""HumanEval (Chen et al. 2021): 164 Python functions; the item id is the dataset's own ``task_id``.

Canonical form = the hub record of `openai/openai_humaneval`: ``task_id, prompt, canonical_solution, test,
entry_point`` (identical to the original HumanEval.jsonl). The reference is the ``entry_point``.
"""

from __future__ import annotations

from typing import Any, Mapping

from bench.datasets.base import Adapter, HubPart, need

REPO = "openai/openai_humaneval"
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def canonical(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    return {name: need(record, name) for name in FIELDS}


ADAPTER = Adapter(
    name="humaneval",
    task_version="1",
    id_scheme="the dataset's own 'task_id'",
    hub_parts=(HubPart(REPO, None, "test"),),
    canonical=canonical,
    item_id=lambda f: str(f["task_id"]),
    reference=lambda f, item_id: f["entry_point"],
)
