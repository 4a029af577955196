"""`bench run`, `bench validate`, `bench score`: asking the questions and scoring the stored answers."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli


def default_out(spec_name: str) -> Path:
    return Path("results") / spec_name


@cli.command()
@click.option("--spec", "spec_name", required=True, help="A shipped spec (demo, paper, smoke) or a .toml path.")
def validate(spec_name: str) -> None:
    """Check a spec and everything it names (models, datasets, selection hashes) without running anything."""
    from bench.runner import load_tasks
    from bench.spec import load_spec

    spec = load_spec(spec_name)
    tasks = load_tasks(spec)
    click.echo(f"{spec.source_path}: ok: {len(spec.models)} model(s), {len(spec.datasets)} dataset(s), "
               f"{len(tasks)} answers, spec sha256 {spec.sha256}")


@cli.command()
@click.option("--spec", "spec_name", required=True, help="A shipped spec (demo, paper, smoke) or a .toml path.")
@click.option("--out", type=click.Path(path_type=Path), help="Result folder (default results/<spec name>).")
@click.option("--max-answers", type=click.IntRange(min=1), help="Stop after this many answers (resume later).")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA on stderr.")
def run(spec_name: str, out: Path | None, max_answers: int | None, progress: bool) -> None:
    """Ask every question of the spec (or what is left of it) and record answers, timings and energy."""
    from bench.runner import run as run_spec
    from bench.spec import load_spec

    spec = load_spec(spec_name)
    outcome = run_spec(spec, out or default_out(spec.name), progress=progress, max_answers=max_answers)
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items()) or "none"
    state = "interrupted" if outcome.interrupted else ("resumed" if outcome.resumed else "done")
    click.echo(f"{outcome.out_dir}: {state}: asked {outcome.asked} this time; answers: {counts}")
    if outcome.interrupted:
        raise click.exceptions.Exit(130)


_unsafe = click.option("--unsafe-no-sandbox", is_flag=True,
                       help="Run HumanEval answers even where the sandbox is incomplete (scores record what was missing).")


def _allow_unconfined(unsafe: bool) -> None:
    if unsafe:
        from bench.scoring.execution import allow_unconfined

        allow_unconfined()


@cli.command()
@click.argument("result_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--mode", type=click.Choice(["paper", "strict", "all"]), default="all", show_default=True)
@click.option("--rescore", is_flag=True, help="Score again answers that already have a score in this mode.")
@_unsafe
def score(result_dir: Path, mode: str, rescore: bool, unsafe_no_sandbox: bool) -> None:
    """Score a stored run (paper-faithful and/or strict rules) without asking the model again."""
    from bench.score_run import score_run
    from bench.scoring import MODES

    _allow_unconfined(unsafe_no_sandbox)
    for s in score_run(result_dir, MODES if mode == "all" else (mode,), rescore=rescore):
        per_ds = ", ".join(f"{ds} {c}/{n}" for ds, (c, n) in s.correct_by_dataset.items())
        click.echo(f"{s.mode}: scored {s.scored} new; correct: {per_ds or 'none'}")


@cli.command()
@click.option("--spec", "spec_name", required=True, help="A shipped spec (demo, paper, smoke) or a .toml path.")
@click.option("--out", type=click.Path(path_type=Path), help="Result folder (default results/<spec name>).")
@click.option("--key", type=click.Path(path_type=Path), help="Signing key (default: created on first use).")
@click.option("--progress/--no-progress", default=True)
@_unsafe
def pipeline(spec_name: str, out: Path | None, key: Path | None, progress: bool, unsafe_no_sandbox: bool) -> None:
    """Run (or resume), score, report and sign: every stage on one result folder."""
    from bench.pipeline import pipeline as run_pipeline
    from bench.spec import load_spec

    _allow_unconfined(unsafe_no_sandbox)
    spec = load_spec(spec_name)
    done = run_pipeline(spec, out or default_out(spec.name), progress=progress, key_path=key)
    folder = done.run.out_dir
    if not done.sealed:
        click.echo(f"{folder}: interrupted; run the same command again to resume")
        raise click.exceptions.Exit(130)
    for s in done.scores:
        acc = ", ".join(f"{ds} {c}/{n}" for ds, (c, n) in s.correct_by_dataset.items())
        click.echo(f"accuracy ({s.mode}): {acc}")
    click.echo(f"results:   {folder / 'results.db'}")
    click.echo(f"report:    {done.report_dir / 'report.html'}  (summary: {done.report_dir / 'summary.md'})")
    click.echo(f"checksums: {folder / 'SHA256SUMS'}  (signature: {folder / 'SHA256SUMS.sig'})")
    click.echo(f"verify:    bench verify {folder}")
