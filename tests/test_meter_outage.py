"""A runner that outlives its meter: the host daemon is SIGKILLed in the middle of an answer and restarted (as
systemd's Restart= would) on the same socket; the run finishes, one run event records the outage, and the answers
asked meanwhile are stored with the coverage the meter can vouch for. Real `bench run` subprocess, real daemons,
the Ollama-API test server."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from bench.meter.local import spawn_daemon
from runner_support import ROOT, bench_cmd, paced_ollama_server, paced_spec

BUSY = {"mode": "busy", "idle_w": 2.85, "load_w": 6.9, "rate_hz": 200, "seed": 7, "batch_s": 0.05}


def host_daemon_spec(tmp_path: Path, host: str, sock: str) -> Path:
    """The paced spec, with the meter a running host daemon at ``sock`` instead of one the runner starts."""
    path = paced_spec(tmp_path, host, limit=1, datasets=("commonsenseqa", "gsm8k", "truthfulqa"))
    text = path.read_text()
    start = text.index("[meter]")
    end = text.index("[idle]")
    path.write_text(text[:start] + f'[meter]\nsocket = "{sock}"\n\n' + text[end:])
    return path


def marks(log_dir: Path, kind: str) -> int:
    return sum(line.startswith("# mark ") and kind in line
               for f in log_dir.glob("*.csv") for line in f.read_text(errors="replace").splitlines())


def wait_for(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_host_daemon_killed_and_restarted_mid_run_leaves_a_recorded_gap(tmp_path):
    sock = str(tmp_path / "meter.sock")
    out = tmp_path / "out"
    with paced_ollama_server(0.5) as host:  # 10 words at 0.5 s: each answer streams for 5 s
        spec = host_daemon_spec(tmp_path, host, sock)
        with spawn_daemon("sim", BUSY, sock, log_dir=tmp_path / "log-a") as first:
            run = subprocess.Popen(bench_cmd("run", "--spec", str(spec), "--out", str(out), "--no-progress"),
                                   cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE,
                                   text=True)
            wait_for(lambda: marks(tmp_path / "log-a", "answer-begin") >= 2, 120)
            time.sleep(1.0)  # the second answer is streaming
            os.kill(first.pid, signal.SIGKILL)
            killed_at = time.monotonic_ns()
            first.process.wait()
        time.sleep(1.0)  # down for a while, then back on the same socket
        with spawn_daemon("sim", BUSY, sock, log_dir=tmp_path / "log-b"):
            _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-2000:]
    db = sqlite3.connect(out / "results.db")
    events = [json.loads(d) for (d,) in db.execute("SELECT detail FROM run_events WHERE kind = 'meter-outage'")]
    assert len(events) == 1, events
    outage = events[0]  # from the last reply before the kill to the first after the restart
    assert outage["last_ok_ns"] < killed_at < outage["noticed_ns"] <= outage["restored_ns"]
    assert 1.0 < outage["seconds"] < 20 and "meter daemon at" in outage["reason"]
    rows = db.execute("SELECT a.id, a.status, a.t_send_ns, a.t_last_token_ns, w.phase, w.coverage, w.energy_raw_j, "
                      "w.reason FROM answers a JOIN energy_windows w ON w.answer_id = a.id ORDER BY a.id").fetchall()
    by_answer: dict[int, dict] = {}
    for aid, status, send, last, phase, coverage, energy, reason in rows:
        assert status == "ok"
        by_answer.setdefault(aid, {"send": send, "last": last})[phase] = (coverage, energy, reason)
    assert len(by_answer) == 3  # every answer asked and stored: the run did not end with its meter
    hit = [a for a in by_answer.values() if a["send"] <= killed_at <= a["last"]]
    assert len(hit) == 1
    coverage, energy, _ = hit[0]["answer"]
    assert 0.0 < coverage < 0.9 and energy is not None  # only what the restarted daemon saw
    prefill = hit[0]["prefill"]
    assert prefill[0] == 0.0 and prefill[1] is None and prefill[2]  # died with the first daemon: no energy, a reason
    clean = [a for a in by_answer.values() if a is not hit[0]]
    assert all(a["answer"][0] == 1.0 for a in clean)
