"""A run's identity is snapshotted when it starts: an old signed folder keeps its meaning under a newer catalog.

The end-to-end test runs the real pipeline (paced Ollama-API server, sim meter), then edits the catalog entry of the
model it ran (its base and quant: what Tables 4/5/9 group by) in a copy of the package, and shows with that copy
that `bench verify` of the untouched folder still passes and that its report comes out number for number the same.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bench import results
from bench.catalog import model
from bench.errors import ResultsError
from bench.identity import DatasetIdentity, RunIdentity
from runner_support import PACED_MODEL, ROOT, bench_cmd, paced_spec, run_bench


def _identity(prompt_version="p1", items_sha="a" * 64, task="1"):
    return RunIdentity(prompt_version, (model(PACED_MODEL),),
                       (DatasetIdentity("gsm8k", task, "fixtures", "all", 3, ("1", "2"), items_sha),))


def test_identity_round_trips_and_resume_refuses_other_prompts_or_items(tmp_path):
    db = results.connect(tmp_path / "results.db")
    run, _ = results.open_run(db, "x", "0" * 64, "toml")
    assert results.run_identity(db) is None
    results.record_identity(db, run.run_id, _identity())
    stored = results.run_identity(db)
    assert stored == _identity()
    assert stored.models[0] == model(PACED_MODEL)
    results.record_identity(db, run.run_id, _identity())  # a resume with the same identity is a no-op
    with pytest.raises(ResultsError, match="prompt version p1"):
        results.record_identity(db, run.run_id, _identity(prompt_version="p2"))
    with pytest.raises(ResultsError, match="dataset gsm8k: items or task version changed"):
        results.record_identity(db, run.run_id, _identity(items_sha="b" * 64))
    assert db.execute("SELECT count(*) FROM run_models").fetchone()[0] == 1
    db.close()


def test_a_mode_rescored_by_a_newer_scorer_is_rescored_whole(tmp_path, monkeypatch):
    """Scores of one mode never mix scorer versions: a version change re-scores every answer of that mode."""
    from bench import score_run as stage
    from bench.records import Score

    db = results.connect(tmp_path / "results.db")
    run, _ = results.open_run(db, "x", "0" * 64, "toml")
    rec = results.AnswerRecord(run_id=run.run_id, model=PACED_MODEL, dataset="gsm8k", item_id="1",
                               item_sha256="0" * 64, prompt_sha256="1" * 64, status="ok")
    answer = results.record_answer(db, rec)
    db.execute("UPDATE answers SET response = 'x' WHERE id = ?", (answer,))
    results.record_scores(db, "paper", [(answer, Score(False, None, "old"))], "0")
    db.close()
    monkeypatch.setattr(stage, "stored_items", lambda db: {("gsm8k", "1"): None})
    monkeypatch.setattr(stage, "score", lambda item, response, mode: Score(True, "x", "new"))
    (summary,) = stage.score_run(tmp_path, ("paper",))
    assert summary.scored == 1
    db = results.connect(tmp_path / "results.db")
    assert results.scoring_version(db, "paper") == stage.SCORING_VERSION
    db.close()


def _newer_package(dest: Path, tag: str, change: str) -> Path:
    """A copy of the package whose catalog entry for ``tag`` is edited (another base and quant: what Tables 4, 5
    and 9 group by) or removed: what a newer toolkit might ship."""
    shutil.copytree(ROOT / "bench", dest / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    toml = dest / "bench" / "catalog" / "models.toml"
    text = toml.read_text("utf-8")
    start = text.index(f'[models."{tag}"]')
    end = text.find("\n[", start + 1)
    block = text[start:end if end > 0 else len(text)]
    edited = "" if change == "remove" else re.sub(
        r'(?m)^quant = ".*"$', 'quant = "q8_0"', re.sub(r'(?m)^base = ".*"$', 'base = "edited_base"', block))
    assert edited != block, "the catalog entry was not changed"
    toml.write_text(text.replace(block, edited), "utf-8")
    return dest


def _bench_with(package: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, PYTHONPATH=str(package))
    return subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=300, env=env, cwd=package)


def _report_files(report_dir: Path) -> dict[str, str]:
    return {p.relative_to(report_dir).as_posix(): p.read_text("utf-8")
            for p in sorted(report_dir.rglob("*")) if p.suffix in (".json", ".csv")}


@pytest.fixture(scope="module")
def sealed_run(tmp_path_factory, paced_ollama) -> Path:
    tmp = tmp_path_factory.mktemp("identity")
    out = tmp / "run"
    spec = paced_spec(tmp, paced_ollama, name="identity", limit=2)
    done = run_bench("pipeline", "--spec", str(spec), "--out", str(out), "--no-progress", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_the_manifest_states_the_identity(sealed_run):
    manifest = json.loads((sealed_run / "manifest.json").read_text("utf-8"))["predicate"]["identity"]
    assert [m["base"] for m in manifest["models"]] == [model(PACED_MODEL).base]
    assert {d["name"]: len(d["item_ids"]) for d in manifest["datasets"]} == {"commonsenseqa": 2, "gsm8k": 2}
    assert set(manifest["scoring"]) == {"paper", "strict"} and manifest["prompt_version"]


@pytest.mark.parametrize("change", ["edit", "remove"])
def test_changing_the_catalog_after_a_run_changes_neither_verify_nor_the_report(sealed_run, tmp_path, change):
    package = _newer_package(tmp_path / "newer", PACED_MODEL, change)
    listed = _bench_with(package, "models", "list").stdout
    assert ("edited_base" in listed) if change == "edit" else (PACED_MODEL not in listed), "catalog not in use"
    checked = _bench_with(package, "verify", str(sealed_run))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"OK {sealed_run}")
    again = tmp_path / "again"
    rebuilt = _bench_with(package, "report", str(sealed_run), "--out", str(again), "--no-plots")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert _report_files(again / "report") == _report_files(sealed_run / "report")
    assert _bench_with(package, "verify", str(sealed_run)).returncode == 0, "building the report changed the folder"
    groups = {r[0] for r in sqlite3.connect(sealed_run / "results.db").execute("SELECT precision_group FROM run_models")}
    assert groups == {"q4"}


def test_the_frame_takes_model_facts_from_the_db_only(tmp_path, monkeypatch):
    """The frame and the cells of a stored run never call the catalog (patched here to fail)."""
    import bench.catalog
    from bench.report import aggregate

    db = results.connect(tmp_path / "results.db")
    run, _ = results.open_run(db, "x", "0" * 64, "toml")
    results.record_identity(db, run.run_id, _identity())
    results.record_answer(db, results.AnswerRecord(run_id=run.run_id, model=PACED_MODEL, dataset="gsm8k",
                                                   item_id="1", item_sha256="0" * 64, prompt_sha256="1" * 64,
                                                   status="ok"))
    db.close()
    expected = model(PACED_MODEL)

    def no_catalog():
        raise AssertionError("today's catalog was read for a stored run")

    monkeypatch.setattr(bench.catalog, "models", no_catalog)
    cells = aggregate.cells(results.answers_frame(tmp_path / "results.db"))
    assert (cells.loc[0, "base"], cells.loc[0, "quant"], cells.loc[0, "size_bytes"]) == \
        (expected.base, expected.quant, expected.size_bytes)
