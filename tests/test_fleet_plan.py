"""The fleet planner and shard specs: costs from the authors' per-cell latencies, LPT balance, model loads kept
low, shard identity in the spec hash, and the inventory read by Ansible itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import FleetError, SpecError
from bench.fleet.costs import CostModel, blocks, spec_seconds
from bench.fleet.inventory import Host, load_inventory, synthetic_hosts
from bench.fleet.plan import assign
from bench.fleet.planfile import entries, plan_fleet, read_plan, write_plan
from bench.runner import load_tasks
from bench.spec import load_spec, parent_text, parse_spec
from paper_data import SITE

ROOT = Path(__file__).resolve().parents[1]
COSTS = CostModel({})


def test_block_cost_is_answers_times_the_authors_cell_latency():
    # The authors' companion-site data (edge-llm-site-data.json, `agg.<model id>.<dataset>.lat`: mean Ollama
    # total_duration per answer, seconds) is the published per-cell latency the planner predicts from.
    if not SITE.is_file():
        pytest.skip(f"authors' data absent: {SITE}")
    site = json.loads(SITE.read_text("utf-8"))
    model_id = {m["ollama"]: m["id"] for m in site["models"]}
    paper = load_spec("paper")
    checked = 0
    for b in blocks(paper, COSTS):
        lat = site["agg"][model_id[b.model]][b.dataset]["lat"]
        assert b.seconds == pytest.approx(b.answers * lat, rel=1e-3), (b.model, b.dataset)
        checked += 1
    assert checked == 140
    # 200 items per dataset, 164 for HumanEval (the paper's selection), 28 models.
    assert sum(b.answers for b in blocks(paper, COSTS)) == 28 * (4 * 200 + 164)


def _check_assignment(a, all_blocks):
    got = [(b.model, b.dataset) for hp in a.hosts for b in hp.blocks]
    assert sorted(got) == sorted((b.model, b.dataset) for b in all_blocks)  # each block exactly once
    for hp in a.hosts:  # a model's blocks are contiguous on a host: one load each
        models = [b.model for b in hp.blocks]
        assert len(models) == 0 or [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m] \
            == list(dict.fromkeys(models))


@pytest.mark.parametrize("n", [1, 4, 8, 16])
def test_lpt_balances_the_paper_spec(n):
    paper = load_spec("paper")
    all_blocks = blocks(paper, COSTS)
    overhead = paper.idle.duration_s + spec_seconds(load_spec("smoke"), COSTS)
    a = assign(all_blocks, synthetic_hosts(n), COSTS, overhead)
    _check_assignment(a, all_blocks)
    work = sum(b.seconds for b in all_blocks)
    # No plan can beat the mean share or the largest single block; LPT + moves stays within 5% of that bound.
    bound_h = max(work / n + overhead, max(b.seconds + COSTS.reload_s(b.model) for b in all_blocks) + overhead) / 3600
    assert bound_h <= a.makespan_h <= 1.05 * bound_h
    if n == 1:
        assert a.hosts[0].reloads == 28  # one load per model, never more
    if n == 4:
        assert a.balance < 1.01
        assert sum(hp.reloads for hp in a.hosts) <= 28 + 4  # models split only where balance needs it


def test_faster_host_gets_more_work():
    paper = load_spec("paper")
    a = assign(blocks(paper, COSTS), [Host("fast", 2.0), Host("slow", 1.0)], COSTS)
    fast, slow = a.hosts
    assert sum(b.seconds for b in fast.blocks) > 1.8 * sum(b.seconds for b in slow.blocks)
    assert abs(fast.hours - slow.hours) / a.mean_h < 0.02


def test_measured_times_replace_published(tmp_path):
    smoke = load_spec("smoke")
    tag, ds = smoke.blocks()[0]
    costs = CostModel({(tag, ds): 2.0})
    first = blocks(smoke, costs)[0]
    assert (first.seconds, first.source) == (2.0 * 5, "run")
    with pytest.raises(FleetError, match="no predicted time for block"):
        blocks(load_spec("demo"), COSTS)  # SmolLM2 is not in the paper: needs --from-run


def test_shard_specs_carry_their_identity(tmp_path):
    paper, smoke = load_spec("paper"), load_spec("smoke")
    _, doc = plan_fleet(paper, smoke, synthetic_hosts(3), COSTS)
    write_plan(tmp_path, doc)
    specs = {e.name: load_spec(str(tmp_path / e.spec)) for e in entries(doc)}
    hashes = {s.sha256 for s in specs.values()}
    assert len(hashes) == 6 and paper.sha256 not in hashes  # every shard its own hash, none the parent's
    work = [s for s in specs.values() if s.shard.role == "work"]
    assert all(s.parent_sha256 == s.shard.parent_sha256 == paper.sha256 for s in work)
    assert sorted(b for s in work for b in s.blocks()) == sorted(paper.blocks())
    calib = specs["calibration-pi2"]
    assert calib.shard.blocks == smoke.blocks() and calib.parent_sha256 == smoke.sha256
    # The parent's text comes back out of a shard spec, and hashes as the parent.
    assert parse_spec(parent_text(specs["pi1"].source_text)).sha256 == paper.sha256
    # Planning again is a no-op; a different plan is refused without --replace.
    write_plan(tmp_path, doc)
    _, other = plan_fleet(paper, smoke, synthetic_hosts(2), COSTS)
    with pytest.raises(FleetError, match="pass --replace"):
        write_plan(tmp_path, other)
    assert read_plan(tmp_path)["plan_id"] == doc["plan_id"]


def test_runner_asks_only_a_shards_blocks_in_plan_order(tmp_path):
    from bench.spec import ShardSpec, with_shard

    demo = load_spec("demo")
    mine = (("smollm2:135m-instruct-q4_1", "gsm8k"), ("smollm2:135m-instruct-q4_1", "commonsenseqa"))
    shard = ShardSpec(plan="p", name="a", host="a", role="work", parent_sha256=demo.sha256, blocks=mine)
    spec = parse_spec(with_shard(demo.source_text, shard), "a.toml")
    tasks = load_tasks(spec)
    assert [t.item.dataset for t in tasks] == ["gsm8k"] * 3 + ["commonsenseqa"] * 3


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('limit = 3', 'limit = 2', 1), "shard.parent_sha256: expected"),
    (lambda t: t.replace('"gsm8k"', '"nosuch"'), "shard.blocks: expected pairs of this spec"),
    (lambda t: t.replace('role = "work"', 'role = "boss"'), "shard.role: expected one of work, calibration"),
    (lambda t: t + 'extra = 1\n', "shard.extra: unknown key"),
])
def test_a_broken_shard_table_is_one_line(edit, message):
    from bench.spec import ShardSpec, with_shard

    demo = load_spec("demo")
    shard = ShardSpec(plan="p", name="a", host="a", role="work", parent_sha256=demo.sha256,
                      blocks=(("smollm2:135m-instruct-q4_1", "gsm8k"),))
    with pytest.raises(SpecError, match=message) as err:
        parse_spec(edit(with_shard(demo.source_text, shard)), "a.toml")
    assert "\n" not in str(err.value)


def test_inventory_is_read_by_ansible(tmp_path):
    hosts = load_inventory(ROOT / "fleet" / "inventory.yml")
    assert [h.name for h in hosts] == ["pi1", "pi2", "pi3", "pi4"]
    assert hosts[3].speed == 0.95 and hosts[0].speed == 1.0
    assert hosts[1].vars["meter_driver"] == "um25c" and hosts[1].vars["bench_runtime"] == "compose"
    bad = tmp_path / "inv.yml"
    bad.write_text("all:\n  hosts:\n    a: {}\n", "utf-8")
    with pytest.raises(FleetError, match="no group 'fleet'"):
        load_inventory(bad)
    bad.write_text("all:\n  children:\n    fleet:\n      hosts:\n        a: {fleet_speed: fast}\n", "utf-8")
    with pytest.raises(FleetError, match="a: fleet_speed: expected a number > 0"):
        load_inventory(bad)
    with pytest.raises(FleetError, match="no such inventory file"):
        load_inventory(tmp_path / "missing.yml")


def test_plan_cli_prints_hours_and_balance(tmp_path):
    from runner_support import run_bench

    proc = run_bench("fleet", "plan", "--spec", "paper", "--what-if", "1,4", check=True)
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["pis", "makespan", "h", "mean", "h", "max/mean", "reloads"]
    one = lines[2].split()
    assert one[0] == "1" and one[1] == one[2] and float(one[3]) == 1.0
    proc = run_bench("fleet", "plan", "--spec", "paper", "--what-if", "0")
    assert proc.returncode != 0 and "host counts must be >= 1" in proc.stderr
