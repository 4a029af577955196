"""CommonsenseQA (Talmor et al. 2019): 5-way multiple choice; the item id is the dataset's own ``id``.

Canonical form = the hub record of `tau/commonsense_qa`: ``id, question, question_concept, choices{label,text},
answerKey``. The original release (and the authors' sampled file) nests ``question{stem, choices[], question_concept}``;
both shapes are accepted.
"""

from __future__ import annotations

from typing import Any, Mapping

from bench.datasets.base import Adapter, HubPart, need

REPO = "tau/commonsense_qa"


def canonical(record: Mapping[str, Any], origin: str) -> dict[str, Any]:
    question = need(record, "question")
    if isinstance(question, Mapping):  # original release: question{stem, choices[{label,text}], question_concept}
        choices = need(question, "choices")
        return {
            "id": need(record, "id"),
            "question": need(question, "stem"),
            "question_concept": question.get("question_concept") or "",
            "choices": {"label": [c["label"] for c in choices], "text": [c["text"] for c in choices]},
            "answerKey": need(record, "answerKey"),
        }
    return {
        "id": need(record, "id"),
        "question": question,
        "question_concept": record.get("question_concept") or "",
        "choices": {"label": list(need(record, "choices.label")), "text": list(need(record, "choices.text"))},
        "answerKey": need(record, "answerKey"),
    }


ADAPTER = Adapter(
    name="commonsenseqa",
    task_version="1",
    id_scheme="the dataset's own 'id'",
    hub_parts=(HubPart(REPO, None, "train"), HubPart(REPO, None, "validation")),
    canonical=canonical,
    item_id=lambda f: str(f["id"]),
    reference=lambda f, item_id: f["answerKey"],
)
