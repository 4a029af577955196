"""A real result folder (written through bench.results' one write path) -> `bench report RESULT_DIR`."""

from __future__ import annotations

import json

import pytest

from bench.records import Completion, EnergyReading, Score

results = pytest.importorskip("bench.results", reason="the results stage (bench.results) is not there yet")

S = 1_000_000_000
IDLE_W = 3.0


def _answer(run_id, model, dataset, i, t0):
    """One ok answer: 2 s prefill at 6 W and 4 s decode at 5 W (raw); idle 3 W -> 6 J + 8 J idle-subtracted."""
    first, last = t0 + 2 * S, t0 + 6 * S
    comp = Completion(text="<ANS>A</ANS>", t_send_ns=t0, t_first_token_ns=first, t_last_token_ns=last,
                      prompt_eval_count=60, prompt_eval_duration_ns=int(1.8 * S), eval_count=8,
                      eval_duration_ns=4 * S, load_duration_ns=int(0.2 * S), total_duration_ns=6 * S)
    windows = {
        "prefill": EnergyReading(t0, first, energy_j=12.0, mean_w=6.0, n_samples=4, coverage=1.0),
        "decode": EnergyReading(first, last, energy_j=20.0, mean_w=5.0, n_samples=8, coverage=1.0),
        "answer": EnergyReading(t0, last, energy_j=32.0, mean_w=32 / 6, n_samples=12, coverage=1.0),
    }
    trace = [(t0 - S + k * S // 2, 6.0 if t0 <= t0 - S + k * S // 2 < first else 5.0) for k in range(16)]
    return results.AnswerRecord(run_id=run_id, model=model, dataset=dataset, item_id=str(i), item_sha256="0" * 64,
                                prompt_sha256="1" * 64, status="ok", completion=comp, idle_w=IDLE_W, windows=windows,
                                trace=trace if i == 0 else None)


@pytest.fixture()
def run_dir(tmp_path):
    db = results.connect(tmp_path / "results.db")
    results.migrate(db)
    from bench.spec import load_spec

    spec = load_spec("smoke")  # any valid spec: the report header shows its name and hash
    run, _ = results.open_run(db, spec.name, spec.sha256, spec.source_text)
    from bench.catalog import model
    from bench.identity import RunIdentity

    tags = ("qwen2.5:0.5b-instruct-q8_0", "qwen2.5:0.5b-instruct-q4_K_M")
    entries = tuple(spec.model_entries()) + tuple(model(t) for t in tags)  # the stored spec's and the answering ones
    results.record_identity(db, run.run_id, RunIdentity("p1", entries, ()))
    ids, t0 = [], 10 * S
    for model in ("qwen2.5:0.5b-instruct-q8_0", "qwen2.5:0.5b-instruct-q4_K_M"):
        for dataset in ("gsm8k", "truthfulqa"):
            for i in range(3):
                ids.append(results.record_answer(db, _answer(run.run_id, model, dataset, i, t0)))
                t0 += 10 * S
    results.record_answer(db, results.AnswerRecord(run_id=run.run_id, model="qwen2.5:0.5b-instruct-q8_0",
                                                   dataset="gsm8k", item_id="9", item_sha256="0" * 64,
                                                   prompt_sha256="1" * 64, status="timeout", reason="1200 s"))
    results.record_scores(db, "paper", [(a, Score(correct=k % 3 == 0, extracted="A", reason="")) for k, a in
                                        enumerate(ids)], "1")
    db.close()
    return tmp_path


def test_report_from_a_result_folder(run_dir):
    from click.testing import CliRunner

    from bench.cli import _register, cli
    from bench.report import recompute_check
    from bench.report.run_folder import load_run
    from bench.report.traces import as_trace

    _register()
    res = CliRunner().invoke(cli, ["report", str(run_dir), "--no-plots", "--no-published"])
    assert res.exit_code == 0, res.output
    numbers = json.loads((run_dir / "report" / "numbers.json").read_text())
    v = numbers["values"]
    assert v["model/qwen2.5:0.5b-instruct-q8_0/energy_j"] == pytest.approx(14.0)  # 32 J - 3 W x 6 s
    assert v["model/qwen2.5:0.5b-instruct-q8_0/j_per_token"] == pytest.approx(14.0 / 8)
    assert v["model/qwen2.5:0.5b-instruct-q8_0/latency_s"] == pytest.approx(6.0)
    assert v["model/qwen2.5:0.5b-instruct-q8_0/accuracy"] == pytest.approx(1 / 3)
    assert numbers["n_rows"] == 13
    import pandas as pd

    ph = pd.read_csv(run_dir / "report" / "tables" / "phases.csv")
    assert ph["j_per_prompt_token"].to_numpy() == pytest.approx([0.1] * 4)  # (12 - 3 W x 2 s) J / 60 tokens
    assert ph["j_per_gen_token_decode"].to_numpy() == pytest.approx([1.0] * 4)  # (20 - 3 W x 4 s) J / 8 tokens
    assert ph["prefill_energy_share"].to_numpy() == pytest.approx([6 / 14] * 4)
    run = load_run(run_dir)
    assert recompute_check(run.frame, run_dir / "report") == []
    trace = as_trace(run.traces[0])
    assert trace is not None and trace.t_first_ns - trace.t_send_ns == 2 * S and len(trace.samples) == 16
    assert trace.idle_w == IDLE_W
    md = (run_dir / "report" / "summary.md").read_text()
    assert "1 of 13 answers ended without a recorded answer" in md
