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
