"""The paper's prompts: each dataset's question format with the instruction appended (paper-facts §3).

Formats and instruction strings are the authors' verbatim (`src/inference.py`, `exp.sh`); choice order is the
dataset's own. `truthfulqa_lettered` (strict variant, not in the paper) shows its shuffled choices as ``(A) text``.
"""

from __future__ import annotations

import logging
import string

from bench.errors import CatalogError, did_you_mean
from bench.records import Item

log = logging.getLogger(__name__)

PROMPT_VERSION = "paper-2025-1"

INSTRUCTION = (
    "\n\nPrint only the answer surrounded by <ANS> and </ANS>. "
    "Never print any extra explanations about how the response was generated."
)
HUMANEVAL_INSTRUCTION = (
    "\n\n# Complete the function implementation based on the provided docstring, and print only the completed "
    "function surrounded by <ANS> and </ANS>. Never print any extra explanations about how the code was generated."
)


def _commonsenseqa(item: Item) -> str:
    choices = item.fields["choices"]
    options = "\n".join(f"({label}) {text}" for label, text in zip(choices["label"], choices["text"]))
    return f"Question: {item.fields['question']}\nOptions:\n{options}" + INSTRUCTION


def _truthfulqa(item: Item) -> str:
    choices = "\n".join(item.fields["mc1_targets"]["choices"])
    return f"Question: {item.fields['question']}\nChoices:\n{choices}" + INSTRUCTION


def _truthfulqa_lettered(item: Item) -> str:
    order = item.reference["order"]
    choices = "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, order))
    return f"Question: {item.fields['question']}\nChoices:\n{choices}" + INSTRUCTION


_RENDERERS = {
    "commonsenseqa": _commonsenseqa,
    "bigbenchhard": lambda item: item.fields["input"] + INSTRUCTION,
    "gsm8k": lambda item: item.fields["question"] + INSTRUCTION,
    "truthfulqa": _truthfulqa,
    "humaneval": lambda item: item.fields["prompt"] + HUMANEVAL_INSTRUCTION,
    "truthfulqa_lettered": _truthfulqa_lettered,
}


def render(item: Item) -> str:
    """The exact prompt string sent to the model for ``item``."""
    try:
        renderer = _RENDERERS[item.dataset]
    except KeyError:
        raise CatalogError(did_you_mean("dataset", item.dataset, list(_RENDERERS))) from None
    return renderer(item)
