"""The container fleet (issue 18's "must show"): three containers as Pis driven by `ansible-playbook` through the
community.docker `docker` connection, one killed mid-shard and resumed by re-running the playbook, then fetch and
`bench merge`. Checked: answers lost 0 and duplicated 0 against a single-machine run of the same spec, the merged
folder verifies, and a tampered shard, a shard of another spec and an overlapping shard are each refused with one
line. Runs scripts/fleet-demo.sh (what `make fleet-demo` runs); needs Docker and root, so only with
BENCH_FLEET_CONTAINERS=1 (`make fleet-test`, its own timed step in .ci/run)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.fleet.planfile import read_plan
from bench.pipeline import verify_run
from bench.spec import ShardSpec, load_spec, parse_spec, with_shard
from runner_support import ROOT, run_bench

pytestmark = [pytest.mark.docker, pytest.mark.skipif(
    os.environ.get("BENCH_FLEET_CONTAINERS") != "1",
    reason="the container fleet needs Docker and root: make fleet-test (BENCH_FLEET_CONTAINERS=1)")]
NODES = ("fleet-node-1", "fleet-node-2", "fleet-node-3")
KILLED = "fleet-node-2"
HOST_DIR = "/opt/edge-llm-bench/results/fleet"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet-demo")
    env = dict(os.environ, FLEET_DEMO_DIR=str(out), KEEP="1", PYTHON=sys.executable)
    try:
        proc = subprocess.run(["scripts/fleet-demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=1500)
        print(proc.stdout[-6000:])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield {"dir": out, "log": proc.stdout, "fleet": out / "fleet"}
    finally:
        subprocess.run(["docker", "rm", "-f", *NODES], capture_output=True)


def _keys(db: Path) -> Counter:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return Counter(con.execute("SELECT model, dataset, item_id FROM answers").fetchall())
    finally:
        con.close()


def test_no_answer_lost_or_duplicated_after_a_kill(demo):
    merged, single = _keys(demo["dir"] / "merged" / "results.db"), _keys(demo["dir"] / "reference" / "results.db")
    assert sum(single.values()) == 48  # 4 models x 4 datasets x 3 items
    assert set(merged) == set(single) and max(merged.values()) == 1
    assert "answers lost 0, duplicated 0, not in the single-machine run 0" in demo["log"]
    # The kill really hit a shard mid-run, and the rerun resumed that same folder.
    assert f"killed {KILLED} after" in demo["log"]
    con = sqlite3.connect(f"file:{demo['fleet'] / 'shards' / KILLED / 'results.db'}?mode=ro", uri=True)
    kinds = [r[0] for r in con.execute("SELECT kind FROM run_events ORDER BY id")]
    con.close()
    assert "resume" in kinds


def test_nothing_of_ansible_left_on_a_measuring_host(demo):
    lines = [ln for ln in demo["log"].splitlines() if "ansible processes left on the host" in ln]
    assert len(lines) == 3 and all(ln.endswith(": 0") for ln in lines)


def test_merged_folder_verifies_and_knows_each_device(demo):
    merged = demo["dir"] / "merged"
    report = verify_run(merged)
    assert report.ok, report.lines()
    con = sqlite3.connect(f"file:{merged / 'results.db'}?mode=ro", uri=True)
    devices = dict(con.execute("SELECT device, count(*) FROM answers GROUP BY device").fetchall())
    calibrated = {r[0] for r in con.execute("SELECT device FROM device_calibration")}
    con.close()
    assert set(devices) == set(NODES) and sum(devices.values()) == 48
    assert calibrated == set(NODES)
    assert "device spread over 3 devices: idle power (W)" in demo["log"]


def _run_in_node(demo, node: str, name: str, text: str) -> Path:
    """Run a hand-made shard spec on a fleet host (signed by that host's own key), bring its folder back."""
    spec = demo["dir"] / f"{name}.toml"
    spec.write_text(text, "utf-8")
    subprocess.run(["docker", "cp", str(spec), f"{node}:{HOST_DIR}/specs/{name}.toml"], check=True)
    subprocess.run(["docker", "exec", node, "/opt/bench-venv/bin/bench", "pipeline", "--no-progress", "--spec",
                    f"{HOST_DIR}/specs/{name}.toml", "--out", f"{HOST_DIR}/extra/{name}"], check=True,
                   capture_output=True)
    dest = demo["dir"] / "extra" / name
    dest.parent.mkdir(exist_ok=True)
    subprocess.run(["docker", "cp", f"{node}:{HOST_DIR}/extra/{name}", str(dest)], check=True)
    return dest


def _refused(demo, extra: Path) -> str:
    shards = sorted(str(p) for p in (demo["fleet"] / "shards").iterdir())
    proc = run_bench("merge", *shards, str(extra), "--out", str(demo["dir"] / f"m-{extra.name}"),
                     "--signers", str(demo["fleet"] / "allowed_signers"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not (demo["dir"] / f"m-{extra.name}").exists()
    return lines[0]


def test_tampered_shard_is_refused(demo):
    bad = demo["dir"] / "tampered" / "fleet-node-3"
    shutil.copytree(demo["fleet"] / "shards" / "fleet-node-3", bad)
    con = sqlite3.connect(bad / "results.db")
    con.execute("UPDATE answers SET response = 'better' WHERE id = 1")
    con.commit()
    con.close()
    shards = sorted(str(p) for p in (demo["fleet"] / "shards").iterdir() if p.name != "fleet-node-3")
    proc = run_bench("merge", *shards, str(bad), "--out", str(demo["dir"] / "m-tampered"),
                     "--signers", str(demo["fleet"] / "allowed_signers"))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"error: {bad}: does not verify") and "results.db: content changed" in proc.stderr


def test_shard_of_another_spec_is_refused(demo):
    plan = read_plan(demo["fleet"])
    text = (ROOT / "fleet" / "demo" / "fleet.toml").read_text("utf-8").replace("limit = 3", "limit = 1")
    other = parse_spec(text, "other.toml")
    shard = ShardSpec(plan=plan["plan_id"], name="other", host="fleet-node-3", role="work",
                      parent_sha256=other.sha256, blocks=other.blocks()[:1])
    folder = _run_in_node(demo, "fleet-node-3", "other", with_shard(text, shard))
    line = _refused(demo, folder)
    assert line.startswith(f"error: {folder}: shard of another spec (fleet-demo, sha256 {other.sha256[:12]})")


def test_overlapping_shard_is_refused(demo):
    plan = read_plan(demo["fleet"])
    parent = load_spec(str(ROOT / "fleet" / "demo" / "fleet.toml"))
    taken = next(s for s in plan["shards"] if s["name"] == "fleet-node-1")["blocks"][0]
    shard = ShardSpec(plan=plan["plan_id"], name="overlap", host="fleet-node-3", role="work",
                      parent_sha256=parent.sha256, blocks=((taken["model"], taken["dataset"]),))
    folder = _run_in_node(demo, "fleet-node-3", "overlap", with_shard(parent.source_text, shard))
    line = _refused(demo, folder)
    assert line.startswith(f"error: {folder}: block {taken['model']} / {taken['dataset']} is also in ")
