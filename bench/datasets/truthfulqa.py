"""TruthfulQA multiple choice (Lin et al. 2022), and its lettered strict variant.

No ids: the item id is sha256(question)[:16]. Canonical form = the hub record of `truthfulqa/truthful_qa`
(config ``multiple_choice``): ``question, mc1_targets{choices,labels}, mc2_targets{choices,labels}``. The original
``mc_task.json`` (and the authors' file) maps choice text to label in a dict; dict order is choice order.

`truthfulqa_lettered` holds the same items (verified against the same selection) but shuffles the MC1 choices with
a fixed seed per item and letters them, so echoing the first choice no longer wins (in every upstream item the
correct MC1 choice comes first). Its reference is ``{"letter": ..., "order": [choices as shown]}``.
"""

from __future__ import annotations

import random
import string
from typing import Any, Mapping

from bench.datasets.base import Adapter, HubPart, MissingField, need, short_sha

REPO = "truthfulqa/truthful_qa"
SHUFFLE_SEED = 42


def _targets(record: Mapping[str, Any], key: str) -> dict[str, list]:
    value = need(record, key)
    if isinstance(value, Mapping) and "choices" in value and "labels" in value:
        choices, labels = list(value["choices"]), [int(x) for x in value["labels"]]
    elif isinstance(value, Mapping):  # original mc_task.json: {choice text: label}
        choices, labels = list(value.keys()), [int(x) for x in value.values()]
    else:
        raise MissingField(key)
    if len(choices) != len(labels) or not choices:
        raise MissingField(f"{key}.labels")
    return {"choices": choices, "labels": labels}


def canonical(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    return {
        "question": need(record, "question"),
        "mc1_targets": _targets(record, "mc1_targets"),
        "mc2_targets": _targets(record, "mc2_targets"),
    }


def correct_choice(fields: Mapping[str, Any]) -> str:
    mc1 = fields["mc1_targets"]
    return next(c for c, label in zip(mc1["choices"], mc1["labels"]) if label == 1)


def lettered(fields: Mapping[str, Any], item_id: str) -> dict[str, Any]:
    """Shuffle with ``Random(f"{SHUFFLE_SEED}:{item_id}")``: stable across runs, hosts and Python versions."""
    order = list(fields["mc1_targets"]["choices"])
    random.Random(f"{SHUFFLE_SEED}:{item_id}").shuffle(order)
    letter = string.ascii_uppercase[order.index(correct_choice(fields))]
    return {"letter": letter, "order": order}


_COMMON = dict(
    task_version="1",
    id_scheme="sha256(question)[:16]",
    hub_parts=(HubPart(REPO, "multiple_choice", "validation"),),
    canonical=canonical,
    item_id=lambda f: short_sha(f["question"]),
)

ADAPTER = Adapter(name="truthfulqa", reference=lambda f, item_id: correct_choice(f), **_COMMON)
LETTERED = Adapter(name="truthfulqa_lettered", reference=lettered, selection_name="truthfulqa", **_COMMON)
