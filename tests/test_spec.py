"""The spec loader: shipped specs load, every kind of mistake is one line naming the key, the hash is stable."""

from __future__ import annotations

import re

import pytest

from bench.errors import SpecError
from bench.spec import load_spec, parse_spec, shipped_specs

GOOD = """
[experiment]
name = "t"
[backend]
kind = "ollama"
[options]
temperature = 0.0
[models]
tags = ["qwen2.5:0.5b-instruct-q4_0"]
[datasets.gsm8k]
source = "cache"
limit = 5
[meter]
socket = "/tmp/m.sock"
[idle]
fixed_w = 2.85
"""


def test_shipped_specs_load():
    assert {"demo", "paper", "paper-clean", "smoke"} <= set(shipped_specs())
    paper = load_spec("paper")
    assert len(paper.models) == 28
    assert [d.name for d in paper.datasets] == ["bigbenchhard", "commonsenseqa", "gsm8k", "humaneval", "truthfulqa"]
    assert paper.options == {"temperature": 0.0, "num_ctx": 2048}  # 0.6.0's default context, made explicit
    assert paper.backend.timeout_s == 1200
    assert load_spec("smoke").backend.kind == "ollama"
    assert load_spec("demo").backend.kind == "llamacpp"


def test_paper_follows_the_authors_protocol_and_paper_clean_adds_warm_up_and_cooldown():
    """The authors sent no warm-up, left keep-alive at Ollama's default and did not cool down between models
    (paper-facts.md, API: their script calls ollama.generate(model, prompt, options={'temperature': 0}), non-streaming,
    nothing else)."""
    paper, clean = load_spec("paper"), load_spec("paper-clean")
    assert (paper.backend.warmup, paper.backend.keep_alive, paper.cooldown.max_wait_s) == (False, None, 0)
    assert (clean.backend.warmup, clean.backend.keep_alive) == (True, "30m") and clean.cooldown.max_wait_s > 0
    assert clean.models == paper.models and clean.datasets == paper.datasets and clean.options == paper.options


def test_hash_is_canonical_not_textual():
    a = parse_spec(GOOD)
    b = parse_spec("# a comment\n" + GOOD.replace("temperature = 0.0", "temperature = 0"))
    assert a.sha256 == b.sha256
    c = parse_spec(GOOD.replace("limit = 5", "limit = 6"))
    assert c.sha256 != a.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", a.sha256)


@pytest.mark.parametrize("change, message", [
    (("kind = \"ollama\"", "kind = \"vllm\""), "backend.kind: expected one of ollama, llamacpp, got 'vllm'"),
    (("qwen2.5:0.5b-instruct-q4_0", "qwen2.5:0.5b-instruct-q4_9"), "unknown model 'qwen2.5:0.5b-instruct-q4_9'. Did you mean"),
    (("[datasets.gsm8k]", "[datasets.gsm8kk]"), "datasets.gsm8kk: unknown dataset 'gsm8kk'. Did you mean 'gsm8k'?"),
    (("limit = 5", "limit = -1"), "datasets.gsm8k.limit: expected an integer >= 1, got -1"),
    (("limit = 5", "limit = \"5\""), "datasets.gsm8k.limit: expected an integer >= 1, got '5'"),
    (("source = \"cache\"", "source = \"files\""), "datasets.gsm8k.path: missing"),
    (("temperature = 0.0", "temprature = 0.0"), "options.temprature: unknown generation option"),
    (("[idle]", "[idle]\nbogus = 1"), "idle.bogus: unknown key"),
    (("fixed_w = 2.85", ""), "idle: expected idle.duration_s > 0"),
    (("socket = \"/tmp/m.sock\"", "driver = \"sim\"\nsocket = \"/x\""), "meter: expected at most one of"),
    (("name = \"t\"", "name = 3"), "experiment.name: expected a string, got 3"),
    (("kind = \"ollama\"", "kind = \"llamacpp\""), "runs on the 'ollama' backend, but backend.kind is 'llamacpp'"),
    (("[models]", "[models]\nset = \"paper\""), "models: expected exactly one of"),
    (("[experiment]", "[[experiment]]"), "experiment: expected a table"),
    (("[meter]", "[meter\n"), "not valid TOML"),
])
def test_broken_spec_is_one_line_naming_the_problem(change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(SpecError) as err:
        parse_spec(GOOD.replace(old, new, 1), "t.toml")
    text = str(err.value)
    assert message in text
    assert text.startswith("t.toml: ")
    assert "\n" not in text


def test_unknown_spec_name_lists_choices():
    with pytest.raises(SpecError, match="unknown spec 'dmeo'. Did you mean 'demo'"):
        load_spec("dmeo")


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(str(tmp_path / "nope.toml"))
