"""The results store on real SQLite files: migrations, one run per folder, the single write path, the frame."""

from __future__ import annotations

import sqlite3

import pytest

from bench import results
from bench.errors import ResultsError
from bench.records import Completion, EnergyReading, Score


def completion(t0: int = 1_000_000_000) -> Completion:
    return Completion(text="<ANS>B</ANS>", t_send_ns=t0, t_first_token_ns=t0 + 2_000_000_000,
                      t_last_token_ns=t0 + 3_000_000_000, prompt_eval_count=40, prompt_eval_duration_ns=1_900_000_000,
                      eval_count=5, eval_duration_ns=1_000_000_000, load_duration_ns=100_000_000,
                      total_duration_ns=3_000_000_000, done_reason="stop")


def reading(t0: int, t1: int, watts: float) -> EnergyReading:
    return EnergyReading(t0, t1, watts * (t1 - t0) / 1e9, watts, int((t1 - t0) / 1e7), 1.0)


def record(run_id: str, item_id: str, status: str = "ok") -> results.AnswerRecord:
    c = completion()
    windows = {"answer": reading(c.t_send_ns, c.t_last_token_ns, 5.0),
               "prefill": reading(c.t_send_ns, c.t_first_token_ns, 6.0),
               "decode": reading(c.t_first_token_ns, c.t_last_token_ns, 3.0)}
    return results.AnswerRecord(run_id=run_id, model="qwen2.5:0.5b-instruct-q4_0", dataset="commonsenseqa",
                                item_id=item_id, item_sha256="a" * 64, prompt_sha256="b" * 64, status=status,
                                completion=c if status == "ok" else None, idle_w=2.85,
                                windows=windows if status == "ok" else None)


@pytest.fixture
def db(tmp_path):
    conn = results.connect(tmp_path / "results.db")
    yield conn
    conn.close()


def test_schema_is_wal_strict_and_migrations_idempotent(tmp_path, db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert results.schema_version(db) == len(results.MIGRATIONS) >= 1
    again = results.connect(tmp_path / "results.db")
    assert results.schema_version(again) == results.schema_version(db)
    run, _ = results.open_run(db, "s", "f" * 64, "toml")
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: a string in an INTEGER column is refused
        db.execute("INSERT INTO idle_baselines (run_id, source, start_ns, end_ns, mean_w, sd_w, n_samples, "
                   "measured_utc) VALUES (?, 'x', 'soon', 0, 1.0, 0.0, 0, 'now')", (run.run_id,))


def test_newer_db_is_refused(tmp_path, db):
    db.execute("INSERT INTO _bench_migrations VALUES ('m999_future', 'now')")
    with pytest.raises(ResultsError, match="m999_future"):
        results.connect(tmp_path / "results.db")


def test_duplicate_migration_name_refused():
    with pytest.raises(ValueError, match="duplicate migration m001_initial"):
        results.migration(results.m001_initial)


def test_one_run_per_folder(db):
    run, resumed = results.open_run(db, "demo", "1" * 64, "toml")
    assert not resumed
    again, resumed = results.open_run(db, "demo", "1" * 64, "toml")
    assert resumed and again.run_id == run.run_id
    with pytest.raises(ResultsError, match="holds a run of spec 'demo'.*choose another --out"):
        results.open_run(db, "other", "2" * 64, "toml")


def test_record_answer_is_atomic_and_unique(db):
    run, _ = results.open_run(db, "demo", "1" * 64, "toml")
    answer_id = results.record_answer(db, record(run.run_id, "q1"))
    windows = db.execute("SELECT phase, energy_raw_j, energy_j FROM energy_windows WHERE answer_id = ? ORDER BY phase",
                         (answer_id,)).fetchall()
    got = {w["phase"]: (round(w["energy_raw_j"], 6), round(w["energy_j"], 6)) for w in windows}
    # idle-subtracted = raw - 2.85 W x duration, clipped at 0 (prefill 12 J - 5.7 J; decode 3 J - 2.85 J)
    assert got == {"answer": (15.0, 6.45), "prefill": (12.0, 6.3), "decode": (3.0, 0.15)}
    with pytest.raises(sqlite3.IntegrityError):
        results.record_answer(db, record(run.run_id, "q1"))
    # the failed duplicate left nothing behind
    assert db.execute("SELECT count(*) FROM energy_windows").fetchone()[0] == 3
    results.record_answer(db, record(run.run_id, "q2", status="timeout"))
    assert results.done_keys(db, run.run_id) == {("qwen2.5:0.5b-instruct-q4_0", "commonsenseqa", "q1"),
                                                 ("qwen2.5:0.5b-instruct-q4_0", "commonsenseqa", "q2")}
    assert results.status_counts(db) == {"ok": 1, "timeout": 1}
    with pytest.raises(ResultsError, match="status must be one of"):
        results.record_answer(db, record(run.run_id, "q3", status="maybe"))


def test_the_frame_has_the_documented_columns(tmp_path, db):
    """One list: the DB's answers frame gives exactly ``FRAME_COLUMNS``, in order, and the table in
    docs/internals.md names each of them once (the backticked names in a row's first cell, asides in parentheses
    left out)."""
    import re
    from pathlib import Path

    assert tuple(results.answers_frame(tmp_path / "results.db").columns) == results.FRAME_COLUMNS
    doc = (Path(__file__).resolve().parents[1] / "docs" / "internals.md").read_text("utf-8")
    table = doc[doc.index("#### The answers frame"):doc.index("The paper's metrics from it")]
    cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = [name for cell in cells for name in re.findall(r"`([a-z_0-9]+)`", re.sub(r"\([^)]*\)", "", cell))]
    assert sorted(documented) == sorted(results.FRAME_COLUMNS)


def test_scores_replace_per_mode_and_frame(tmp_path, db):
    from bench.catalog import model
    from bench.identity import RunIdentity

    run, _ = results.open_run(db, "demo", "1" * 64, "toml")
    entry = model("qwen2.5:0.5b-instruct-q4_0")
    results.record_identity(db, run.run_id, RunIdentity("p1", (entry,), ()))
    a = results.record_answer(db, record(run.run_id, "q1"))
    results.record_answer(db, record(run.run_id, "q2", status="error"))
    assert [r["id"] for r in results.answers_to_score(db, "paper")] == [a]  # only answers with a response
    results.record_scores(db, "paper", [(a, Score(False, "A", "wrong letter"))], "1")
    assert results.answers_to_score(db, "paper") == []
    results.record_scores(db, "paper", [(a, Score(True, "B", "match"))], "1")
    results.record_scores(db, "strict", [(a, Score(False, None, "invalid"))], "1")
    frame = results.answers_frame(tmp_path / "results.db", "paper")
    assert list(frame["status"]) == ["ok", "error"]
    row = frame.iloc[0]
    assert row["correct"] == 1.0 and row["base"] == "qwen2.5_0.5b" and row["precision_group"] == "q4"
    assert row["size_bytes"] == entry.size_bytes and row["family"] == entry.family
    assert row["energy_j"] == pytest.approx(6.45) and row["prefill_energy_raw_j"] == pytest.approx(12.0)
    assert row["ttft_s"] == pytest.approx(2.0) and row["decode_s"] == pytest.approx(1.0)
    assert row["total_s"] == pytest.approx(3.0) and row["eval_count"] == 5
    assert frame.iloc[1]["correct"] != frame.iloc[1]["correct"]  # NaN: an error has no score
    strict = results.answers_frame(tmp_path / "results.db", "strict")
    assert strict.iloc[0]["correct"] == 0.0
