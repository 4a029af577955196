"""The `bench` command: a thin layer that parses arguments, calls one library function, and turns every error into
one line on stderr and an exit code (1 for a refused input, 2 for a usage error, 130 when interrupted).

The boundary is here and only here: the library raises typed errors (`bench.errors`) whose messages already name
the file and the problem; anything else that escapes (an OSError, an unexpected exception) is still one line,
with the traceback only under ``-vv``."""

from __future__ import annotations

import logging
import sys

import click

from bench import __version__
from bench.errors import BenchError

log = logging.getLogger(__name__)
MAX_MESSAGE = 500


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
@click.option("-v", "--verbose", count=True, help="-v for INFO, -vv for DEBUG logging on stderr.")
def cli(verbose: int) -> None:
    """Energy, latency and accuracy of quantized LLMs on the edge (Husom et al. 2025), reproduced."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _register() -> None:
    # Explicit imports, no scanning: each module adds its commands to `cli`.
    from bench.cli import data, fleet, meter, models, nightly, provenance, report, run, sandbox  # noqa: F401


def one_line(text: str) -> str:
    """A message as one line: its lines joined, control characters dropped, at most MAX_MESSAGE characters."""
    joined = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
    clean = "".join(ch if ch.isprintable() else "?" for ch in joined)
    return clean if len(clean) <= MAX_MESSAGE else clean[:MAX_MESSAGE - 1] + "…"


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        rc = cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "bench"
        _fail(f"{where}: {exc.format_message()} (see {where} --help)", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except BenchError as exc:
        _fail(str(exc), exc.exit_code)
    except OSError as exc:  # a file the library did not expect to fail: name it
        log.debug("OSError at the CLI boundary", exc_info=True)
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc), 1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback for the user
        log.debug("unexpected error at the CLI boundary", exc_info=True)
        _fail(f"unexpected {type(exc).__name__}: {exc} (bench -vv ... shows where)", 1)
    sys.exit(rc if isinstance(rc, int) else 0)  # standalone_mode=False returns an Exit's code instead of exiting
