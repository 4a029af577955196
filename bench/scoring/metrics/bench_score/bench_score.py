"""`evaluate` metric wrapping `bench.suite.score`: accuracy of answers under the paper's or the strict rules.

Usage::

    metric = evaluate.load("/path/to/bench/scoring/metrics/bench_score")
    metric.compute(predictions=[answer, ...], references=[item_json, ...], mode="paper")

A reference is an item as JSON: ``{"dataset", "item_id", "fields", "reference"}``. One import per line: evaluate
scans imports with a regex to check dependencies.
"""

import json

import datasets
import evaluate

from bench.records import Item
from bench.scoring import MODES
from bench.suite import score

_DESCRIPTION = "Accuracy under the rules of Husom et al. 2025 (mode 'paper') or corrected rules (mode 'strict')."
_KWARGS = "predictions: model answers; references: items as JSON; mode: 'paper' or 'strict'."


def item_from_json(text):
    doc = json.loads(text)
    return Item(dataset=doc["dataset"], item_id=doc["item_id"], fields=doc["fields"], reference=doc["reference"])


def item_to_json(item):
    """The reference string for one item (helper for callers)."""
    return json.dumps({"dataset": item.dataset, "item_id": item.item_id, "fields": dict(item.fields),
                       "reference": item.reference}, sort_keys=True, ensure_ascii=False)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BenchScore(evaluate.Metric):
    """Per-answer scores and their mean."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Husom et al., Sustainable LLM Inference for Edge AI, arXiv:2504.03360",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, mode="paper"):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        scores = [score(item_from_json(ref), pred, mode) for pred, ref in zip(predictions, references)]
        correct = [1.0 if s.correct else 0.0 for s in scores]
        return {
            "accuracy": sum(correct) / len(correct) if correct else 0.0,
            "n": len(correct),
            "correct": correct,
            "reasons": [s.reason for s in scores],
        }
