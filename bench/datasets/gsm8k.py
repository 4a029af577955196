"""GSM8K (Cobbe et al. 2021): grade-school maths; the answer ends with ``#### <number>``.

It has no ids: the item id is the first 16 hex digits of sha256(question). Canonical form = the hub record of
`openai/gsm8k` (config ``main``): ``question, answer`` (identical to the original JSON Lines).
"""

from __future__ import annotations

from typing import Any, Mapping

from bench.datasets.base import Adapter, HubPart, need, short_sha

REPO = "openai/gsm8k"


def canonical(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    return {"question": need(record, "question"), "answer": need(record, "answer")}


def gold(answer: str) -> str:
    """The number after the last ``####``, commas removed (the paper's gold answer, as text)."""
    return answer.split("####")[-1].strip().replace(",", "")


ADAPTER = Adapter(
    name="gsm8k",
    task_version="1",
    id_scheme="sha256(question)[:16]",
    hub_parts=(HubPart(REPO, "main", "train"), HubPart(REPO, "main", "test")),
    canonical=canonical,
    item_id=lambda f: short_sha(f["question"]),
    reference=lambda f, item_id: gold(f["answer"]),
)
