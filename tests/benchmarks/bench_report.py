#!/usr/bin/env python3
"""Benchmark: report generation for a synthetic run of 26,251 answers (the paper's size). Target: <= 10 s.

Run with ``make bench`` or ``.venv/bin/python tests/benchmarks/bench_report.py [--answers N] [--repeat K]``.
Prints wall and CPU seconds per stage and the 1-minute load average (a loaded host inflates wall time).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TARGET_S = 10.0


def timed(label: str, fn, results: dict):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    results[label] = (time.perf_counter() - wall, time.process_time() - cpu)
    return value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=26_251)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    from bench.report import aggregate, build_report, recompute_check
    from bench.report.synthetic import synthetic_frame, synthetic_trace

    best_total = float("inf")
    for i in range(args.repeat):
        r: dict[str, tuple[float, float]] = {}
        frame = timed("synthetic frame (not part of the report)", lambda: synthetic_frame(args.answers, seed=i), r)
        with tempfile.TemporaryDirectory() as tmp:
            timed("cells (aggregate)", lambda: aggregate.cells(frame), r)
            timed("build_report, plots=False", lambda: build_report(
                frame, Path(tmp) / "numbers-only", run_info={"name": "bench"}, plots=False), r)
            paths = timed("build_report (full: tables, plots PNG+SVG, HTML, MD)", lambda: build_report(
                frame, Path(tmp) / "full", run_info={"name": "bench", "memory_bandwidth_gb_s": 4.0},
                traces=[synthetic_trace()]), r)
            problems = timed("recompute_check", lambda: recompute_check(frame, paths.report_dir), r)
            size_kb = paths.html.stat().st_size / 1024
        print(f"run {i + 1}: {len(frame)} answers, {frame['model'].nunique()} models, html {size_kb:.0f} KiB, "
              f"recompute problems: {len(problems)}")
        for label, (wall, cpu) in r.items():
            print(f"  {label:58s} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
        best_total = min(best_total, r["build_report (full: tables, plots PNG+SVG, HTML, MD)"][0])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    verdict = "OK" if best_total <= TARGET_S else "OVER TARGET"
    print(f"full report: best wall {best_total:.2f} s (target <= {TARGET_S:.0f} s): {verdict}; "
          f"load average {load:.2f} on {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
