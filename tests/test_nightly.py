"""Nightly reruns end to end through the real CLI (meter daemon, Ollama-API test server, signing, `bench verify`):
an unchanged rerun passes and +10% power is drift; everything that prevents a valid comparison (full, read-only
and filling disks, a deleted, altered or re-signed baseline, a busy machine, the lock, a missing meter, a broken
history DB) is exit 2 with one line on stdout, and every night is in the history DB with its code and reason."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import results
from runner_support import ROOT, demo_variant, paced_spec, run_bench

QUICK = ("--quiet-s", "0.2", "--busy-share", "1")  # the shared test machine is often busy; test_busy_* checks that


def night(spec: Path, root: Path, *extra: str, quick: tuple[str, ...] = QUICK) -> subprocess.CompletedProcess:
    return run_bench("nightly", "--spec", str(spec), "--root", str(root), *quick, *extra, timeout=600)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The contract with cron: exactly one line on stdout, whatever happened."""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout {proc.stdout!r}, stderr {proc.stderr[-2000:]}"
    return lines[0]


def recorded(root: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(root / "history.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM nights ORDER BY id").fetchall()
    finally:
        db.close()


def assert_failed(proc: subprocess.CompletedProcess, root: Path, *needles: str) -> str:
    """Exit 2, one line naming the cause, and the night recorded with that code and reason."""
    line = one_line(proc)
    assert proc.returncode == 2, line + proc.stderr[-2000:]
    assert "FAILED" in line and "Traceback" not in proc.stdout + proc.stderr
    for needle in needles:
        assert needle in line, line
    last = recorded(root)[-1]
    assert last["exit_code"] == 2 and last["summary"] == line
    for needle in needles:
        assert needle in last["reason"]
    return line


@pytest.fixture(scope="module")
def chosen(tmp_path_factory, paced_ollama):
    """One night with its baseline chosen: tests copy the root (history paths are relative, so a copy works)."""
    tmp = tmp_path_factory.mktemp("nightly-base")
    spec = paced_spec(tmp, paced_ollama, name="base", limit=2)
    root = tmp / "root"
    first = night(spec, root)
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    assert "no baseline yet" in one_line(first)
    picked = run_bench("nightly", "baseline", "--root", str(root), "--set", "latest", check=True)
    assert "verified" in picked.stdout and "pinned" in picked.stdout
    return spec, root


@pytest.fixture
def copied(chosen, tmp_path):
    spec, root = chosen
    shutil.copytree(root, tmp_path / "root")
    return spec, tmp_path / "root"


def baseline_folder(root: Path) -> Path:
    [folder] = [p for p in root.iterdir() if p.is_dir()]
    return folder


def test_unchanged_rerun_passes_and_ten_percent_more_power_is_drift(copied, paced_ollama, tmp_path):
    spec, root = copied
    same = night(spec, root)
    assert same.returncode == 0, same.stdout + same.stderr[-2000:]
    line = one_line(same)
    assert "within tolerance of night 1" in line and "machine: others" in line
    hotter = paced_spec(tmp_path, paced_ollama, name="hot", limit=2, load_w=round(6.9 * 1.1, 3),
                        idle_w=round(2.85 * 1.1, 3))  # every sample 10% higher: the device draws more
    drift = night(hotter, root)
    assert drift.returncode == 1, drift.stdout + drift.stderr[-2000:]
    line = one_line(drift)
    assert "DRIFT vs night 1" in line
    for metric in ("power_w", "idle_w"):  # +10% within edge effects: the sim's power is constant while answering
        change = re.search(rf"{metric} ([+-][\d.]+)%", line)
        assert change and float(change.group(1)) == pytest.approx(10.0, abs=0.5), line
    assert "accuracy" not in line, line  # (energy also moves with answer time, which a contended machine varies)
    assert "tolerance ±5%" in line
    rows = recorded(root)
    assert [r["exit_code"] for r in rows] == [0, 0, 1] and rows[-1]["summary"] == line
    assert (root / "trend.png").stat().st_size > 1000
    listed = run_bench("nightly", "history", "--root", str(root), check=True).stdout.splitlines()
    assert [entry.split()[2:4] for entry in listed] == [["exit", "0"], ["exit", "0"], ["exit", "1"]]


def test_runner_records_each_answers_machine_conditions(chosen):
    _, root = chosen
    frame = results.conditions_frame(baseline_folder(root) / "results.db")
    assert len(frame) == 4 and (frame["span_s"] > 0).all() and (frame["cpus"] == os.cpu_count()).all()
    assert (frame["machine_cpu_s"] >= 0).all() and frame["load1"].notna().all()


# -- the baseline ---------------------------------------------------------------------------------------------

def test_deleted_baseline_is_exit_2(copied):
    spec, root = copied
    shutil.rmtree(baseline_folder(root))
    assert_failed(night(spec, root), root, "baseline night 1", "is gone")


def test_altered_baseline_is_exit_2_not_drift(copied):
    spec, root = copied
    db = sqlite3.connect(baseline_folder(root) / "results.db")
    db.execute("UPDATE energy_windows SET energy_j = energy_j * 1.5")
    db.commit()
    db.close()
    line = assert_failed(night(spec, root), root, "baseline night 1", "fails verification")
    assert "results.db: content changed" in line


def test_baseline_resealed_with_another_key_is_exit_2(copied, tmp_path):
    spec, root = copied
    folder = baseline_folder(root)
    db = sqlite3.connect(folder / "results.db")
    db.execute("UPDATE energy_windows SET energy_j = energy_j * 1.5")
    db.commit()
    db.close()
    run_bench("sign", str(folder), "--key", str(tmp_path / "intruder_key"), check=True)
    assert run_bench("verify", str(folder), "--no-numbers").returncode == 0  # self-consistent again...
    assert_failed(night(spec, root), root, "baseline night 1", "fails verification")  # ...but not by the pinned key


def test_an_altered_night_cannot_be_chosen_as_baseline(copied):
    _, root = copied
    (baseline_folder(root) / "spec.toml").write_text("# edited\n", "utf-8")
    proc = run_bench("nightly", "baseline", "--root", str(root), "--set", "1")
    assert proc.returncode == 2 and "cannot be the baseline" in proc.stderr and "spec.toml" in proc.stderr


# -- disks ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(where: Path, size_mb: int):
    """A small tmpfs mounted at ``where`` (needs root); the test skips with the reason when it cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Write zeros until the filesystem has no byte left."""
    with open(directory / "filler", "wb", buffering=0) as fh:
        block = b"\0" * (1 << 20)
        while True:
            try:
                fh.write(block)
            except OSError:
                block = block[: len(block) // 2]
                if not block:
                    return


def test_full_disk_is_exit_2_and_recorded(tmp_path):
    root = tmp_path / "state"
    with tmpfs(tmp_path / "disk", 8) as disk:
        fill(disk)
        proc = night(demo_variant(tmp_path), root, "--out", str(disk / "nights"))
    assert_failed(proc, root, "disk full")


def test_read_only_disk_is_exit_2_and_recorded(tmp_path):
    root = tmp_path / "state"
    with tmpfs(tmp_path / "disk", 8) as disk:
        (disk / "nights").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        proc = night(demo_variant(tmp_path), root, "--out", str(disk / "nights"))
    assert_failed(proc, root, "disk read-only", "Read-only file system")


def test_disk_filling_during_the_run_is_exit_2_and_recorded(tmp_path, paced_ollama):
    root = tmp_path / "state"
    spec = paced_spec(tmp_path, paced_ollama, name="filling", limit=3)
    with tmpfs(tmp_path / "disk", 48) as disk:
        out = disk / "nights"
        stop = threading.Event()

        def filler():  # fills the disk as soon as the run has opened its results DB
            while not stop.is_set() and not list(out.glob("*/results.db")):
                time.sleep(0.05)
            if not stop.is_set():
                fill(disk)

        thread = threading.Thread(target=filler, daemon=True)
        thread.start()
        try:
            proc = night(spec, root, "--out", str(out), "--min-free-mb", "16")
        finally:
            stop.set()
            thread.join(10)
    assert_failed(proc, root, "disk full under")
    assert recorded(root)[-1]["folder"]  # the partial folder is named, for whoever cleans up


# -- the machine and the services -----------------------------------------------------------------------------

def test_busy_machine_is_exit_2(tmp_path):
    root = tmp_path / "nightly"
    hog = "import os\nos.nice(19)\nwhile True:\n    pass"  # niced, like a background update: the CLI starts fast
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        proc = night(demo_variant(tmp_path), root, quick=("--quiet-s", "1", "--busy-share", "0.8"))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    line = assert_failed(proc, root, "machine busy", "before the run")
    assert recorded(root)[-1]["reason"].startswith("machine busy")
    db = sqlite3.connect(root / "history.db")
    try:
        [(share,)] = db.execute("SELECT quiet_other_share FROM night_conditions").fetchall()
    finally:
        db.close()
    assert share > 0.8, line


def test_missing_meter_is_exit_2(tmp_path):
    spec = demo_variant(tmp_path)
    text = spec.read_text()
    start = text.index("[meter]")
    end = text.index("[idle]")
    spec.write_text(text[:start] + f'[meter]\nsocket = "{tmp_path}/absent.sock"\n\n' + text[end:])
    root = tmp_path / "nightly"
    assert_failed(night(spec, root), root, "meter absent", "absent.sock")


def test_broken_spec_is_exit_2(tmp_path):
    root = tmp_path / "nightly"
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment]\nname = 'x'\nbogus = 1\n", "utf-8")
    assert_failed(night(bad, root), root, "bogus")


def test_second_nightly_exits_at_once_while_one_runs(tmp_path):
    root = tmp_path / "nightly"
    root.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
         "from bench.nightly.night import single_instance\nwith single_instance(Path(sys.argv[2])):\n"
         "    print('locked', flush=True); time.sleep(60)", str(ROOT), str(root / ".nightly.lock")],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        proc = night(demo_variant(tmp_path), root)
        assert time.monotonic() - start < 15
        assert_failed(proc, root, f"a nightly run is in progress (pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_unwritable_history_is_exit_2_and_says_the_night_was_not_recorded(tmp_path):
    root = tmp_path / "nightly"
    root.mkdir()
    (root / "history.db").write_bytes(b"this is not a database" * 100)
    proc = night(demo_variant(tmp_path), root)
    line = one_line(proc)
    assert proc.returncode == 2 and "database error" in line and "night NOT recorded" in line


def test_ollama_down_is_exit_2(tmp_path):
    root = tmp_path / "nightly"
    spec = paced_spec(tmp_path, "http://127.0.0.1:9", name="down")  # nothing listens on the discard port
    assert_failed(night(spec, root), root, "Ollama unreachable")
