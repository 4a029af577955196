"""Our runs meter the paper's window too: ``[last byte, last byte + total_duration]`` beside the answer's own.

A paced Ollama-API server answers back to back while the simulated meter draws load power only between the
runner's answer marks, so the paper's window of an answer covers the next answer's load, and the last answer's
covers idle: the same shift the authors' traces show, measured from our own stamps.
"""

from __future__ import annotations

import sqlite3

import pytest

from bench import results
from bench.report.window_shift import run_shift
from runner_support import paced_ollama_server, paced_spec, run_bench


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Answers of ~3 s (10 words, 0.3 s each): long beside the runner's own gap between two answers."""
    tmp = tmp_path_factory.mktemp("completion")
    with paced_ollama_server(delay_s=0.3) as host:
        spec = paced_spec(tmp, host, name="completion", limit=3, datasets=("gsm8k",))
        done = run_bench("run", "--spec", str(spec), "--out", str(tmp / "run"), "--no-progress", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp / "run"


def test_every_answer_has_the_papers_window_from_its_own_stamps(run_dir):
    db = sqlite3.connect(run_dir / "results.db")
    rows = db.execute("SELECT a.t_last_token_ns, a.total_duration_ns, c.start_ns, c.end_ns, c.coverage "
                      "FROM answers a JOIN completion_windows c ON c.answer_id = a.id ORDER BY a.id").fetchall()
    assert len(rows) == db.execute("SELECT count(*) FROM answers WHERE status = 'ok'").fetchone()[0] == 3
    for last, total, start, end, coverage in rows:
        assert (start, end) == (last, last + total) and coverage > 0.9


def test_the_papers_window_holds_the_next_answer_and_the_last_one_idle(run_dir):
    frame = results.answers_frame(run_dir / "results.db")
    assert (frame["energy_j"] > 0).all()
    inner, last = frame.iloc[:-1], frame.iloc[-1]
    assert (inner["completion_energy_j"] > 0.3 * inner["energy_j"]).all()  # mostly the next answer's load
    assert last["completion_energy_j"] < 0.2 * last["energy_j"]  # nothing ran after the last answer
    shift = run_shift(frame)
    assert len(shift.per_answer) == 3 and len(shift.per_cell) == 1
    assert "start-stamped / published energy" in shift.words
