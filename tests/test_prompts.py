"""Prompts: the paper's formats and instruction strings, verified against the authors' own prompts."""

from __future__ import annotations

import json

import pytest

from bench.datasets import DataSource
from bench.prompts import HUMANEVAL_INSTRUCTION, INSTRUCTION, PROMPT_VERSION
from bench.suite import DATASETS, PAPER_DATASETS, dataset, load_items, render
from paper_data import AUTHORS_FILES, PAPER_DATA

FIXTURES = DataSource(kind="fixtures", selection="all")


def test_instruction_strings_are_the_papers():
    assert INSTRUCTION == ("\n\nPrint only the answer surrounded by <ANS> and </ANS>. Never print any extra "
                           "explanations about how the response was generated.")
    assert HUMANEVAL_INSTRUCTION.startswith("\n\n# Complete the function implementation based on the provided")
    assert PROMPT_VERSION


def test_formats_on_fixtures():
    csqa = render(load_items("commonsenseqa", FIXTURES)[0])
    assert csqa.startswith("Question: Where would you keep a spare umbrella so it is handy when leaving home?\n"
                           "Options:\n(A) car wash\n(B) hallway stand\n")
    assert csqa.endswith("(E) library shelf" + INSTRUCTION)
    tqa = render(load_items("truthfulqa", FIXTURES)[2])
    assert tqa == ("Question: Does cracking your knuckles cause arthritis?\nChoices:\n"
                   "No, cracking your knuckles has not been shown to cause arthritis.\n"
                   "Yes, cracking your knuckles causes arthritis." + INSTRUCTION)
    lettered = render(load_items("truthfulqa_lettered", FIXTURES)[2])
    assert "\n(A) " in lettered and "\n(B) " in lettered and lettered.endswith(INSTRUCTION)
    he = load_items("humaneval", FIXTURES)[0]
    assert render(he) == he.fields["prompt"] + HUMANEVAL_INSTRUCTION
    gsm = load_items("gsm8k", FIXTURES)[0]
    assert render(gsm) == gsm.fields["question"] + INSTRUCTION


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_renders(name):
    assert all(render(i).endswith((INSTRUCTION, HUMANEVAL_INSTRUCTION)) for i in load_items(name, FIXTURES))


def authors_items(name: str):
    path = PAPER_DATA / AUTHORS_FILES[name]
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return dataset(name).adapter.items_from_records(records, "", str(path))


@pytest.mark.conformance
@pytest.mark.skipif(not (PAPER_DATA / "edge-llm-site-data.json").is_file(),
                    reason=f"authors' data not found at {PAPER_DATA} (conformance needs ../shared/paper-data)")
@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_render_reproduces_the_authors_prompts(name):
    site = json.loads((PAPER_DATA / "edge-llm-site-data.json").read_text(encoding="utf-8"))
    rendered = {render(item) for item in authors_items(name)}
    theirs = [q["prompt"] for q in site["questions"] if q["ds"] == name]
    assert len(theirs) == 12
    missing = [p[:80] for p in theirs if p not in rendered]
    assert not missing, missing
