"""``build_report``: compute everything once, then write CSV tables, figures, numbers.json, HTML and Markdown.

The report goes into ``<out_dir>/report/`` (``out_dir`` is a result folder, or any directory for the authors' data).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import ResultsError
from bench.report import (aggregate, clock, compare, derived, devices, energy_bounds, findings, numbers, pareto,
                          phases, plots, protocol, render, roofline)
from bench.report.published import load_published
from bench.report.review import ReviewInputs, review
from bench.report.traces import as_trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    """Where the report's parts were written."""

    report_dir: Path
    html: Path
    markdown: Path
    numbers: Path
    tables: dict[str, Path]
    figures: dict[str, Path]


def _write_tables(d: render.ReportData, tables_dir: Path) -> dict[str, Path]:
    tables_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def put(name: str, df: pd.DataFrame, index: bool = False) -> None:
        path = tables_dir / f"{name}.csv"
        df.to_csv(path, index=index)
        out[name] = path

    put("cells", d.cells)
    put("models", d.summary)
    put("paper_tables", d.tables)
    for name in ("t4", "t5", "t9", "t10"):
        put(f"table{name[1:]}", aggregate.wide(d.tables[d.tables["table"] == name]), index=True)
    put("table4_sd", aggregate.wide(d.tables[d.tables["table"] == "t4"], "sd"), index=True)
    put("fronts", pareto.fronts_table(d.fronts))
    put("phases", d.phases)
    if d.roofline is not None:
        put("roofline", d.roofline)
    if d.protocol is not None:
        put("load_effect", d.protocol.load_effect)
    if d.devices is not None:
        put("devices", d.devices.per_device)
        put("device_calibration", d.devices.calibration)
    if d.comparison is not None:
        put("comparison", d.comparison)
        put("claims", compare.claims_frame(d.claims))
    return out


def _figures(d: derived.Derived, traces, plots_dir: Path) -> list:
    plots_dir.mkdir(parents=True, exist_ok=True)
    figs = [plots.pareto_plot(d.cells, d.summary, d.fronts, plots_dir), plots.jpt_plot(d.summary, plots_dir),
            plots.latency_plot(d.tables[d.tables["table"] == "t10"], plots_dir)]
    phase_fig = plots.phase_plot(d.summary, plots_dir)
    if phase_fig is not None:
        figs.append(phase_fig)
    usable = [t for t in (as_trace(x) for x in (traces or [])) if t is not None]
    if usable:
        figs.append(plots.trace_plot(usable[0], plots_dir))
    else:
        log.info("no usable power trace; trace plot skipped")
    return figs


def build_report(frame: pd.DataFrame, out_dir: Path, *, run_info: dict, traces: list | None = None,
                 published: bool = True, cells: pd.DataFrame | None = None,
                 tolerance_abs: float = 0.0, plots: bool = True,
                 device_data: devices.DeviceData | None = None,
                 review_inputs: ReviewInputs | None = None) -> ReportPaths:
    """Write ``out_dir/report/``: report.html, summary.md, numbers.json, tables/*.csv, plots/*.png|svg.

    ``cells`` replaces the per-(model, dataset) aggregates computed from ``frame`` (the authors' exact ``agg``);
    ``tolerance_abs`` is then how far the frame path may differ from them (recorded for ``recompute_check``).
    ``run_info`` is shown verbatim; ``memory_bandwidth_gb_s`` adds the roofline, ``reference_table: "t11"`` compares
    energy with the Pi 5 table instead of Table 5. ``plots=False`` skips the figures (a quick numbers-only build).
    ``device_data`` (a merged fleet folder's devices and calibration) adds the per-device view.
    ``review_inputs`` feeds the re-analysis behind the Findings (item sets, items, the authors' sample answers).
    """
    started = time.perf_counter()
    report_dir = Path(out_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    source = "supplied" if cells is not None else "frame"
    cells_ = cells if cells is not None else aggregate.cells(frame)
    if cells_.empty:
        raise ResultsError("no answers to report: the answers frame has no rows; run `bench run` first")
    agg = derived.from_cells(cells_)
    notes = []
    failed = int(cells_["n_failed"].sum())
    if failed:
        notes.append(f"{failed} of {int(cells_['n_rows'].sum())} answers ended without a recorded answer (timeout, "
                     "error or skipped); they are counted in cells.csv and left out of every mean.")
    notes += energy_bounds.notes(cells_, run_info.get("meter uncertainty"))
    notes += clock.notes(frame)
    if source == "supplied":
        notes.append(f"Tables and per-model values come from supplied per-(model, dataset) aggregates; the answers "
                     f"frame reproduces them within {tolerance_abs} (recorded in numbers.json).")
    bandwidth = run_info.get("memory_bandwidth_gb_s")
    roof = roofline.roofline(agg.summary, float(bandwidth)) if bandwidth else None
    comparison, claims, pub = None, [], None
    if published:
        pub = load_published()
        comparison = compare.compare(agg.tables, cells_, pub, run_info.get("reference_table", "t5"),
                                     summary=agg.summary)
        claims = compare.evaluate_claims(agg.tables, cells_, agg.fronts, pub, summary=agg.summary)
    inputs = review_inputs or ReviewInputs()
    rev = review(frame, agg, claims, pub, inputs)
    lead, details = findings.sections(rev, comparison, authors=inputs.sampled is not None)
    figures = _figures(agg, traces, report_dir / "plots") if plots else []
    data = render.ReportData(run_info=dict(run_info), cells=cells_, tables=agg.tables, summary=agg.summary,
                             fronts=agg.fronts, phases=agg.phases, phase_note=phases.jpt_vs_decode_note(agg.phases),
                             figures=figures, comparison=comparison, claims=claims, roofline=roof, notes=notes,
                             energy_marks=energy_bounds.marks(agg.qualities),
                             protocol=protocol.section(frame, run_info.get("protocol")),
                             devices=devices.device_view(frame, device_data), lead=[lead], sections=[details])
    table_paths = _write_tables(data, report_dir / "tables")
    table_paths.update(findings.write_tables(rev, report_dir / "tables"))
    nums = numbers.key_numbers(agg, frame, cells_source=source, tolerance_abs=tolerance_abs)
    numbers_path = numbers.write_numbers(nums, report_dir)
    html_path = report_dir / "report.html"
    html_path.write_text(render.render_html(data), "utf-8")
    md_path = report_dir / "summary.md"
    md_path.write_text(render.render_markdown(data), "utf-8")
    log.info("report written to %s in %.1f s", report_dir, time.perf_counter() - started)
    return ReportPaths(report_dir=report_dir, html=html_path, markdown=md_path, numbers=numbers_path,
                       tables=table_paths, figures={f.name: f.png for f in figures})


__all__ = ["ReportPaths", "build_report"]
