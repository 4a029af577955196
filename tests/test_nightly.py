"""Nightly reruns end to end (real CLI, meter daemon, Ollama-API test server, signing): an unchanged rerun
passes, a raised load power is named as energy drift, a missing meter is exit 2, and a second nightly started
meanwhile exits at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.nightly import paired_bootstrap, single_instance, NightlyBusy
from runner_support import ROOT, demo_variant, paced_spec, run_bench


def night(spec, root, *extra):
    return run_bench("nightly", "--spec", str(spec), "--root", str(root), *extra, timeout=600)


def test_unchanged_rerun_passes_and_raised_load_power_is_energy_drift(tmp_path, paced_ollama):
    spec = paced_spec(tmp_path, paced_ollama, name="base", load_w=6.9)
    root = tmp_path / "nightly"
    first = night(spec, root)
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    assert "no baseline yet" in first.stdout and len(first.stdout.strip().splitlines()) == 1
    chosen = run_bench("nightly", "baseline", "--root", str(root), "--set", "latest", check=True)
    assert "signature sha256" in chosen.stdout
    same = night(spec, root)
    assert same.returncode == 0, same.stdout + same.stderr[-2000:]
    assert "within tolerance" in same.stdout
    hotter = paced_spec(tmp_path, paced_ollama, name="hot", load_w=round(6.9 * 1.10, 3))
    drift = night(hotter, root)
    assert drift.returncode == 1, drift.stdout + drift.stderr[-2000:]
    assert "DRIFT" in drift.stdout and "energy_per_answer_j" in drift.stdout
    assert "accuracy" not in drift.stdout and "latency_s" not in drift.stdout  # only what changed is named
    assert (root / "trend.png").stat().st_size > 1000


def test_missing_meter_is_exit_2(tmp_path):
    spec = demo_variant(tmp_path)
    text = spec.read_text()
    start = text.index("[meter]")
    end = text.index("[idle]")
    spec.write_text(text[:start] + f'[meter]\nsocket = "{tmp_path}/absent.sock"\n\n' + text[end:])
    proc = run_bench("nightly", "--spec", str(spec), "--root", str(tmp_path / "nightly"))
    assert proc.returncode == 2
    assert "meter absent" in proc.stdout and "absent.sock" in proc.stdout


def test_second_nightly_exits_at_once_while_one_runs(tmp_path):
    root = tmp_path / "nightly"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
         "from bench.nightly import single_instance\nwith single_instance(Path(sys.argv[2])):\n"
         "    print('locked', flush=True); time.sleep(60)", str(ROOT), str(root / ".nightly.lock")],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        proc = run_bench("nightly", "--spec", str(demo_variant(tmp_path)), "--root", str(root))
        assert time.monotonic() - start < 15
        assert proc.returncode == 2
        assert f"a nightly run is in progress (pid {holder.pid}" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    with single_instance(root / ".nightly.lock"):  # released when its holder died
        with pytest.raises(NightlyBusy):
            with single_instance(root / ".nightly.lock"):
                pass


def test_paired_bootstrap_rule():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 5, 40)
    same = base * rng.normal(1.0, 0.01, 40)
    point, low, high = paired_bootstrap(base, same, "relative")
    assert low < 0 < high and abs(point) < 0.01
    point, low, high = paired_bootstrap(base, base * 1.10, "relative")
    assert point == pytest.approx(0.10) and low > 0.09
    point, low, high = paired_bootstrap(np.zeros(50), np.r_[np.ones(20), np.zeros(30)], "absolute")
    assert point == pytest.approx(0.4) and low > 0.2
