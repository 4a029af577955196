"""The written report: files, self-containment, numbers.json and its recompute check, partial runs, the CLI, and
a headless-Chromium screenshot (skipped without chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bench.report import build_report, recompute_check
from bench.report.synthetic import synthetic_frame, synthetic_trace
from bench.report.traces import as_trace
from paper_data import SITE

FIGURES = {"pareto", "jpt_by_quant", "latency_by_dataset", "phase_costs", "power_trace"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    frame = synthetic_frame(n_answers=4000, seed=3)
    out = tmp_path_factory.mktemp("synthetic-run")
    paths = build_report(frame, out, run_info={"name": "synthetic-test", "memory_bandwidth_gb_s": 4.0},
                         traces=[None, {"bad": 1}, synthetic_trace()])  # unusable traces are skipped
    return frame, paths


def test_report_files_are_written(synth):
    _, paths = synth
    assert paths.report_dir.name == "report"
    for p in (paths.html, paths.markdown, paths.numbers):
        assert p.is_file() and p.stat().st_size > 0
    assert set(paths.figures) == FIGURES
    for name in FIGURES:
        assert (paths.report_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (paths.report_dir / "plots" / f"{name}.svg").read_bytes()[:2000]
    for name in ("cells", "models", "table4", "table5", "table9", "table10", "fronts", "phases", "roofline",
                 "comparison", "claims"):
        assert paths.tables[name].is_file(), name


def test_html_is_self_contained(synth):
    _, paths = synth
    text = paths.html.read_text("utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?https?:", text) and "@import" not in text
    assert "http" not in text  # no URL of any kind in a synthetic run's report
    assert text.count("src='data:image/png;base64,") == len(FIGURES)


def test_summary_and_tables_show_intervals_counts_and_published(synth):
    _, paths = synth
    md = paths.markdown.read_text("utf-8")
    assert "Table 5" in md and "[paper 59.10]" in md
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d \(n=\d+\)", md)
    claims = md.split("## Headline claims", 1)[1].split("\n## ", 1)[0]
    assert "cannot be evaluated" not in claims  # every model and dataset is present
    import pandas as pd

    status = pd.read_csv(paths.tables["comparison"])["status"]
    assert set(status) <= {"within", "outside"}  # full composition: every number is judged
    assert "J per generated token" in md
    assert "roofline (4.0 GB/s)" in md and "% of limit" in md


def test_recompute_check_passes_on_the_built_report(synth):
    frame, paths = synth
    assert recompute_check(frame, paths.report_dir) == []


def test_recompute_check_catches_a_changed_number(synth, tmp_path):
    frame, paths = synth
    report = tmp_path / "report"
    shutil.copytree(paths.report_dir, report)
    numbers = json.loads((report / "numbers.json").read_text())
    key = "t5/q8_0/llama3.2_1b/mean"
    numbers["values"][key] += 0.01
    (report / "numbers.json").write_text(json.dumps(numbers))
    problems = recompute_check(frame, report)
    assert len(problems) == 1 and problems[0].startswith(key)


def test_recompute_check_catches_changed_answers_and_missing_file(synth, tmp_path):
    frame, paths = synth
    changed = frame.copy()
    changed.loc[changed.index[0], "energy_j"] = changed["energy_j"].iloc[0] + 100
    problems = recompute_check(changed, paths.report_dir)
    assert any(p.startswith(f"model/{changed['model'].iloc[0]}/energy_j") for p in problems)
    assert any(p.startswith("t5/") for p in problems)
    assert "missing" in recompute_check(frame, tmp_path)[0]


def test_partial_run_says_what_cannot_be_evaluated(tmp_path):
    from bench.catalog import model

    models = [model("qwen2.5:0.5b-instruct-q4_K_M"), model("qwen2.5:0.5b-instruct-q8_0")]
    frame = synthetic_frame(n_answers=200, seed=1, models=models, datasets=("gsm8k", "truthfulqa"))
    paths = build_report(frame, tmp_path, run_info={"name": "partial"}, traces=None, plots=False)
    claims = {r["claim"]: r for r in __import__("csv").DictReader(paths.tables["claims"].open())}
    assert claims["energy_per_token_reduction"]["holds"] == ""  # None: no fp16 model was run
    assert "cannot be evaluated" in claims["pareto_front_all"]["deciding"]
    # Evaluable with two groups; synthetic costs scale with bytes, so the bigger q8_0 is dearer and the claim fails.
    avg = __import__("ast").literal_eval(claims["cheapest_group_per_answer"]["deciding"])["table5_avg_j"]
    assert set(avg) == {"q8_0", "q4"} and avg["q8_0"] > avg["q4"]
    assert claims["cheapest_group_per_answer"]["holds"] == "False"
    comparison = __import__("pandas").read_csv(paths.tables["comparison"])
    assert (comparison["status"] == "not run").sum() > 1000
    assert set(comparison["status"]) <= {"within", "outside", "partial", "not run"}
    # Table cells averaging over fewer models than the paper's are shown but not judged.
    t5 = comparison[comparison["table"] == "t5"].set_index(["row", "col"])["status"]
    assert t5[("q8_0", "qwen2.5_0.5b")] == "partial"  # the same single model, but run on 2 of its 5 datasets
    assert t5[("q4", "qwen2.5_0.5b")] == "partial"  # one of the paper's four q4 models
    assert t5[("q8_0", "avg")] == "partial" and t5[("q8_0", "llama3.2_1b")] == "not run"
    assert recompute_check(frame, paths.report_dir) == []


def test_traces_none_or_unusable_are_skipped(tmp_path):
    frame = synthetic_frame(n_answers=300, seed=2)
    bad = {"samples": [(1, 2.0)], "t_send_ns": 0, "t_last_ns": 10}
    paths = build_report(frame, tmp_path, run_info={"name": "x"}, traces=[None, bad, {"nonsense": 1}],
                         published=False, plots=False)
    assert paths.figures == {} and "comparison" not in paths.tables and "Headline claims" not in \
        paths.markdown.read_text()
    assert as_trace(None) is None and as_trace(bad) is None
    stored = {"model": "m", "dataset": "gsm8k", "item_id": "7", "t_send_ns": 0, "t_first_token_ns": 5,
              "t_last_token_ns": 10, "samples": [[0, 3.0], [6, 4.0]]}
    tr = as_trace(stored)
    assert (tr.t_first_ns, tr.t_last_ns, tr.label) == (5, 10, "m · gsm8k · 7")


def test_trace_plot_only_for_a_usable_trace(monkeypatch, tmp_path):
    """``_figures`` skips None/unusable traces and plots the first usable one (renderers stubbed: logic only)."""
    from bench.report import build, plots

    made = []
    for name in ("pareto_plot", "jpt_plot", "latency_plot", "phase_plot", "trace_plot"):
        monkeypatch.setattr(plots, name, lambda *a, _n=name, **k: made.append((_n, a)) or _n)
    frame = synthetic_frame(n_answers=300, seed=2)
    from bench.report import aggregate, derived

    agg = derived.from_cells(aggregate.cells(frame))
    figs = build._figures(agg, None, tmp_path)
    assert figs == ["pareto_plot", "jpt_plot", "latency_plot", "phase_plot"]
    made.clear()
    good = synthetic_trace(seed=4)
    figs = build._figures(agg, [None, {"x": 1}, good, synthetic_trace()], tmp_path)
    assert figs[-1] == "trace_plot" and made[-1][1][0] is good


def test_a_report_build_derives_each_aggregate_once(tmp_path, monkeypatch):
    """No aggregate is derived twice from the same input in a build: the cells of a frame, and the per-model
    summary, the paper's tables, the fronts, the phase table and the energy qualities of those cells are computed
    once and shared by the tables, plots, comparison, claims, Findings and numbers.json (the Findings derive their
    own only for the frames they change)."""
    import sys

    from bench.report import aggregate, energy_bounds, pareto, phases

    calls: dict[tuple[str, int], int] = {}
    seen: list = []  # the inputs stay alive, so their ids are not reused

    def counted(module, name):
        """Count calls per input through every name any bench module holds the function under."""
        real = getattr(module, name)

        def wrapper(first, *args, **kwargs):
            seen.append(first)
            calls[name, id(first)] = calls.get((name, id(first)), 0) + 1
            return real(first, *args, **kwargs)
        for mod in [m for n, m in sys.modules.items() if n.startswith("bench.")]:
            for attr, value in list(vars(mod).items()):
                if value is real:
                    monkeypatch.setattr(mod, attr, wrapper)

    for module, name in ((aggregate, "cells"), (aggregate, "model_summary"), (aggregate, "paper_tables"),
                         (pareto, "fronts"), (phases, "phase_table"), (energy_bounds, "qualities")):
        counted(module, name)
    frame = synthetic_frame(n_answers=300, seed=2)
    build_report(frame, tmp_path, run_info={})
    assert calls[("cells", id(frame))] == 1
    assert {key: n for key, n in calls.items() if n > 1} == {}
    assert {name for name, _ in calls} == {"cells", "model_summary", "paper_tables", "fronts", "phase_table",
                                           "qualities"}


def test_synthetic_frame_has_the_requested_size_and_failures():
    f = synthetic_frame(n_answers=1234, seed=5)
    assert len(f) == 1234
    failed = f["status"] != "ok"
    assert failed.any() and f.loc[failed, "energy_j"].isna().all()
    assert np.isfinite(f.loc[~failed, "decode_energy_j"]).all()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(synth, tmp_path):
    _, paths = synth
    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--screenshot={shot}", "--window-size=1280,6000",
                    paths.html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] == 6000 and img.shape[1] == 1280
    # The figures make the page colourful: a blank or text-only page has almost no saturated pixels.
    rgb = img[..., :3]
    saturated = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.3
    assert saturated.mean() > 0.005


@pytest.mark.conformance
@pytest.mark.skipif(not SITE.is_file(), reason=f"authors' data not present at {SITE}")
def test_cli_report_from_authors(tmp_path):
    import csv

    from click.testing import CliRunner

    from bench.cli import _register, cli

    _register()
    result = CliRunner().invoke(cli, ["report", "--from-authors", str(SITE), "--out", str(tmp_path),
                                      "--bandwidth-gbs", "4", "--no-plots"])
    assert result.exit_code == 0, result.output
    rows = {r["row"]: r for r in csv.DictReader((tmp_path / "report" / "tables" / "table5.csv").open())}
    assert float(rows["q8_0"]["avg"]) == pytest.approx(59.10, abs=0.005)
    assert float(rows["q3"]["gemma2_2b"]) == pytest.approx(255.79, abs=0.005)
    from bench.report.authors import load_authors_frame

    assert recompute_check(load_authors_frame(SITE), tmp_path / "report") == []


def test_cli_report_needs_a_source():
    from click.testing import CliRunner

    from bench.cli import _register, cli

    _register()
    result = CliRunner().invoke(cli, ["report"])
    assert result.exit_code != 0 and "RESULT_DIR or --from-authors" in result.output
