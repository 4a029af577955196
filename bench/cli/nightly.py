"""`bench nightly`: the smoke subset, signed, judged against a baseline; exit 0 ok, 1 drift, 2 failed."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli

ROOT = click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("results/nightly"),
                    show_default=True, help="Where the nights' folders, history.db and trend.png live.")


@cli.group(invoke_without_command=True)
@click.option("--spec", "spec_name", default="smoke", show_default=True)
@ROOT
@click.option("--tolerance", multiple=True, metavar="METRIC=VALUE",
              help="Override a drift tolerance, e.g. energy_per_answer_j=0.08 (relative) or accuracy=0.05 (abs).")
@click.option("--key", type=click.Path(path_type=Path), help="Signing key (default: created on first use).")
@click.pass_context
def nightly(ctx: click.Context, spec_name: str, root: Path, tolerance: tuple[str, ...], key: Path | None) -> None:
    """Run one night: the spec's subset into ROOT/<utc time>/, signed, compared with the baseline."""
    if ctx.invoked_subcommand is not None:
        return
    from bench.nightly import METRICS, nightly as run_night
    from bench.spec import load_spec

    tolerances = {}
    for item in tolerance:
        metric, _, value = item.partition("=")
        if metric not in (*METRICS, "idle_w"):
            raise click.BadParameter(f"unknown metric {metric!r} (one of {', '.join((*METRICS, 'idle_w'))})",
                                     param_hint="--tolerance")
        try:
            tolerances[metric] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected METRIC=NUMBER", param_hint="--tolerance") from None
    outcome = run_night(load_spec(spec_name), root, tolerances=tolerances, key_path=key)
    click.echo(outcome.summary)
    raise click.exceptions.Exit(outcome.exit_code)


@nightly.command()
@ROOT
@click.option("--set", "night", default="latest", show_default=True, help="A night id from the history, or latest.")
def baseline(root: Path, night: str) -> None:
    """Choose the night later nights are compared with (its signature is recorded with it)."""
    from bench.nightly import set_baseline

    click.echo(set_baseline(root / "history.db", night))
