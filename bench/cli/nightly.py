"""`bench nightly`: the smoke subset, signed, judged against a verified baseline; exit 0 ok, 1 drift, 2 failed.

Whatever happens, one line on stdout and the exit code (cron reads both); logs go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli

ROOT = click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("results/nightly"),
                    show_default=True, help="Where history.db, the lock and trend.png live.")


@cli.group(invoke_without_command=True)
@click.option("--spec", "spec_name", default="smoke", show_default=True)
@ROOT
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the nights' folders go (default: ROOT). Keep ROOT on another disk than OUT so a full "
                   "results disk is still recorded.")
@click.option("--tolerance", multiple=True, metavar="METRIC=VALUE",
              help="Override a drift tolerance, e.g. energy_per_answer_j=0.08 (relative) or accuracy=0.05 (abs).")
@click.option("--key", type=click.Path(path_type=Path), help="Signing key (default: created on first use).")
@click.option("--busy-share", type=click.FloatRange(0, 1), default=None,
              help="Exit 2 (machine busy) when other processes use more than this share of the machine's CPU "
                   "before the run, or during over a quarter of the answers (in-process backend) [default: 0.10].")
@click.option("--quiet-s", type=click.FloatRange(0.2, 600), default=3.0, show_default=True,
              help="Seconds of the quiet check before the run.")
@click.option("--wait-quiet-s", type=click.FloatRange(0), default=0.0, show_default=True,
              help="On a busy machine, repeat the quiet check for up to this long before giving up (exit 2).")
@click.option("--min-free-mb", type=click.FloatRange(0), default=1024.0, show_default=True,
              help="Free space a night needs under OUT.")
@click.pass_context
def nightly(ctx: click.Context, spec_name: str, root: Path, out: Path | None, tolerance: tuple[str, ...],
            key: Path | None, busy_share: float | None, quiet_s: float, wait_quiet_s: float,
            min_free_mb: float) -> None:
    """Run one night: the spec's subset into OUT/<utc time>/, signed, compared with the baseline."""
    if ctx.invoked_subcommand is not None:
        return
    from bench.nightly.machine import DEFAULT_BUSY_SHARE
    from bench.nightly.night import NightOptions, run_night

    opts = NightOptions(spec_name, root, out, _tolerances(tolerance), key,
                        DEFAULT_BUSY_SHARE if busy_share is None else busy_share, quiet_s, wait_quiet_s, min_free_mb)
    outcome = run_night(opts)
    click.echo(outcome.summary)
    raise click.exceptions.Exit(outcome.exit_code)


def _tolerances(items: tuple[str, ...]) -> dict[str, float]:
    from bench.nightly.drift import BY_NAME

    out = {}
    for item in items:
        metric, _, value = item.partition("=")
        if metric not in BY_NAME:
            raise click.BadParameter(f"unknown metric {metric!r} (one of {', '.join(BY_NAME)})",
                                     param_hint="--tolerance")
        try:
            out[metric] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected METRIC=NUMBER", param_hint="--tolerance") from None
    return out


@nightly.command()
@ROOT
@click.option("--set", "night", default="latest", show_default=True, help="A night id from the history, or latest.")
def baseline(root: Path, night: str) -> None:
    """Choose the night later nights are compared with, after verifying it (its signer is pinned)."""
    from bench.nightly.baseline import choose

    click.echo(choose(root / "history.db", night))


@nightly.command()
@ROOT
@click.option("--last", type=click.IntRange(1), default=20, show_default=True)
def history(root: Path, last: int) -> None:
    """The last nights: id, start, exit code and the night's line."""
    from bench.nightly import history as store

    path = root / "history.db"
    if not path.exists():
        raise click.ClickException(f"{path}: no history yet (run bench nightly first)")
    db = store.connect(path)
    try:
        rows = store.nights(db, last)
    finally:
        db.close()
    for n in rows:
        click.echo(f"{n.id:>4}  {n.started_utc}  exit {n.exit_code}  {n.summary}")
