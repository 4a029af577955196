"""`bench sign`, `bench verify`, `bench keygen`: sealing a result folder and checking it offline."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli
from bench.errors import ProvenanceError

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_KEY = click.option(
    "--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Signing key (default $BENCH_SIGNING_KEY or ~/.config/edge-llm-bench/signing_key).",
)


@cli.command()
@click.argument("result_dir", type=_DIR)
@_KEY
def sign(result_dir: Path, key_path: Path | None) -> None:
    """Write manifest.json, SHA256SUMS and SHA256SUMS.sig into RESULT_DIR (a run folder's facts come from its DB)."""
    if (result_dir / "results.db").exists():
        from bench.pipeline import seal_run

        done = seal_run(result_dir, key_path)
    else:  # not a run folder: re-sealing keeps the existing manifest's facts
        from bench.provenance import seal

        done = seal(result_dir, None, key_path)
    click.echo(f"signed {done.result_dir}: {done.files} files, {done.identity} {done.fingerprint}")


@cli.command()
@click.argument("result_dir", type=_DIR)
@click.option("--trusted", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="allowed_signers file to pin the signer (default: the folder's own, integrity only).")
@click.option("--no-numbers", is_flag=True, help="Skip recomputing the report's numbers from the database.")
def verify(result_dir: Path, trusted: Path | None, no_numbers: bool) -> None:
    """Check RESULT_DIR offline: signature, checksums, missing/extra files, manifest, report numbers."""
    from bench.pipeline import verify_run

    report = verify_run(result_dir, trusted, check_numbers=not no_numbers)
    notes = [f"note: {note}" for note in report.notes]
    if not report.ok:
        for line in report.lines() + notes:  # the verification report, one problem a line, naming the file
            click.echo(line)
        # A typed error (not click's Exit, which main() in standalone_mode=False turns into exit status 0): the
        # one line on stderr.
        raise ProvenanceError(f"verify failed: {len(report.problems)} problem(s) in {result_dir}")
    click.echo(f"OK {result_dir}: {report.files_checked} files, signed by {report.signer}"
               + ("" if report.trusted else " (key not pinned)"))
    for note in notes:
        click.echo(note)


@cli.command()
@_KEY
@click.option("--identity", default=None, help="Principal for allowed_signers when creating (default edge-llm-bench).")
def keygen(key_path: Path | None, identity: str | None) -> None:
    """Create the signing key if absent and print its allowed_signers line (give that to reviewers)."""
    from bench.provenance import signing

    path = key_path or signing.default_key_path()
    if path.exists():
        if identity:
            click.echo(f"note: {path} exists; --identity ignored", err=True)
        key = signing.load_key(path)
    else:
        key = signing.create_key(path, identity or signing.DEFAULT_IDENTITY)
        click.echo(f"created {path}", err=True)
    click.echo(key.signers_line(), nl=False)
