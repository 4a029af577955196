"""`bench fleet plan|status|probe|move` and `bench merge`: the study across several Pis (docs/fleet.md)."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli

_FLEET_DIR = click.option("--fleet-dir", type=click.Path(file_okay=False, path_type=Path),
                          default=Path("results/fleet"), show_default=True,
                          help="The controller's folder for this fleet: plan, shard specs, status, fetched shards.")


@cli.group()
def fleet() -> None:
    """Plan shards over the hosts of an Ansible inventory, follow them, move a dead host's work."""


def _hosts_list(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected host counts like 1,4,8,16, got {text!r}") from None
    if any(c < 1 for c in counts):
        raise click.BadParameter(f"host counts must be >= 1, got {text!r}")
    return counts


@fleet.command()
@click.option("--spec", "spec_name", required=True, help="The experiment to shard (shipped name or .toml path).")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), help="Ansible inventory (group 'fleet').")
@click.option("--calibration", "calibration_name", default="smoke", show_default=True,
              help="The small spec every host also runs, for device-to-device spread.")
@click.option("--from-run", "from_runs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Result folder(s) of ours whose answer times replace the published latencies.")
@click.option("--load-mb-s", type=click.FloatRange(min=0.1), default=None,
              help="Storage read rate for model loads, MB/s (default 45, a Pi 4's SD card).")
@click.option("--what-if", "what_if", help="Only print the predicted makespan on N synthetic Pis, e.g. 1,4,8,16.")
@click.option("--replace", is_flag=True, help="Overwrite a different plan already in the fleet dir.")
@_FLEET_DIR
def plan(spec_name: str, inventory: Path | None, calibration_name: str, from_runs: tuple[Path, ...],
         load_mb_s: float | None, what_if: str | None, replace: bool, fleet_dir: Path) -> None:
    """Assign (model, dataset) blocks to hosts so they finish together; write one shard spec per host."""
    from bench.fleet.costs import DEFAULT_LOAD_MB_S, CostModel, measured_times
    from bench.fleet.inventory import load_inventory, synthetic_hosts
    from bench.fleet.planfile import plan_fleet, write_plan
    from bench.spec import load_spec

    spec, calibration = load_spec(spec_name), load_spec(calibration_name)
    costs = CostModel(measured_times(list(from_runs)), load_mb_s or DEFAULT_LOAD_MB_S)
    if what_if:
        click.echo(f"{spec.name}: predicted makespan (hours) on N Pis at the paper's speed, calibration "
                   f"'{calibration.name}' and idle baseline included")
        click.echo(f"{'pis':>4} {'makespan h':>11} {'mean h':>8} {'max/mean':>9} {'reloads':>8}")
        for n in _hosts_list(what_if):
            a, _ = plan_fleet(spec, calibration, synthetic_hosts(n), costs)
            click.echo(f"{n:>4} {a.makespan_h:>11.1f} {a.mean_h:>8.1f} {a.balance:>9.3f} "
                       f"{sum(h.reloads for h in a.hosts):>8}")
        return
    if inventory is None:
        raise click.UsageError("--inventory is required (or --what-if N,... for a dry estimate)")
    a, doc = plan_fleet(spec, calibration, load_inventory(inventory), costs)
    path = write_plan(fleet_dir, doc, replace=replace)
    answers = sum(b["answers"] for s in doc["shards"] for b in s["blocks"])
    click.echo(f"plan {doc['plan_id']}: {spec.name} (sha256 {spec.sha256[:12]}), {len(spec.blocks())} blocks, "
               f"{answers} answers on {len(a.hosts)} host(s); each host also runs '{calibration.name}' "
               f"({doc['calibration']['predicted_s'] / 3600:.2f} h) and a {spec.idle.duration_s / 3600:.2f} h idle baseline")
    click.echo(f"{'host':<16} {'blocks':>6} {'models':>6} {'speed':>5} {'predicted h':>11}")
    for hp in a.hosts:
        click.echo(f"{hp.host.name:<16} {len(hp.blocks):>6} {hp.reloads:>6} {hp.host.speed:>5.2f} {hp.hours:>11.2f}")
    click.echo(f"makespan {a.makespan_h:.2f} h, mean {a.mean_h:.2f} h, balance (max/mean) {a.balance:.3f}")
    click.echo(f"wrote {path} and {len(doc['shards'])} shard specs in {fleet_dir / 'specs'}")


@cli.command()
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="New merged folder.")
@click.option("--signers", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("results/fleet/allowed_signers"), show_default=True,
              help="The fleet's allowed_signers (one line per host, collected by the playbook).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), help="Signing key of the merge.")
@click.option("--complete", "require_complete", is_flag=True, help="Refuse to merge while blocks are missing.")
def merge(shard_dirs: tuple[Path, ...], out: Path, signers: Path, key_path: Path | None,
          require_complete: bool) -> None:
    """Verify fleet shard folders and merge them into one sealed result folder (device of every answer kept)."""
    from bench.fleet.merge import merge as run_merge

    plan, facts = run_merge(list(shard_dirs), out, signers, key_path=key_path, require_complete=require_complete)
    per = ", ".join(f"{s['name']} {s['answers_merged']}" for s in facts["shards"] if s["role"] == "work")
    click.echo(f"merged {len(plan.work)} work shard(s) and {len(plan.calibration)} calibration run(s) of plan "
               f"{facts['plan']} into {out}: answers {per}")
    for s in facts["shards"]:
        for b in s["blocks_superseded"]:
            click.echo(f"superseded: {s['name']} block {b[0]} / {b[1]} (moved; its answers there left out)")
    click.echo("missing blocks: " + ("none" if not plan.missing else str(len(plan.missing))))
    for m in plan.missing:
        click.echo(f"  missing: {m}")
    variance = facts["device_variance"]
    if "spread" not in variance:
        click.echo(f"device variance: {variance['note']}")
    else:
        from bench.report.devices import METRICS

        click.echo(f"device spread over {len(variance['devices'])} devices: " + ", ".join(
            f"{METRICS[m]} {'–' if s is None else f'{100 * s:.1f}%'}" for m, s in variance["spread"].items()))
        for m, c in variance["cross_device"].items():
            if c["exceeding"] is not None:
                click.echo(f"model differences across devices ({METRICS[m]}): {c['exceeding']} of {c['pairs']} "
                           f"larger than the device spread, {len(c['within_spread'])} within it")
    click.echo(f"verify: bench verify {out}")


@fleet.command()
@click.option("--from", "from_shard", required=True, help="The dead host's shard (its name in plan.json).")
@click.option("--to", "to_host", required=True, help="The host that takes its unfinished blocks.")
@_FLEET_DIR
def move(from_shard: str, to_host: str, fleet_dir: Path) -> None:
    """Move a dead host's unfinished blocks to another host (a new shard; rerun the playbook to start it)."""
    from bench.fleet.move import move as run_move

    entry, source = run_move(fleet_dir, from_shard, to_host)
    n = sum(b["answers"] for b in entry["blocks"])
    click.echo(f"{entry['name']}: {len(entry['blocks'])} block(s), {n} answers of {from_shard} now on {to_host} "
               f"(unfinished according to the {source}); spec {fleet_dir / entry['spec']}")
    click.echo(f"next: ansible-playbook -i INVENTORY fleet/site.yml --limit {to_host}")


@fleet.command()
@click.argument("host_dir", type=click.Path(file_okay=False, path_type=Path))
def probe(host_dir: Path) -> None:
    """On a host: print its fleet folder's progress as JSON (what `bench fleet status` collects)."""
    import json

    from bench.fleet.status import probe as run_probe

    click.echo(json.dumps(run_probe(host_dir), indent=1))


@fleet.command()
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path),
              help="Refresh first: probe every host with `ansible-playbook ... --tags status`.")
@click.option("--playbook", type=click.Path(dir_okay=False, path_type=Path), default=Path("fleet/site.yml"),
              show_default=True)
@_FLEET_DIR
def status(inventory: Path | None, playbook: Path, fleet_dir: Path) -> None:
    """Per host: answers done of planned, ETA, runner state and the last error (from the hosts' probes)."""
    from bench.fleet.playbook import run_playbook
    from bench.fleet.status import host_statuses

    from bench.results import utc_now

    refreshed = utc_now() if inventory is not None else None
    if inventory is not None:
        run_playbook(inventory, playbook, ["status"], fleet_dir)
    click.echo(f"{'host':<14} {'done':>12} {'ETA h':>7}  state / last error")
    for s in host_statuses(fleet_dir, refreshed):
        eta = "-" if s.eta_h is None else f"{s.eta_h:.2f}"
        click.echo(f"{s.host:<14} {f'{s.done}/{s.planned}':>12} {eta:>7}  {s.state}"
                   + (f" (probed {s.probed_utc})" if s.probed_utc else ""))
        if s.last_error:
            click.echo(f"{'':<14} {'':>12} {'':>7}  last error: {s.last_error}")
