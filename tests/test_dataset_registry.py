"""Adding a dataset is its module plus one entry in ``bench.suite.DATASETS``: the spec, the runner's items and
prompts, the score stage, the run identity, the report and verify reach a new dataset through the registry alone.
Here this test module is the new dataset's module (adapter, renderer, both scorers) and its items are data files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bench import results, suite
from bench.datasets.base import Adapter, need, short_sha
from bench.errors import CatalogError, SpecError
from bench.pipeline import pipeline, verify_run
from bench.records import Item, Score, sha256_text
from bench.spec import parse_spec
from ollama_server import DEMO_TAG

NAME = "sums"
QUESTIONS = [("What is 2 + 3?", "5"), ("What is 10 - 4?", "6")]

# -- the dataset's module interface (what one DATASETS entry points at) -----------------------------------------

ADAPTER = Adapter(
    name=NAME,
    task_version="7",
    id_scheme="sha256(question)[:16]",
    hub_parts=(),
    canonical=lambda record, origin: {"question": need(record, "question"), "answer": str(need(record, "answer"))},
    item_id=lambda f: short_sha(f["question"]),
    reference=lambda f, item_id: f["answer"],
)


def render(item: Item) -> str:
    return f"{item.fields['question']} Reply with the number only."


def paper(item: Item, response: str) -> Score:
    numbers = re.findall(r"-?\d+", response)
    return Score(item.reference in numbers, numbers[-1] if numbers else None, "sums: the reference among the numbers")


def strict(item: Item, response: str) -> Score:
    return Score(response.strip() == item.reference, response.strip(), "sums: the whole answer is the reference")


SUMS = suite.Dataset(ADAPTER, render, {"paper": paper, "strict": strict})


def spec_text(data_dir: Path) -> str:
    return f"""
[experiment]
name = "sums"
[backend]
kind = "llamacpp"
warmup = false
[options]
temperature = 0.0
num_predict = 6
num_thread = 1
[models]
tags = ["{DEMO_TAG}"]
[datasets.{NAME}]
source = "files"
path = "{data_dir}"
selection = "all"
[meter]
driver = "sim"
options = {{ rate_hz = 50, seed = 1 }}
[idle]
fixed_w = 2.85
[cooldown]
max_wait_s = 0
"""


@pytest.fixture
def sums(monkeypatch, tmp_path) -> Path:
    """One entry in DATASETS, and the new dataset's items as an upstream-format file (data)."""
    monkeypatch.setitem(suite.DATASETS, NAME, SUMS)
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    return data


def test_a_new_dataset_runs_through_the_registry_alone(sums, tmp_path, llama_engine):
    spec = parse_spec(spec_text(sums), "sums.toml")
    out = tmp_path / "out"
    done = pipeline(spec, out, progress=False, key_path=tmp_path / "key", backend=llama_engine)
    assert done.run.counts == {"ok": 2} and done.sealed

    db = results.connect_readonly(out / "results.db")
    rows = db.execute("SELECT a.item_id, a.prompt_sha256, s.mode, s.reason FROM answers a "
                      "JOIN scores s ON s.answer_id = a.id ORDER BY a.id, s.mode").fetchall()
    identity = results.run_identity(db)
    db.close()
    prompts = {short_sha(q): sha256_text(f"{q} Reply with the number only.") for q, _ in QUESTIONS}
    assert {(r["item_id"], r["prompt_sha256"]) for r in rows} == set(prompts.items())  # asked with its renderer
    assert {(r["mode"], r["reason"].split(":")[0]) for r in rows} == {("paper", NAME), ("strict", NAME)}
    assert [(d.name, d.task_version, len(d.item_ids)) for d in identity.datasets] == [(NAME, "7", 2)]

    cells = pd.read_csv(out / "report" / "tables" / "cells.csv")
    assert set(cells["dataset"]) == {NAME} and int(cells["n_answers"].sum()) == 2
    checked = verify_run(out)
    assert checked.ok, checked.lines()


def test_an_unregistered_dataset_is_one_line_naming_the_registered(sums):
    with pytest.raises(SpecError, match=rf"datasets\.sum: unknown dataset 'sum'\. Did you mean '{NAME}'"):
        parse_spec(spec_text(sums).replace(f"[datasets.{NAME}]", "[datasets.sum]"), "t.toml")
    with pytest.raises(CatalogError, match="unknown dataset 'sum'"):
        suite.dataset("sum")


def test_a_declaration_needs_a_scorer_for_every_mode():
    with pytest.raises(CatalogError, match=r"dataset sums: expected a scorer for each mode \(paper, strict\), got pap"):
        suite.Dataset(ADAPTER, render, {"paper": paper})
