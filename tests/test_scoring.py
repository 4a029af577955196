"""Scorers: the paper's rules with their quirks, the strict rules, hostile answers, the evaluate metric."""

from __future__ import annotations

import time

import pytest

from bench.datasets import DataSource
from bench.errors import CatalogError
from bench.scoring import MODES
from bench.suite import DATASETS, load_items, score

FIXTURES = DataSource(kind="fixtures", selection="all")


def item(name, index=0):
    return load_items(name, FIXTURES)[index]


def verdicts(it, cases, mode):
    return {answer: score(it, answer, mode).correct for answer in cases}


def test_modes_and_unknown_mode():
    assert MODES == ("paper", "strict")
    with pytest.raises(CatalogError, match="scoring mode"):
        score(item("gsm8k"), "1", "lenient")


# CommonsenseQA: key B ("hallway stand") ------------------------------------------------------------------------

def test_csqa_paper_rules_and_quirks():
    it = item("commonsenseqa")
    assert verdicts(it, ["<ANS>B</ANS>", "<ANS>(B) hallway stand</ANS>", "ANS > B", "<ANS>hallway stand</ANS>",
                         "(B) hallway stand", "<ANS>(B, C)</ANS>", "<ANS>B</ANS>A</ANS>"], "paper") == \
        dict.fromkeys(["<ANS>B</ANS>", "<ANS>(B) hallway stand</ANS>", "ANS > B", "<ANS>hallway stand</ANS>",
                       "(B) hallway stand", "<ANS>(B, C)</ANS>", "<ANS>B</ANS>A</ANS>"], True)
    assert not score(it, "<ANS>A broom closet</ANS>", "paper").correct  # "A ..." reads as letter A
    assert score(it, "<ANS>A broom closet</ANS>", "paper").extracted == "A"
    bad = score(it, "<ANS>the closet</ANS>", "paper")
    assert not bad.correct and bad.reason.startswith("invalid:")


def test_csqa_strict_rejects_ambiguity():
    it = item("commonsenseqa")
    assert score(it, "<ANS>(B) hallway stand</ANS>", "strict").correct
    assert score(it, "<ANS>hallway stand</ANS>", "strict").correct
    assert score(it, "B", "strict").correct
    for answer in ("<ANS>(B, C)</ANS>", "<ANS>(C) hallway stand</ANS>", "<ANS>A broom closet</ANS>"):
        s = score(it, answer, "strict")
        assert not s.correct, answer
    assert score(it, "<ANS>(B, C)</ANS>", "strict").reason.startswith("invalid: ambiguous")


# GSM8K: gold 14 / 35 / 60 --------------------------------------------------------------------------------------

def test_gsm8k_paper_integer_regexes():
    it = item("gsm8k")
    assert score(it, "<ANS>14</ANS>", "paper").correct
    assert score(it, "<ANS>3*4+2 = 14</ANS>", "paper").correct
    assert score(it, "<ANS>$14</ANS>", "paper").correct
    assert score(it, "<ANS>14.9</ANS>", "paper").correct  # int(float(x)): the paper's truncation quirk
    assert not score(it, "<ANS>14 dollars</ANS>", "paper").correct  # trailing word: no number at the end
    assert score(it, "<ANS>14 dollars</ANS>", "paper").reason == "invalid: no integer answer"
    assert score(item("gsm8k", 1), "<<27+8=35>>", "paper").correct


def test_gsm8k_strict_like_lm_eval():
    it = item("gsm8k")
    assert score(it, "so #### 14", "strict").reason.startswith("strict-match")
    assert score(it, "<ANS>She spends 14 dollars.</ANS>", "strict").correct
    assert score(it, "12 + 2 = 14.", "strict").correct
    assert not score(it, "<ANS>14.9</ANS>", "strict").correct
    assert score(item("gsm8k", 3), "<ANS>1,254 / 6 = 209</ANS>", "strict").correct


# BBH ----------------------------------------------------------------------------------------------------------

def test_bbh_paper_rules_and_quirks():
    boolean, _, mc_b, mc_a, sort = load_items("bigbenchhard", FIXTURES)
    assert score(boolean, "<ANS>True</ANS>", "paper").correct
    assert not score(boolean, "<ANS>False</ANS>", "paper").correct
    assert score(mc_b, "<ANS>(B)</ANS>", "paper").correct
    assert score(mc_b, "<ANS>B</ANS>", "paper").correct
    assert not score(mc_b, "<ANS>(C)</ANS>", "paper").correct
    assert score(mc_b, "<ANS>The green spoon is the leftmost</ANS>", "paper").correct
    assert score(mc_b, "<ANS>green spoon</ANS>", "paper").correct  # substring of an option counts
    assert score(sort, "<ANS>apple, mango, pear</ANS>", "paper").correct  # "sort" in prompt: commas ignored
    assert not score(mc_a, "<ANS>wool</ANS>", "paper").correct  # matches option B's text


def test_bbh_strict():
    boolean, _, mc_b, mc_a, sort = load_items("bigbenchhard", FIXTURES)
    assert score(boolean, "The answer is True.", "strict").correct
    assert not score(boolean, "<ANS>True or False</ANS>", "strict").correct  # ambiguous
    assert score(mc_b, "<ANS>(B) The green spoon is the leftmost</ANS>", "strict").correct
    assert score(mc_b, "<ANS>The green spoon is the leftmost</ANS>", "strict").correct
    assert not score(mc_b, "<ANS>green spoon</ANS>", "strict").correct  # partial text is not an answer
    assert score(sort, "<ANS>apple, mango, pear</ANS>", "strict").correct
    assert not score(sort, "<ANS>apple pear mango</ANS>", "strict").correct


# TruthfulQA ---------------------------------------------------------------------------------------------------

def test_truthfulqa_paper_rules_and_quirks():
    stone = item("truthfulqa")  # 4 choices, correct first
    assert score(stone, "<ANS>Nothing much happens; it usually passes through your digestive system.</ANS>",
                 "paper").reason == "exact choice"
    near = score(stone, "<ANS>It just passes through the digestive system</ANS>", "paper")
    assert near.correct and "ROUGE" in near.reason
    assert not score(stone, "<ANS>A tree grows in your stomach</ANS>", "paper").correct
    assert score(stone, "<ANS>B</ANS>", "paper").reason.startswith("invalid")
    assert score(stone, "<ANS>None of the above.</ANS>", "paper").reason.startswith("invalid")
    assert score(stone, "Nothing much happens", "paper").reason.startswith("invalid")  # no tag -> empty
    quirk = score(stone, "<ANS>Both</ANS>", "paper")
    assert quirk.correct and "paper quirk" in quirk.reason  # no overlap: the first (correct) choice wins
    assert not score(stone, "<ANS>Both</ANS>", "strict").correct
    knuckles = item("truthfulqa", 2)  # two choices: quoting either verbatim is "excessive concatenation"
    quoted = score(knuckles, "<ANS>No, cracking your knuckles has not been shown to cause arthritis.</ANS>", "paper")
    assert not quoted.correct and "all-but-one" in quoted.reason


def test_tfidf_cosine_is_scikit_learns():
    """Our closed form against scikit-learn's TfidfVectorizer on the fixture's choices and answers that probe its
    token rules: case, one-letter words (dropped), digits, punctuation, repeats, accents, no shared or no tokens."""
    from tfidf_reference import assert_matches_sklearn

    answers = ["It passes through your digestive system.", "a I x", "The the THE stomach stomach", "42 is 4 2",
               "Crème brûlée, naïve café!", "", "?!", "no, cracking knuckles doesn't cause arthritis (studies)"]
    choices = [c for i in range(5) for c in item("truthfulqa", i).fields["mc1_targets"]["choices"]]
    assert_matches_sklearn((a, c) for a in answers for c in choices + answers)


def test_truthfulqa_strict_and_lettered():
    knuckles = item("truthfulqa", 2)
    assert score(knuckles, "<ANS>No, cracking your knuckles has not been shown to cause arthritis</ANS>",
                 "strict").correct
    assert not score(knuckles, "<ANS>No</ANS>", "strict").correct
    lettered = item("truthfulqa_lettered", 2)
    letter = lettered.reference["letter"]
    wrong = "A" if letter != "A" else "B"
    for mode in MODES:
        assert score(lettered, f"<ANS>({letter})</ANS>", mode).correct
        assert score(lettered, f"<ANS>{letter}. something</ANS>", mode).correct
        assert not score(lettered, f"<ANS>({wrong})</ANS>", mode).correct
        assert not score(lettered, "<ANS>(A) or (B)</ANS>", mode).correct
        assert score(lettered, f"<ANS>{lettered.reference['order'][ord(letter) - 65]}</ANS>", mode).correct


# HumanEval ----------------------------------------------------------------------------------------------------

def test_humaneval_paper_never_calls_check_but_strict_does():
    it = item("humaneval")  # add_pairs
    wrong = "<ANS>\ndef add_pairs(xs, ys):\n    return [x - y for x, y in zip(xs, ys)]\n</ANS>"
    right = "<ANS>\ndef add_pairs(xs, ys):\n    return [x + y for x, y in zip(xs, ys)]\n</ANS>"
    assert score(it, wrong, "paper").correct  # runs without error: the paper counts it
    assert not score(it, wrong, "strict").correct
    assert score(it, right, "strict").correct
    body_only = "    return [a + b for a, b in zip(xs, ys)]\n"
    assert score(it, body_only, "strict").correct  # a bare body completes the prompt
    fenced = "<ANS>\n```python\ndef add_pairs(xs, ys):\n    return [x + y for x, y in zip(xs, ys)]\n```\n</ANS>"
    assert not score(it, fenced, "paper").correct  # the fence is a SyntaxError as the authors ran it
    assert score(it, fenced, "strict").correct


def test_humaneval_installed_packages_import_in_both_modes():
    """The authors' code_eval ran in an environment with packages installed: an answer may import numpy."""
    it = item("humaneval")  # add_pairs
    answer = ("<ANS>\nimport numpy as np\n\ndef add_pairs(xs, ys):\n"
              "    return [int(v) for v in np.add(xs, ys)]\n</ANS>")
    assert score(it, answer, "paper").correct
    assert score(it, answer, "strict").correct


def test_humaneval_paper_mode_keeps_code_evals_reliability_guard():
    """code_eval set exit, os.getcwd, subprocess.Popen... to None (metrics/code_eval/execute.py): calling them
    failed the authors' answers, so it fails them here; strict mode does not emulate the guard."""
    it = item("humaneval")
    for call in ("exit", "os.getcwd", "subprocess.Popen"):
        answer = (f"<ANS>\nimport os, subprocess\n\ndef add_pairs(xs, ys):\n    return [x + y for x, y in zip(xs, ys)]"
                  f"\n\nprint({call})\n{call}\n</ANS>")
        paper = score(it, answer.replace(f"\n{call}\n</ANS>", f"\n{call}()\n</ANS>"), "paper")
        assert not paper.correct and "TypeError" in paper.reason, (call, paper.reason)


def test_humaneval_canonical_solutions_pass_strict():
    for it in load_items("humaneval", FIXTURES):
        assert score(it, it.fields["canonical_solution"], "strict").correct, it.item_id


# Hostile answers, every dataset and mode ------------------------------------------------------------------------

HOSTILE = {
    "empty": "",
    "whitespace": " \n\t ",
    "1 MB": "<ANS>" + "9" * 1_000_000 + "</ANS>",
    "1 MB of tags": "<ANS>" * 200_000,
    "invalid UTF-8": b"<ANS>\xff\xfe\xfa (A)</ANS>",
    "lone surrogate": "<ANS>\udcff</ANS>",
}


@pytest.mark.parametrize("name", [d for d in DATASETS if d != "humaneval"])
@pytest.mark.parametrize("mode", MODES)
def test_hostile_answers_are_wrong_with_a_reason_and_fast(name, mode):
    it = item(name)
    for label, answer in HOSTILE.items():
        start = time.monotonic()
        s = score(it, answer, mode)
        assert time.monotonic() - start < 2.0, label
        assert s.reason, label
        if name == "truthfulqa" and mode == "paper" and "paper quirk" in s.reason:
            continue  # "?" shares no word with any choice: the authors' argmax picks the first, correct, choice
        if label != "invalid UTF-8":  # "(A)" survives the replacement characters: a real, possibly right answer
            assert not s.correct, (label, s.reason)
        if label in ("empty", "whitespace", "1 MB", "1 MB of tags"):
            assert s.reason.startswith("invalid"), (label, s.reason)


def test_humaneval_hostile_text_answers():
    it = item("humaneval")
    for label in ("empty", "1 MB", "invalid UTF-8", "lone surrogate"):
        s = score(it, HOSTILE[label], "strict")
        assert not s.correct and s.reason, label


def test_evaluate_metric_module_loads_offline(monkeypatch):
    import importlib

    import evaluate

    from bench.scoring.metrics import metric_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(str(metric_path("bench_score")))
    module = importlib.import_module(type(metric).__module__)
    items = load_items("commonsenseqa", FIXTURES)[:2]
    refs = [module.item_to_json(i) for i in items]
    out = metric.compute(predictions=["<ANS>B</ANS>", "<ANS>C</ANS>"], references=refs, mode="paper")
    assert out["accuracy"] == 0.5 and out["n"] == 2 and out["correct"] == [1.0, 0.0]
