"""Damaged inputs at the CLI boundary (issue 16): every command refuses with exactly one line on stderr naming the
file and the problem, a non-zero exit status, no traceback, and leaves every stored file byte-identical.

The result folder is a real one, made by the CLI itself (run against the paced Ollama-API test server, scored in
both modes, sealed); each case damages a copy of it, or feeds a broken spec, cache or key, and calls the same
`bench.cli.main` the `bench` command runs (three cases also through ``python -m bench``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from runner_support import ROOT, paced_spec

SPEC_OK = None  # filled by the fixture: the paced spec's path


def cli(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def made(tmp_path_factory, paced_ollama):
    """A sealed result folder (commonsenseqa and humaneval, one item each), its spec, and another spec."""
    root = tmp_path_factory.mktemp("made")
    spec = paced_spec(root, paced_ollama, limit=1, datasets=("commonsenseqa", "humaneval"))
    other = paced_spec(root, paced_ollama, name="other", limit=2, datasets=("gsm8k",))
    folder = root / "sealed"
    for args in (("run", "--spec", str(spec), "--out", str(folder), "--no-progress"), ("score", str(folder)),
                 ("sign", str(folder))):
        assert cli(*args) == 0, args
    return {"folder": folder, "spec": spec, "other": other}


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (the copy being damaged) with its sha256: nothing may appear, vanish or change."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refused(capfd, root: Path, *args: str, code: int | None = None) -> str:
    """Run ``bench *args``; it must fail with one stderr line and leave ``root`` byte-identical. The line."""
    capfd.readouterr()
    before = tree_digest(root)
    status = cli(*args)
    out, err = capfd.readouterr()
    assert status != 0, (args, out, err)
    if code is not None:
        assert status == code, (args, status, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
    assert "Traceback" not in out + err
    assert tree_digest(root) == before, f"{args} changed stored files"
    return lines[0]


@pytest.fixture
def work(made, tmp_path):
    """A copy of the sealed folder to damage, inside a root whose whole content is watched."""
    folder = tmp_path / "folder"
    shutil.copytree(made["folder"], folder)
    return folder


# Specs ------------------------------------------------------------------------------------------------------------

SPECS = {
    "not UTF-8": (b"[experiment]\nname = \"x\xff\xfe\"\n", "not UTF-8"),
    "not TOML": (b"[experiment\nname = 1\n", "TOML"),
    "unknown key": (b"[experiment]\nname = \"x\"\nbogus = 1\n", "bogus"),
    "wrong type": (b"[experiment]\nname = 3\n", "name"),
    "empty": (b"", "experiment"),
    "binary": (bytes(range(256)) * 4, "spec"),
}


@pytest.mark.parametrize("case", SPECS)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_broken_spec(capfd, tmp_path, case, command):
    content, expected = SPECS[case]
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    args = ["validate", "--spec", str(path)] if command == "validate" else \
        ["run", "--spec", str(path), "--out", str(tmp_path / "out"), "--no-progress"]
    line = refused(capfd, tmp_path, *args)
    assert str(path) in line and expected in line, line


def test_missing_spec_and_a_directory_named_like_one(capfd, tmp_path):
    assert "cannot read" in refused(capfd, tmp_path, "validate", "--spec", str(tmp_path / "nope.toml"))
    (tmp_path / "dir.toml").mkdir()
    assert "dir.toml" in refused(capfd, tmp_path, "validate", "--spec", str(tmp_path / "dir.toml"))
    assert "Did you mean" in refused(capfd, tmp_path, "validate", "--spec", "papr")


# Result folders ---------------------------------------------------------------------------------------------------

def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 100)


def _truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:3000])


def _foreign(db: Path) -> None:
    db.unlink()
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 9.5)")
    other.commit()
    other.close()


def _ours_without_tables(db: Path) -> None:
    sqlite3.connect(db).execute("DROP TABLE scores").connection.commit()


def _newer(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("INSERT INTO _bench_migrations VALUES ('m999_from_the_future', '2099-01-01')")
    con.commit()
    con.close()


def _empty_file(db: Path) -> None:
    db.write_bytes(b"")


def _directory(db: Path) -> None:
    db.unlink()
    db.mkdir()


DAMAGE = {"not SQLite": (_garbage, "not a SQLite database"), "truncated": (_truncated, "truncated"),
          "foreign SQLite": (_foreign, "not a results DB"), "lacks our tables": (_ours_without_tables, "no table"),
          "newer schema": (_newer, "newer version"), "empty file": (_empty_file, "empty file"),
          "a directory": (_directory, "no results")}


# An empty results.db is also what a first run killed before SQLite wrote its header leaves: `run` starts afresh.
@pytest.mark.parametrize("command, damage", [(c, d) for c in ("score", "report", "run", "sign") for d in DAMAGE
                                             if (c, d) != ("run", "empty file")])
def test_damaged_results_db(capfd, made, work, damage, command):
    apply, expected = DAMAGE[damage]
    apply(work / "results.db")
    args = {"score": ["score", str(work)], "report": ["report", str(work), "--no-plots"],
            "run": ["run", "--spec", str(made["spec"]), "--out", str(work), "--no-progress"],
            "sign": ["sign", str(work)]}[command]
    line = refused(capfd, work.parent, *args)
    assert "results.db" in line and expected in line, line


def test_another_spec_into_a_sealed_folder_changes_nothing(capfd, made, work):
    line = refused(capfd, work.parent, "run", "--spec", str(made["other"]), "--out", str(work), "--no-progress")
    assert "holds a run of spec" in line
    assert cli("verify", str(work), "--no-numbers") == 0  # still verifies


def test_score_and_report_of_a_sealed_folder_need_no_write(capfd, work):
    """Nothing left to score: the sealed folder stays byte-identical (no WAL switch, no -shm file)."""
    before = tree_digest(work.parent)
    assert cli("score", str(work)) == 0
    assert tree_digest(work.parent) == before


def test_foreign_sqlite_gets_none_of_our_tables(capfd, work):
    _foreign(work / "results.db")
    refused(capfd, work.parent, "score", str(work))
    tables = {r[0] for r in sqlite3.connect(work / "results.db").execute("SELECT name FROM sqlite_master")}
    assert tables == {"invoices"}


def test_missing_folder(capfd, tmp_path):
    for command in ("score", "report", "sign", "verify"):
        line = refused(capfd, tmp_path, command, str(tmp_path / "nowhere"))
        assert "nowhere" in line


# Verify ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["foreign results.db", "manifest not JSON", "SHA256SUMS garbage",
                                    "signature garbage", "manifest deleted"])
def test_verify_tampered_folder(capfd, work, damage):
    if damage == "foreign results.db":
        _foreign(work / "results.db")
    elif damage == "manifest not JSON":
        (work / "manifest.json").write_text("{not json")
    elif damage == "SHA256SUMS garbage":
        (work / "SHA256SUMS").write_bytes(b"\x00\xff garbage\n" * 10)
    elif damage == "signature garbage":
        (work / "SHA256SUMS.sig").write_text("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")
    else:
        (work / "manifest.json").unlink()
    line = refused(capfd, work.parent, "verify", str(work))
    assert "verify failed" in line
    out = capfd.readouterr().out
    assert "SELECT" not in out


def test_verify_trusted_signers_garbage(capfd, work, tmp_path):
    bad = tmp_path / "allowed_signers"
    bad.write_bytes(b"\xff\xfe not a signers file")
    assert "allowed_signers: not an allowed_signers file" in refused(capfd, tmp_path, "verify", str(work),
                                                                      "--trusted", str(bad))


# Datasets, keys, options ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"{not json\n", b"\xff\xfe\x00garbage", b'{"id": 1}\n'])
def test_corrupt_dataset_cache(capfd, tmp_path, content):
    cache = tmp_path / "cache"
    (cache / "gsm8k").mkdir(parents=True)
    (cache / "gsm8k" / "items.jsonl").write_bytes(content)
    (cache / "gsm8k" / "revision.json").write_text(json.dumps({"revision": "x"}))
    for args in (["data", "verify", "gsm8k", "--dir", str(cache)],
                 ["data", "show", "gsm8k", "--source", "cache", "--path", str(cache)]):
        line = refused(capfd, tmp_path, *args)
        assert "gsm8k" in line, line


def test_corrupt_upstream_file(capfd, tmp_path):
    (tmp_path / "test.jsonl").write_bytes(b'{"task_id": "x", "prompt": \n garbage')
    line = refused(capfd, tmp_path, "data", "show", "humaneval", "--source", "files", "--path", str(tmp_path))
    assert "humaneval" in line or "test.jsonl" in line, line


def test_broken_signing_key(capfd, made, work, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n")
    assert "key" in refused(capfd, tmp_path, "sign", str(work), "--key", str(key))
    assert "key" in refused(capfd, tmp_path, "keygen", "--key", str(key))


def test_authors_file_garbage(capfd, tmp_path):
    bad = tmp_path / "site.json"
    bad.write_bytes(b"{ definitely not the authors' data")
    assert "site.json" in refused(capfd, tmp_path, "report", "--from-authors", str(bad), "--out", str(tmp_path / "o"))


@pytest.mark.parametrize("args", [["score", "--mode", "bogus", "x"], ["run", "--spec", "demo", "--max-answers", "0"],
                                  ["nightly", "--tolerance", "nonsense=1"], ["nosuchcommand"],
                                  ["models", "check", "--model", "nosuch:tag"],
                                  ["meter", "status", "--socket", "/nonexistent/meter.sock"]])
def test_bad_arguments(capfd, tmp_path, args):
    refused(capfd, tmp_path, *args)


def test_score_refuses_an_incomplete_sandbox_unless_told(capfd, monkeypatch, work):
    """On a host that cannot give each program a uid of its own nor a pid namespace (what `probe` finds in a
    container without CAP_SYS_ADMIN, run as a non-root user), HumanEval answers are not run: one line, nothing
    written. With --unsafe-no-sandbox they are, and each score records what was missing."""
    from bench.scoring import execution

    host, _ = execution.confinement()
    lacking = dataclasses.replace(host, namespaces=False, as_root=False,
                                  no_namespaces_because="unshare: unshare failed: Operation not permitted")
    monkeypatch.setattr(execution, "confinement", lambda: (lacking, ""))
    monkeypatch.setattr(execution, "_unconfined_allowed", False)
    line = refused(capfd, work.parent, "score", str(work), "--rescore")
    assert "missing own uid, cleanup (unshare: unshare failed" in line and "--unsafe-no-sandbox" in line
    assert cli("score", str(work), "--rescore", "--unsafe-no-sandbox") == 0
    db = sqlite3.connect(work / "results.db")
    details = [json.loads(r[0]) for r in db.execute(
        "SELECT details_json FROM scores JOIN answers a ON a.id = answer_id WHERE a.dataset = 'humaneval'")]
    assert len(details) == 2 and all(d["sandbox_missing"] == ["own uid", "cleanup"] for d in details), details


def test_the_real_entry_point(made, work):
    """Through ``python -m bench``: the same single line and exit status, no traceback."""
    _truncated(work / "results.db")
    for args in (["score", str(work)], ["report", str(work)], ["validate", "--spec", str(work / "results.db")]):
        done = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
