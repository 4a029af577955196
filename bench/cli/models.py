"""`bench models` commands."""

from __future__ import annotations

import click

from bench.cli import cli


@cli.group("models")
def models_group() -> None:
    """The model catalog: list it, pull models into Ollama, verify digests."""


def _selected(spec: str | None, tags: tuple[str, ...]) -> list[str]:
    from bench.catalog import paper_models

    selected: list[str] = []
    if spec:
        from bench.spec import load_spec  # the lead's spec loader; imported only when asked for

        selected += list(load_spec(spec).models)
    selected += [t for t in tags if t not in selected]
    return selected or [m.tag for m in paper_models()]


@models_group.command("list")
@click.option("--paper", is_flag=True, help="Only the 28 models of the study.")
def list_cmd(paper: bool) -> None:
    """Print the catalog as a table."""
    from bench.catalog import models

    rows = [m for m in models().values() if m.in_paper or not paper]
    click.echo(f"{'tag':34} {'backend':8} {'base':14} {'quant':7} {'size MB':>9}  {'digest':12}  paper")
    for m in rows:
        click.echo(f"{m.tag:34} {m.backend:8} {m.base:14} {m.quant:7} {m.size_mb:9.2f}  {m.digest[:12]}  "
                   f"{'yes' if m.in_paper else 'no'}")


_host = click.option("--host", default=None, help="Ollama server URL (default: $OLLAMA_HOST or 127.0.0.1:11434).")
_spec = click.option("--spec", default=None, metavar="NAME", help="Take the models of this experiment spec.")
_model = click.option("--model", "tags", multiple=True, metavar="TAG", help="A catalog tag (repeatable).")
_override = click.option("--allow-digest-override", is_flag=True, help="Do not refuse on a digest mismatch.")


@models_group.command("pull")
@_spec
@_model
@_host
@_override
def pull_cmd(spec: str | None, tags: tuple[str, ...], host: str | None, allow_digest_override: bool) -> None:
    """Pull models (default: the paper's 28), never over a copy that matches the catalog; refuse a tag the registry
    now serves with another digest; a progress bar per blob; verify the digests against the catalog."""
    from bench.models import pull, refuse_on_mismatch

    results = pull(host, _selected(spec, tags), allow_digest_override=allow_digest_override)
    for r in results:
        click.echo(f"{r.status:8} {r.tag}  {r.digest}" + (f"  ({r.note})" if r.note else ""))
    refuse_on_mismatch(results)


@models_group.command("check")
@_spec
@_model
@_host
@_override
def check_cmd(spec: str | None, tags: tuple[str, ...], host: str | None, allow_digest_override: bool) -> None:
    """Verify that the server holds each model with the catalog's digest (exit 1 on a missing or changed one)."""
    from bench.models import check, refuse_on_mismatch

    results = check(host, _selected(spec, tags), allow_digest_override=allow_digest_override)
    for r in results:
        click.echo(f"{r.status:8} {r.tag}  {r.digest or '-'}")
    refuse_on_mismatch(results)
