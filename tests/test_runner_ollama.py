"""The runner on the Ollama test server as 0.6.0 behaves: a model that cannot load is skipped and the run goes on; a
looping answer is kept with its text and energy and scored; a missing model stops the run before the idle baseline;
the paper protocol's first answer of each model carries the load."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from bench import results
from bench.errors import BackendError
from bench.pipeline import build_run_report
from bench.runner import INCOMPLETE, run
from bench.score_run import score_run
from bench.spec import load_spec

from ollama_server import OllamaTestServer, served_from_catalog
from runner_support import answer_rows, paced_spec

FITS = "qwen2.5:0.5b-instruct-q4_0"
TOO_BIG = "llama3.2:1b-instruct-q4_K_M"


def windows(db_path) -> dict[int, set[str]]:
    db = sqlite3.connect(db_path)
    try:
        out: dict[int, set[str]] = {}
        for answer_id, phase in db.execute("SELECT answer_id, phase FROM energy_windows"):
            out.setdefault(answer_id, set()).add(phase)
        return out
    finally:
        db.close()


@pytest.mark.parametrize("warmup", [False, True], ids=["paper-protocol", "with-warm-up"])
def test_a_model_that_cannot_load_is_skipped_and_the_run_goes_on(tmp_path, warmup):
    """llm/server.go NewLlamaServer refuses a model whose estimate exceeds free memory with HTTP 500; without a
    warm-up that happens at the model's first answer, with one at the warm-up. Either way: skipped, with the reason."""
    models = [served_from_catalog(TOO_BIG, memory_bytes=6 * 1024**3), served_from_catalog(FITS)]
    with OllamaTestServer(models=models, scripted_reply="<ANS>A</ANS>", free_memory_bytes=3 * 1024**3) as srv:
        spec = load_spec(str(paced_spec(tmp_path, srv.host, models=(TOO_BIG, FITS), limit=2,
                                        backend=f"warmup = {str(warmup).lower()}")))
        outcome = run(spec, tmp_path / "out", progress=False)
    assert not outcome.interrupted and outcome.counts == {"ok": 4, "skipped": 4}
    by_model = {}
    for r in answer_rows(tmp_path / "out" / "results.db"):
        by_model.setdefault(r["model"], set()).add((r["status"], r["reason"]))
    assert by_model[FITS] == {("ok", "")}
    [(status, reason)] = by_model[TOO_BIG]
    assert status == "skipped" and "model requires more system memory (6.0 GiB) than is available (3.0 GiB)" in reason
    db = results.connect(tmp_path / "out" / "results.db")
    events = [r["detail"] for r in db.execute("SELECT detail FROM run_events WHERE kind = 'skip'")]
    db.close()
    assert len(events) == 1 and TOO_BIG in events[0]


def test_a_looping_answer_is_stored_with_its_text_and_energy_and_scored(tmp_path):
    """llm/server.go: 31 equal pieces in a row end the completion without a done chunk. The paper's non-streaming
    call got the text so far (routes.go), so the answer is kept, metered and scored, marked incomplete."""
    loop = "<ANS>B</ANS> " + "again " * 40
    with OllamaTestServer(models=[served_from_catalog(FITS)], scripted_reply=loop, token_delay_s=0.01) as srv:
        spec = load_spec(str(paced_spec(tmp_path, srv.host, models=(FITS,), limit=1, datasets=("commonsenseqa",))))
        outcome = run(spec, tmp_path / "out", progress=False)
    assert outcome.counts == {"ok": 1}
    [row] = answer_rows(tmp_path / "out" / "results.db")
    assert row["reason"] == INCOMPLETE and row["complete"] == 0
    assert row["response"] == "<ANS>B</ANS> " + "again " * 31 and row["eval_count"] is None
    assert row["t_send_ns"] < row["t_first_token_ns"] < row["t_last_token_ns"]
    assert windows(tmp_path / "out" / "results.db")[row["id"]] == {"answer", "prefill", "decode"}
    [summary] = [s for s in score_run(tmp_path / "out", ("paper",)) if s.mode == "paper"]
    assert summary.scored == 1


def test_a_missing_model_stops_the_run_before_the_idle_baseline(tmp_path):
    with OllamaTestServer(models=[served_from_catalog(FITS)]) as srv:
        spec = load_spec(str(paced_spec(tmp_path, srv.host, models=(FITS, TOO_BIG), limit=1)))
        with pytest.raises(BackendError, match=f"{TOO_BIG}: missing at"):
            run(spec, tmp_path / "out", progress=False)
    db = results.connect(tmp_path / "out" / "results.db")
    assert results.latest_idle(db) is None and db.execute("SELECT count(*) FROM answers").fetchone()[0] == 0
    db.close()


def test_the_paper_protocol_puts_each_models_load_in_its_first_answer(tmp_path):
    """No warm-up, Ollama's default keep-alive: the first answer of a model is the request that loads it (sched.go),
    so its load_duration holds the load; with the warm-up it does not."""
    with OllamaTestServer(models=[served_from_catalog(FITS)], load_s=0.3) as srv:
        for warmup in (False, True):
            spec = load_spec(str(paced_spec(tmp_path, srv.host, models=(FITS,), limit=2, name=f"w{warmup}",
                                            datasets=("gsm8k",), backend=f"warmup = {str(warmup).lower()}")))
            srv.scheduler.unload(FITS)
            run(spec, tmp_path / f"out-{warmup}", progress=False)
    cold = answer_rows(tmp_path / "out-False" / "results.db")
    warm = answer_rows(tmp_path / "out-True" / "results.db")
    assert cold[0]["load_duration_ns"] > 0.3e9 > cold[1]["load_duration_ns"]
    assert all(r["load_duration_ns"] < 0.3e9 for r in warm)
    # the report says which protocol ran and shows the load in the first answer
    report = build_run_report(tmp_path / "out-False", "paper", published=False, plots=False)
    summary = (report / "summary.md").read_text()
    assert ("no warm-up, the server's default keep-alive, no cooldown, the server's default context: the first "
            "answer of each model's block loads the model inside its energy window") in summary
    [effect] = pd.read_csv(report / "tables" / "load_effect.csv").to_dict("records")
    assert effect["model"] == FITS and effect["first_load_s"] > 0.3 > effect["rest_load_s"]
    assert effect["first_over_rest"] > 1
