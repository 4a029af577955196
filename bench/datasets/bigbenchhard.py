"""BIG-Bench Hard (Suzgun et al. 2022): 27 subtasks of ``input``/``target`` pairs.

No ids: the item id is ``<subtask>/<sha256(input)[:12]>``. Canonical form = the hub record of `lukaemon/bbh`
(one config per subtask, split ``test``: ``input, target``) plus ``subtask``. The original release ships
``bbh/<subtask>.json`` as ``{"examples": [...]}``; the authors' collated file names the subtask ``category``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from bench.datasets.base import Adapter, HubPart, MissingField, need, short_sha

REPO = "lukaemon/bbh"
SUBTASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)


def canonical(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    subtask = record.get("subtask") or record.get("category") or origin
    if subtask not in SUBTASKS:
        raise MissingField("subtask")  # a file named after no subtask, and no subtask field
    return {"subtask": subtask, "input": need(record, "input"), "target": str(need(record, "target"))}


def json_field(path: Path) -> str | None:
    """Original BBH task files wrap the records in ``{"examples": [...]}``."""
    return "examples" if path.name.endswith((".json", ".json.gz")) else None


ADAPTER = Adapter(
    name="bigbenchhard",
    task_version="1",
    id_scheme="subtask + '/' + sha256(input)[:12]",
    hub_parts=tuple(HubPart(REPO, name, "test", origin=name) for name in SUBTASKS),
    canonical=canonical,
    item_id=lambda f: f"{f['subtask']}/{short_sha(f['input'], 12)}",
    reference=lambda f, item_id: f["target"],
    json_field=json_field,
)
