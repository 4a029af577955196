"""The runner end to end: llama.cpp + SmolLM2 (or the paced Ollama-API test server where only the runner's own
behaviour matters), the sim meter daemon, fixture items, real SQLite. Crashes, interrupts, timeouts, broken specs."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from bench import results
from bench.runner import run
from bench.spec import load_spec
from runner_support import ROOT, answer_rows, bench_cmd, demo_variant, needs_llm, paced_spec, run_bench



def count_answers(db_path) -> int:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT count(*) FROM answers").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


@needs_llm
def test_run_meters_every_answer_and_resumes(tmp_path):
    spec = load_spec(str(demo_variant(tmp_path, limit=1)))
    out = tmp_path / "out"
    outcome = run(spec, out, progress=False)
    assert outcome.counts == {"ok": 6} and outcome.asked == 6 and not outcome.resumed
    db = results.connect(out / "results.db")
    idle = results.latest_idle(db)
    assert idle.source == "measured" and 2.8 <= idle.mean_w <= 7.0 and idle.n_samples >= 40
    windows = db.execute("SELECT a.id, w.phase, w.energy_raw_j, w.energy_j, w.coverage, w.n_samples, w.start_ns, "
                         "w.end_ns, a.t_send_ns, a.t_first_token_ns, a.t_last_token_ns FROM energy_windows w "
                         "JOIN answers a ON a.id = w.answer_id").fetchall()
    assert len(windows) == 18
    by_answer = {}
    for w in windows:
        by_answer.setdefault(w["id"], {})[w["phase"]] = w
        assert w["coverage"] > 0.95 and w["energy_raw_j"] > 0
    for phases in by_answer.values():
        a, p, d = phases["answer"], phases["prefill"], phases["decode"]
        assert (a["start_ns"], a["end_ns"]) == (a["t_send_ns"], a["t_last_token_ns"])
        assert (p["end_ns"], d["start_ns"]) == (a["t_first_token_ns"],) * 2
        # the two phase windows partition the answer window: their raw energies add up
        assert p["energy_raw_j"] + d["energy_raw_j"] == pytest.approx(a["energy_raw_j"], rel=0.01)
    rows = answer_rows(out / "results.db")
    for r in rows:
        assert r["eval_count"] > 0 and r["prompt_eval_count"] > 0
        assert r["t_send_ns"] < r["t_first_token_ns"] <= r["t_last_token_ns"]
        assert len(r["prompt_sha256"]) == len(r["item_sha256"]) == 64
    assert len(results.traces(db, limit=10)) == 6  # first answer of each (model, dataset) block
    db.close()
    again = run(spec, out, progress=False)
    assert again.resumed and again.asked == 0 and again.counts == {"ok": 6}


def test_broken_spec_writes_nothing(tmp_path):
    bad = demo_variant(tmp_path)
    bad.write_text(bad.read_text().replace("limit = 1", "limit = 0", 1))
    out = tmp_path / "out"
    proc = run_bench("run", "--spec", str(bad), "--out", str(out))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "limit: expected an integer >= 1, got 0" in lines[0]
    assert not out.exists()


@needs_llm
def test_timeouts_are_rows_with_a_reason(tmp_path):
    spec = load_spec(str(demo_variant(tmp_path, timeout_s=0.05, num_predict=64, datasets=("gsm8k",))))
    outcome = run(spec, tmp_path / "out", progress=False)
    assert outcome.counts == {"timeout": 1}
    (row,) = answer_rows(tmp_path / "out" / "results.db")
    assert row["status"] == "timeout" and "0.05" in row["reason"]


def _start(spec_path, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(bench_cmd("run", "--spec", str(spec_path), "--out", str(out), "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for_answers(db_path, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while count_answers(db_path) < n:
        assert proc.poll() is None, f"run ended early: {proc.communicate()[1][-1500:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


@pytest.mark.parametrize("kills", [20])
def test_sigkill_at_random_moments_then_resume_loses_and_duplicates_nothing(tmp_path, paced_ollama, kills):
    """Up to 20 SIGKILLs at random moments (start-up, idle baseline, mid-answer, mid-commit), each followed by a restart:
    the answers committed before each kill stay byte-identical, and the end has exactly one row per item."""
    datasets = ("commonsenseqa", "gsm8k", "bigbenchhard", "truthfulqa", "truthfulqa_lettered", "humaneval")
    spec_path = paced_spec(tmp_path, paced_ollama, limit=5, datasets=datasets)
    out = tmp_path / "out"
    rng = random.Random(20250403)
    seen: list[dict] = []
    mid_run = 0  # kills that found some answers committed and some still to ask
    for _ in range(kills):
        if len(seen) >= 20:  # a fast machine gets far: leave the last third to the final run, so kills land mid-run
            break
        proc = _start(spec_path, out)
        time.sleep(rng.uniform(1.0, 7.0))  # start-up (imports, meter, idle, warm-up) takes ~3 s
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = answer_rows(out / "results.db") if (out / "results.db").exists() else []
        assert rows[: len(seen)] == seen
        seen = rows
        mid_run += 0 < len(seen) < 30
        if len(seen) == 30:  # a fast machine finished the run between kills: nothing left to interrupt
            break
    run_bench("run", "--spec", str(spec_path), "--out", str(out), "--no-progress", check=True)
    rows = answer_rows(out / "results.db")
    assert rows[: len(seen)] == seen
    keys = [(r["model"], r["dataset"], r["item_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 30
    assert {r["status"] for r in rows} == {"ok"}
    assert mid_run, "the kills should have landed mid-run"


def test_sigint_finishes_the_answer_in_flight_and_stops(tmp_path, paced_ollama):
    spec_path = paced_spec(tmp_path, paced_ollama, limit=5)
    out = tmp_path / "out"
    proc = _start(spec_path, out)
    _wait_for_answers(out / "results.db", 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in stdout
    done = count_answers(out / "results.db")
    assert 1 <= done < 10
    db = sqlite3.connect(out / "results.db")
    assert db.execute("SELECT kind FROM run_events ORDER BY id DESC LIMIT 1").fetchone()[0] == "stop"
    db.close()
    proc = run_bench("run", "--spec", str(spec_path), "--out", str(out), "--no-progress", check=True)
    assert f"asked {10 - done} this time" in proc.stdout
