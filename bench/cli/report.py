"""`bench report`: the paper's tables, the comparison with the published values, plots, HTML and Markdown."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import cli
from bench.errors import ResultsError


@cli.command("report")
@click.argument("result_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--from-authors", "authors_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Build the report from the authors' edge-llm-site-data.json instead of a result folder.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write report/ (default: RESULT_DIR).")
@click.option("--mode", default="paper", show_default=True, type=click.Choice(["paper", "strict"]),
              help="Which scoring pipeline's correctness to report.")
@click.option("--bandwidth-gbs", type=float, default=None, help="Memory bandwidth in GB/s: adds the roofline.")
@click.option("--no-published", is_flag=True, help="Leave out the comparison with the published values.")
@click.option("--no-plots", is_flag=True, help="Skip the figures (numbers, tables and HTML only; much faster).")
@click.option("--from-points", is_flag=True,
              help="With --from-authors: compute the tables from the per-answer points instead of `agg`.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="With --from-authors: a dataset cache holding the paper's HumanEval and TruthfulQA items, for "
                   "real pass@1 and the position baselines (default: $BENCH_DATA_DIR or ~/.cache/edge-llm-bench/data).")
def report_cmd(result_dir: Path | None, authors_file: Path | None, out_dir: Path | None, mode: str,
               bandwidth_gbs: float | None, no_published: bool, no_plots: bool, from_points: bool,
               data_dir: Path | None) -> None:
    """Write RESULT_DIR/report/: report.html, summary.md, numbers.json, tables (CSV) and plots (PNG + SVG)."""
    from bench.report import build_report

    if (result_dir is None) == (authors_file is None):
        raise click.UsageError("give either RESULT_DIR or --from-authors FILE (with --out DIR)")
    run_info: dict = {}
    if bandwidth_gbs:
        run_info["memory_bandwidth_gb_s"] = bandwidth_gbs
    if authors_file is not None:
        from bench.datasets import DataSource
        from bench.report.authors import AUTHORS_TOLERANCE_ABS, load_authors_cells, load_authors_frame, \
            load_authors_traces
        from bench.report.review import authors_inputs

        if out_dir is None:
            raise click.UsageError("--from-authors needs --out DIR")
        try:
            frame = load_authors_frame(authors_file)
            cells = None if from_points else load_authors_cells(authors_file)
        except (ValueError, KeyError, TypeError) as exc:  # JSON errors are ValueErrors
            raise ResultsError(f"{authors_file}: not the authors' edge-llm-site-data.json "
                               f"({type(exc).__name__}: {str(exc)[:120]})") from None
        run_info = {"name": "authors' data (Husom et al. 2025)", "source": str(authors_file),
                    "tables_from": "per-answer points" if from_points else "per-(model, dataset) agg",
                    "score_mode": "paper", **run_info}
        paths = build_report(frame, out_dir, run_info=run_info, traces=load_authors_traces(authors_file),
                             published=not no_published, cells=cells,
                             tolerance_abs=0.0 if from_points else AUTHORS_TOLERANCE_ABS, plots=not no_plots,
                             review_inputs=authors_inputs(authors_file, DataSource(
                                 kind="cache", selection="paper", path=str(data_dir) if data_dir else None)))
    else:
        from bench.pipeline import build_run_report

        report_dir = build_run_report(result_dir, mode, report_root=out_dir, extra_info=run_info,
                                      published=not no_published, plots=not no_plots)
        click.echo(f"wrote {report_dir / 'report.html'}")
        click.echo(f"wrote {report_dir / 'summary.md'}")
        return
    click.echo(f"wrote {paths.html}")
    click.echo(f"wrote {paths.markdown}")
