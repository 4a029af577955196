"""The paper's prompts: each dataset's question format with the instruction appended (paper-facts §3).

Formats and instruction strings are the authors' verbatim (`src/inference.py`, `exp.sh`); choice order is the
dataset's own. `truthfulqa_lettered` (strict variant, not in the paper) shows its shuffled choices as ``(A) text``.
One renderer per dataset, named after it; `bench.suite` says which dataset is asked with which (its ``render``).
"""

from __future__ import annotations

import string

from bench.records import Item

PROMPT_VERSION = "paper-2025-1"

INSTRUCTION = (
    "\n\nPrint only the answer surrounded by <ANS> and </ANS>. "
    "Never print any extra explanations about how the response was generated."
)
HUMANEVAL_INSTRUCTION = (
    "\n\n# Complete the function implementation based on the provided docstring, and print only the completed "
    "function surrounded by <ANS> and </ANS>. Never print any extra explanations about how the code was generated."
)


def commonsenseqa(item: Item) -> str:
    choices = item.fields["choices"]
    options = "\n".join(f"({label}) {text}" for label, text in zip(choices["label"], choices["text"]))
    return f"Question: {item.fields['question']}\nOptions:\n{options}" + INSTRUCTION


def bigbenchhard(item: Item) -> str:
    return item.fields["input"] + INSTRUCTION


def gsm8k(item: Item) -> str:
    return item.fields["question"] + INSTRUCTION


def truthfulqa(item: Item) -> str:
    choices = "\n".join(item.fields["mc1_targets"]["choices"])
    return f"Question: {item.fields['question']}\nChoices:\n{choices}" + INSTRUCTION


def truthfulqa_lettered(item: Item) -> str:
    order = item.reference["order"]
    choices = "\n".join(f"({letter}) {text}" for letter, text in zip(string.ascii_uppercase, order))
    return f"Question: {item.fields['question']}\nChoices:\n{choices}" + INSTRUCTION


def humaneval(item: Item) -> str:
    return item.fields["prompt"] + HUMANEVAL_INSTRUCTION
