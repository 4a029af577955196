#!/usr/bin/env python3
"""Benchmark: the CPU cost of the per-answer machine-conditions reading (`bench.conditions`). Target: <= 0.5 ms
of CPU per answer, i.e. under 0.05% of one core for a 1-second answer (the runner and the meter daemon together
must stay under 0.5% while an answer runs).

Run with ``make bench`` or ``.venv/bin/python tests/benchmarks/bench_conditions.py [--answers N]``. CPU time is
process time, so a loaded machine does not inflate it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TARGET_MS = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from bench import conditions

    best = float("inf")
    for _ in range(args.repeat):
        cpu = time.process_time()
        for _ in range(args.answers):  # what the runner does around one answer
            conditions.between(conditions.read_counters(), conditions.read_counters())
        best = min(best, (time.process_time() - cpu) / args.answers * 1e3)
    verdict = "OK" if best <= TARGET_MS else "OVER TARGET"
    print(f"conditions reading: {best * 1e3:.1f} us CPU per answer (best of {args.repeat} x {args.answers}; "
          f"target <= {TARGET_MS * 1e3:.0f} us): {verdict}; {best / 10:.4f}% of one core for a 1 s answer; "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0 if best <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
