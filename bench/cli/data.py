"""`bench data` commands."""

from __future__ import annotations

import click

from bench.cli import cli

_names = click.argument("names", nargs=-1, metavar="[DATASET]...")
_dest = click.option("--dir", "directory", default=None, metavar="DIR",
                     help="Cache directory (default: $BENCH_DATA_DIR or ~/.cache/edge-llm-bench/data).")


def _adapters(names: tuple[str, ...]) -> list:
    """The named datasets' adapters; none named: the paper's five."""
    from bench.suite import PAPER_DATASETS, dataset

    return [dataset(name).adapter for name in names or PAPER_DATASETS]


@cli.group("data")
def data_group() -> None:
    """The datasets: fetch them from the hub, verify a cache against the paper's selection, show items."""


@data_group.command("fetch")
@_names
@_dest
@click.option("--revision", default=None, metavar="REV", help="Hub revision (branch, tag or commit; default main).")
@click.option("--all", "everything", is_flag=True, help="Cache every item, not only the paper's selection.")
def fetch_cmd(names: tuple[str, ...], directory: str | None, revision: str | None, everything: bool) -> None:
    """Download datasets (default: the paper's five), verify and cache them with the resolved revision."""
    from bench.datasets import fetch

    done = fetch(_adapters(names), directory, revision=revision, selection="all" if everything else "paper")
    for name, path in done.items():
        click.echo(f"{name:14} cached in {path}")


@data_group.command("verify")
@_names
@_dest
def verify_cmd(names: tuple[str, ...], directory: str | None) -> None:
    """Check a cache against the paper's selection (ids and sha256 of every item)."""
    from bench.datasets import verify

    report = verify(_adapters(names), directory)
    for name, line in report.items():
        click.echo(f"{name:14} {line}")
    failed = [f"{name}: {line.removeprefix('FAILED: ')}" for name, line in report.items() if line.startswith("FAILED")]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise click.ClickException(f"the cache does not match the paper's selection: {failed[0]}{more}")


@data_group.command("show")
@click.argument("name")
@click.option("--source", "kind", type=click.Choice(["fixtures", "cache", "hub", "files"]), default="fixtures",
              show_default=True)
@click.option("--path", default=None, help="Directory for --source files/cache.")
@click.option("--selection", type=click.Choice(["paper", "all"]), default=None,
              help="Default: all for fixtures, paper otherwise.")
@click.option("-n", "--limit", default=3, show_default=True, help="How many items.")
@click.option("--prompt/--no-prompt", default=True, help="Print the rendered prompt.")
def show_cmd(name: str, kind: str, path: str | None, selection: str | None, limit: int, prompt: bool) -> None:
    """Print a few items of NAME with their id, sha256, reference and prompt."""
    from bench.datasets import DataSource
    from bench.suite import load_items, render

    selection = selection or ("all" if kind == "fixtures" else "paper")
    for item in load_items(name, DataSource(kind=kind, selection=selection, limit=limit, path=path)):
        click.echo(f"== {item.dataset} {item.item_id}  sha256 {item.sha256[:16]}…  reference {item.reference!r}")
        if prompt:
            click.echo(render(item))
        click.echo()
