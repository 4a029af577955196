"""A fleet on this machine without containers: three hosts' shards run in turn (each with its own simulated meter,
its own signing key), one host dies mid-shard and its unfinished block is moved, then `bench merge`. The merged
folder must verify, hold exactly the answer keys of a single-machine run, and record each answer's device; bad
shards are refused with one line. (The container fleet with Ansible: tests/test_fleet_containers.py.)"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from bench.errors import FleetError
from bench.fleet.costs import CostModel
from bench.fleet.inventory import Host
from bench.fleet.merge import load_all, merge
from bench.fleet.move import move
from bench.fleet.planfile import entries, plan_fleet, read_plan, save_plan, write_plan
from bench.meter.local import spawn_daemon
from bench.pipeline import pipeline, seal_run
from bench.pipeline import verify_run
from bench.provenance import seal, verify
from bench.runner import run
from bench.spec import ShardSpec, load_spec, with_shard
from fleet_support import fleet_spec, host_keys, scripted_ollama
from runner_support import run_bench

pytestmark = pytest.mark.slow
HOSTS = ("a", "b", "c")
IDLE_W = {"a": 2.80, "b": 2.95, "c": 2.85}  # each host's simulated board: the calibration must see the spread


def _meter(socket_path: str, host: str):
    return spawn_daemon("sim", {"mode": "busy", "idle_w": IDLE_W[host], "load_w": 6.5, "rate_hz": 100,
                                "seed": 3, "noise_w": 0.01}, socket_path)


def _keys(db: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sorted(con.execute("SELECT model, dataset, item_id FROM answers").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    sock = str(root / "m.sock")
    with scripted_ollama() as host:
        spec_path, calib_path = root / "work.toml", root / "calib.toml"
        spec_path.write_text(fleet_spec(host, sock), "utf-8")
        calib_path.write_text(fleet_spec(host, sock, name="calib", models=("qwen2.5:0.5b-instruct-q4_0",),
                                         datasets=("commonsenseqa",)), "utf-8")
        spec, calib = load_spec(str(spec_path)), load_spec(str(calib_path))
        _, doc = plan_fleet(spec, calib, [Host(h) for h in HOSTS], CostModel({}))
        fleet_dir = root / "fleet"
        write_plan(fleet_dir, doc)
        keys, signers = host_keys(root / "keys", HOSTS)
        shards = fleet_dir / "shards"

        def run_shard(name: str, host_name: str, **kw):
            shard_spec = load_spec(str(fleet_dir / "specs" / f"{name}.toml"))
            with _meter(sock, host_name):
                if kw.get("max_answers"):
                    return run(shard_spec, shards / name, progress=False, max_answers=kw["max_answers"])
                return pipeline(shard_spec, shards / name, progress=False, key_path=keys[host_name])

        for h in HOSTS:
            run_shard(f"calibration-{h}", h)
        run_shard("a", "a")
        run_shard("b", "b")
        run_shard("c", "c", max_answers=1)  # c dies after one answer ...
        seal_run(shards / "c", keys["c"])   # ... its card is recovered and the partial folder sealed by hand
        moved, _ = move(fleet_dir, "c", "b")
        run_shard(moved["name"], "b")
        with _meter(sock, "a"):
            run(spec, root / "single", progress=False)  # the same spec on one machine
        yield {"root": root, "fleet_dir": fleet_dir, "signers": signers, "keys": keys, "spec": spec, "host": host,
               "sock": sock, "run_shard": run_shard, "moved": moved["name"]}


@pytest.fixture(scope="module")
def merged(fleet):
    shards = sorted(p for p in (fleet["fleet_dir"] / "shards").iterdir() if p.is_dir())
    out = fleet["root"] / "merged"
    plan, facts = merge(shards, out, fleet["signers"], key_path=fleet["keys"]["a"])
    return {"out": out, "plan": plan, "facts": facts, "shards": shards}


def test_merged_folder_has_every_answer_once_with_its_device(fleet, merged):
    out = merged["out"]
    keys = _keys(out / "results.db")
    assert keys == _keys(fleet["root"] / "single" / "results.db")  # exactly the single-machine run's answers
    assert len(keys) == len(set(keys)) == 8  # 2 models x 2 datasets x 2 items: none lost, none twice
    assert merged["plan"].missing == []
    con = sqlite3.connect(f"file:{out / 'results.db'}?mode=ro", uri=True)
    by_device = dict(con.execute("SELECT device, count(*) FROM answers GROUP BY device").fetchall())
    moved_blocks = [tuple(b) for s in merged["facts"]["shards"] if s["name"] == fleet["moved"] for b in s["blocks_kept"]]
    dev_of_moved = {r[0] for b in moved_blocks for r in con.execute(
        "SELECT device FROM answers WHERE model = ? AND dataset = ?", b)}
    devices = {r[0] for r in con.execute("SELECT device FROM devices")}
    con.close()
    assert sum(by_device.values()) == 8 and None not in by_device
    assert dev_of_moved == {"b"}  # the dead host's block was answered by the host it moved to
    assert devices == set(HOSTS)
    # Nothing a shard holds is dropped: every table with rows in a shard has rows in the merged DB.
    shard_db = sqlite3.connect(f"file:{fleet['fleet_dir'] / 'shards' / 'a' / 'results.db'}?mode=ro", uri=True)
    tables = [r[0] for r in shard_db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    filled = [t for t in tables if shard_db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]]
    shard_db.close()
    con = sqlite3.connect(f"file:{out / 'results.db'}?mode=ro", uri=True)
    assert [t for t in filled if not con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]] == []
    con.close()
    c = next(s for s in merged["facts"]["shards"] if s["name"] == "c")
    assert c["blocks_superseded"] and c["answers_merged"] == 0  # c's one answer in the moved block is left out


def test_merged_folder_verifies_back_to_each_device_key(fleet, merged):
    out = merged["out"]
    report = verify_run(out)
    assert report.ok, report.lines()
    proc = run_bench("verify", str(out), check=True)
    assert proc.stdout.startswith("OK ")
    # Each embedded shard verifies on its own against the fleet's signers, as its host.
    for s in merged["facts"]["shards"]:
        assert verify(out / s["folder"], fleet["signers"], identity=f"{s['host']}@edge-llm-bench").ok
    summary = (out / "report" / "summary.md").read_text("utf-8")
    assert "## Devices of the fleet" in summary and (out / "report" / "tables" / "devices.csv").is_file()


def test_device_spread_comes_from_the_calibration_runs(merged):
    variance = merged["facts"]["device_variance"]
    assert variance["devices"] == list(HOSTS)
    # The simulated boards idle at 2.80, 2.85 and 2.95 W: (2.95 - 2.80) / 2.867 = 5.2% (noise aside).
    assert 0.04 < variance["spread"]["idle_w"] < 0.065
    jpt = variance["cross_device"]["j_per_token"]
    assert jpt["pairs"] >= 1 and jpt["exceeding"] + len(jpt["within_spread"]) == jpt["pairs"]


def test_chain_catches_merged_answers_that_differ_from_the_shard(fleet, merged, tmp_path):
    forged = tmp_path / "forged"
    shutil.copytree(merged["out"], forged)
    con = sqlite3.connect(forged / "results.db")
    con.execute("UPDATE answers SET response = 'forged' WHERE id = (SELECT min(id) FROM answers WHERE device = 'a')")
    con.commit()
    con.close()
    seal(forged, None, key_path=fleet["keys"]["a"])  # re-sealed: the folder's own checksums hold again
    problems = verify_run(forged, check_numbers=False).lines()
    assert problems == ["results.db: answers of device a differ from shards/a/results.db"]


def _refused(args: list[str]) -> str:
    proc = run_bench("merge", *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_tampered_shard_is_refused_with_one_line(fleet, merged, tmp_path):
    bad = tmp_path / "a"
    shutil.copytree(fleet["fleet_dir"] / "shards" / "a", bad)
    with open(bad / "report" / "summary.md", "a", encoding="utf-8") as fh:
        fh.write("tampered\n")
    others = [str(p) for p in merged["shards"] if p.name != "a"]
    line = _refused([str(bad), *others, "--out", str(tmp_path / "m"), "--signers", str(fleet["signers"])])
    assert line.startswith(f"error: {bad}: does not verify") and "report/summary.md: content changed" in line
    assert not (tmp_path / "m").exists()


def test_shard_signed_by_another_hosts_key_is_refused(fleet, merged, tmp_path):
    bad = tmp_path / "a"
    shutil.copytree(fleet["fleet_dir"] / "shards" / "a", bad)
    seal(bad, None, key_path=fleet["keys"]["b"])
    with pytest.raises(FleetError, match=r"shard of host a signed by b@edge-llm-bench .*, not by a@edge-llm-bench"):
        merge([bad], tmp_path / "m", fleet["signers"])


def test_shard_of_another_spec_is_refused_with_one_line(fleet, merged, tmp_path):
    other_spec = tmp_path / "other.toml"
    other_spec.write_text(fleet_spec(fleet["host"], fleet["sock"], limit=1), "utf-8")
    other = load_spec(str(other_spec))
    doc = read_plan(fleet["fleet_dir"])
    shard = ShardSpec(plan=doc["plan_id"], name="x", host="a", role="work", parent_sha256=other.sha256,
                      blocks=other.blocks()[:1])
    path = tmp_path / "x.toml"
    path.write_text(with_shard(other.source_text, shard), "utf-8")
    with _meter(fleet["sock"], "a"):  # the fixture's Ollama test server still serves
        pipeline(load_spec(str(path)), tmp_path / "x", progress=False, key_path=fleet["keys"]["a"])
    line = _refused([*map(str, merged["shards"]), str(tmp_path / "x"), "--out", str(tmp_path / "m"),
                     "--signers", str(fleet["signers"])])
    assert line.startswith(f"error: {tmp_path / 'x'}: shard of another spec (fleet-test, sha256 {other.sha256[:12]})")


def test_overlapping_shard_is_refused_with_one_line(fleet, merged, tmp_path):
    doc = read_plan(fleet["fleet_dir"])
    a = next(e for e in entries(doc) if e.name == "a")
    dup = {"name": "a2", "host": "a", "role": "work", "spec": "specs/a2.toml", "blocks": a.blocks[:1]}
    fleet_copy = tmp_path / "fleet"
    shutil.copytree(fleet["fleet_dir"] / "specs", fleet_copy / "specs")
    save_plan(fleet_copy, {**doc, "shards": doc["shards"] + [dup]})
    with _meter(fleet["sock"], "a"):  # the fixture's Ollama test server still serves
        pipeline(load_spec(str(fleet_copy / "specs" / "a2.toml")), tmp_path / "a2", progress=False,
                 key_path=fleet["keys"]["a"])
    line = _refused([*map(str, merged["shards"]), str(tmp_path / "a2"), "--out", str(tmp_path / "m"),
                     "--signers", str(fleet["signers"])])
    block = a.blocks[0]
    assert line.startswith(f"error: {tmp_path / 'a2'}: block {block['model']} / {block['dataset']} is also in ")


def test_missing_blocks_are_listed(fleet, merged, tmp_path):
    some = [p for p in merged["shards"] if p.name in ("a", "calibration-a")]
    plan, facts = merge(some, tmp_path / "m", fleet["signers"], key_path=fleet["keys"]["a"])
    assert plan.missing and all("in no shard" in str(m) for m in plan.missing)
    assert facts["missing_blocks"] == [str(m) for m in plan.missing]
    with pytest.raises(FleetError, match=r"block\(s\) missing"):
        merge(some, tmp_path / "m2", fleet["signers"], require_complete=True)


def test_status_from_a_probe(fleet, tmp_path):
    from bench.fleet.status import host_statuses, probe

    host_dir = tmp_path / "host-b"
    shutil.copytree(fleet["fleet_dir"] / "shards" / "b", host_dir / "shards" / "b")
    (host_dir / "runner.pid").write_text(str(__import__("os").getpid()))
    report = probe(host_dir)
    assert report["runner"]["state"] == "running" and report["shards"][0]["answers"] > 0
    status_dir = fleet["fleet_dir"] / "status"
    status_dir.mkdir(exist_ok=True)
    (status_dir / "b.json").write_text(json.dumps(report), "utf-8")
    rows = {s.host: s for s in host_statuses(fleet["fleet_dir"])}
    b = rows["b"]
    assert b.state == "running" and b.done == b.planned - sum(  # b's own shard done; the moved one not probed
        x["answers"] for x in read_plan(fleet["fleet_dir"])["shards"] if x["name"] == fleet["moved"] for x in x["blocks"])
    assert b.eta_h is not None and b.eta_h >= 0
    assert rows["a"].state == "no report yet"
    later = host_statuses(fleet["fleet_dir"], refreshed_utc="2999-01-01T00:00:00+00:00")
    assert next(r for r in later if r.host == "b").state == "did not answer the probe; last seen running"


def test_another_toolkit_version_or_model_digest_is_refused(fleet, merged, monkeypatch, tmp_path):
    from dataclasses import replace

    from bench.fleet import merge as merge_mod

    shards = load_all(merged["shards"], fleet["signers"])
    monkeypatch.setattr(merge_mod, "__version__", "9.9.9")
    with pytest.raises(FleetError, match=r"/a: written by toolkit \S+, this merge is 9\.9\.9 \(merge with"):
        merge_mod.decide(shards)
    monkeypatch.undo()
    a = next(s for s in shards if s.shard.name == "a")
    tag = next(iter(a.digests))
    other = replace(a, path=tmp_path / "other", digests={**a.digests, tag: "0" * 64})
    with pytest.raises(FleetError, match=f"other: model {tag} has digest 0+ here but {a.digests[tag]} in "):
        merge_mod._same_models([a, other])  # two devices, one tag, two models: refused before anything is written
