"""The report's protocol section: which protocol ran, the load carried by each block's first answer, and what Ollama
did without saying so (cut prompts, answers ended by the repeat guard, the prompt cache)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.report import metrics, protocol
from bench.spec import load_spec


def frame_of(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "ok", "host_total_s": 2.0, "load_s": 0.01, "energy_j": 5.0, "prompt_eval_count": 100,
            "prompt_cached_tokens": np.nan, "num_ctx": 2048, "prompt_truncated": 0, "complete": 1}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_the_shipped_protocols_in_words():
    paper, clean = protocol.describe(load_spec("paper")), protocol.describe(load_spec("paper-clean"))
    assert paper.startswith("no warm-up, the server's default keep-alive, no cooldown, num_ctx 2048: ")
    assert "loads the model inside its energy window" in paper
    assert clean.startswith("a warm-up with the answers' options before each model, keep_alive '30m', "
                            "cooldown to 55 °C (up to 300 s), num_ctx 2048: ")
    assert "outside every answer window" in clean


def test_the_first_answer_of_each_block_against_the_rest():
    t = iter(range(100))
    rows = []
    for ds in ("gsm8k", "commonsenseqa"):
        for model, load in (("a:1b", 4.0), ("b:1b", 9.0)):
            rows.append({"model": model, "dataset": ds, "t_send_ns": next(t), "host_total_s": 2.0 + load,
                         "load_s": load, "energy_j": 5.0 + 3 * load})
            rows += [{"model": model, "dataset": ds, "t_send_ns": next(t)} for _ in range(3)]
    rows.append({"model": "a:1b", "dataset": "gsm8k", "t_send_ns": -1, "status": "timeout", "host_total_s": 99})
    effect = protocol.load_effect(frame_of(rows)).set_index("model")
    assert list(effect.index) == ["a:1b", "b:1b"] and effect["blocks"].tolist() == [2, 2]
    assert effect.loc["a:1b", "first_s"] == pytest.approx(6.0) and effect.loc["a:1b", "rest_s"] == pytest.approx(2.0)
    assert effect.loc["b:1b", "first_over_rest"] == pytest.approx(5.5)
    assert effect.loc["b:1b", "first_load_s"] == 9.0 and effect.loc["b:1b", "rest_energy_j"] == 5.0


def test_notes_on_what_ollama_did_quietly():
    rows = [{"model": "a", "dataset": "gsm8k", "t_send_ns": 1, "prompt_eval_count": 2048, "prompt_truncated": 1},
            {"model": "a", "dataset": "gsm8k", "t_send_ns": 2, "prompt_cached_tokens": 30, "complete": 0},
            {"model": "a", "dataset": "gsm8k", "t_send_ns": 3, "prompt_cached_tokens": 50}]
    notes = protocol.quiet_behaviours(frame_of(rows))
    assert notes[0].startswith("1 of 3 answers had their prompt cut to the context (num_ctx 2048)")
    assert notes[1].startswith("1 answer ended without a final chunk")
    assert notes[2].startswith("Ollama's prompt cache served 80 of 200 prompt tokens (40%) in the 2 answers")
    assert "by the 120 evaluated tokens" in notes[2]


def test_j_per_prompt_token_divides_by_the_evaluated_tokens():
    frame = frame_of([{"model": "a", "dataset": "gsm8k", "prefill_energy_j": 7.0, "prompt_cached_tokens": 30},
                      {"model": "a", "dataset": "gsm8k", "prefill_energy_j": 7.0}])
    assert metrics.derive(frame)["j_per_prompt_token"].tolist() == pytest.approx([0.1, 0.07])


def test_no_section_without_a_protocol_or_ollamas_columns():
    authors = pd.DataFrame({"model": ["a"], "dataset": ["gsm8k"], "energy_j": [1.0]})  # no stamps, no counts
    assert protocol.section(authors, None) is None
    assert protocol.section(authors, "paper").protocol == "paper"
