"""`bench sandbox`: what this host can enforce around HumanEval answers, property by property."""

from __future__ import annotations

import click

from bench.cli import cli


@cli.command("sandbox")
def sandbox_cmd() -> None:
    """Print how each sandbox property is enforced here and run a trial program; exit 1 if scoring would refuse."""
    from bench.scoring.execution import confinement, require

    host, broken = confinement()
    for name, how in host.properties().items():
        click.echo(f"{name:18} {how or 'MISSING'}")
    if host.no_namespaces_because:
        click.echo(f"{'namespaces':18} unavailable: {host.no_namespaces_because}")
    click.echo(f"{'trial program':18} {broken or 'ran in the sandbox'}")
    require()  # the one-line refusal, exit 1, when a property is missing
    click.echo("ok: HumanEval answers can be scored here")
