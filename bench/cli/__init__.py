"""The `bench` command: a thin layer that parses arguments, calls one library function, and turns typed errors
into one-line messages and exit codes. Each command group lives in its own module and registers here."""

from __future__ import annotations

import logging
import sys

import click

from bench import __version__
from bench.errors import BenchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
@click.option("-v", "--verbose", count=True, help="-v for INFO, -vv for DEBUG logging on stderr.")
def cli(verbose: int) -> None:
    """Energy, latency and accuracy of quantized LLMs on the edge (Husom et al. 2025), reproduced."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _register() -> None:
    # Explicit imports, no scanning: each module adds its commands to `cli`.
    from bench.cli import data, fleet, meter, models, nightly, provenance, report, run  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        rc = cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except BenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)  # standalone_mode=False returns an Exit's code instead of exiting
