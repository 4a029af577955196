#!/usr/bin/env python3
"""Benchmark: the nightly drift rule under real llama.cpp inference. Target: no false alarm on unchanged nights,
every +10% power and +20% latency night detected (exit 1).

A baseline night, then ``--unchanged`` nights of the same subset (SmolLM2-135M through llama.cpp in-process, the
sim meter in ``busy`` mode: load power while an answer runs, so energy follows the real answer time), then
``--detect`` nights with every power sample 10% higher and ``--detect`` nights whose answers take 20% longer (the
real backend, each answer stretched by sleeping; the meter sees the longer answer too). Prints each night's exit
code, its main changes and the machine's conditions, then the false-alarm and detection rates.

The machine-busy check runs as a cron night's would (``--busy-share`` 0.10 by default: other processes above a
tenth of the machine before the run, or during over a quarter of the answers, make the night exit 2; disturbed
answers are left out of the comparison), waiting up to ``--wait-quiet-s`` for a busy machine; a night still
found busy is exit 2, counted apart and run again (up to 3x the nights asked for). The nightly runs at a raised
priority on the Pi (the unit has ``Nice=-5``); run this the same way on a shared machine. Exit 1 on a false
alarm or a missed change; too few valid nights is reported as INCONCLUSIVE (exit 0: a busy machine is not a
failure of the rule, and the nights say so).

Run with ``make bench`` or ``.venv/bin/python tests/benchmarks/bench_nightly_real.py [--unchanged 10 --detect 1]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUSY_METER = "{{ mode = \"busy\", idle_w = {idle}, load_w = {load}, rate_hz = 50, seed = 42, noise_w = 0.02 }}"
DATASETS = ("commonsenseqa", "bigbenchhard", "gsm8k", "truthfulqa")
SHOWN = ("latency_s", "tokens_per_s", "energy_per_answer_j", "power_w")
MAX_TRIES = 3  # a busy machine makes a night exit 2; try again, up to 3x the nights wanted


class Slowed:
    """The real backend with every answer stretched by ``factor``: a stand-in for a system that became slower.
    The extra time really passes (a sleep before the last byte), so host stamps and the meter both see it."""

    def __init__(self, inner, factor: float) -> None:
        self.inner, self.factor, self.name = inner, factor, inner.name

    def describe(self):
        return self.inner.describe()

    def prepare(self, model):
        return self.inner.prepare(model)

    def close(self) -> None:
        self.inner.close()

    def generate(self, model, prompt, options, timeout_s):
        c = self.inner.generate(model, prompt, options, timeout_s)
        extra = int((c.t_last_token_ns - c.t_send_ns) * (self.factor - 1.0))
        time.sleep(extra / 1e9)
        return dataclasses.replace(c, t_last_token_ns=c.t_last_token_ns + extra,
                                   eval_duration_ns=(c.eval_duration_ns or 0) + extra,
                                   total_duration_ns=(c.total_duration_ns or 0) + extra)


def spec_file(tmp: Path, name: str, power: float) -> Path:
    from runner_support import demo_variant

    meter = BUSY_METER.format(idle=round(2.85 * power, 4), load=round(6.9 * power, 4))
    return demo_variant(tmp, limit=3, idle_s=2.0, num_predict=32, datasets=DATASETS, meter_options=meter, name=name)


def night(i: int, kind: str, opts, backend):
    """One night through the nightly's own entry point, printed with its main changes and the machine's state."""
    from bench.nightly.night import run_night

    wall, cpu = time.perf_counter(), time.process_time()
    outcome = run_night(opts, backend=backend)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    moved = {j.metric: j for j in outcome.judgements}
    shown = "  ".join(f"{m} {moved[m].change * 100:+5.1f}%{'*' if moved[m].drifted else ' '}"
                      for m in SHOWN if m in moved)
    cond = outcome.conditions.describe() if outcome.conditions else ""
    print(f"night {i:2d} {kind:12s} exit {outcome.exit_code}  wall {wall:5.1f} s cpu {cpu:5.1f} s  {shown}  {cond}",
          flush=True)
    if outcome.exit_code != 0:
        print(f"          {outcome.reason}", flush=True)
    return outcome


def main() -> int:
    from bench.nightly.machine import DEFAULT_BUSY_SHARE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unchanged", type=int, default=10, help="unchanged nights after the baseline night")
    ap.add_argument("--detect", type=int, default=1, help="nights of each injected change")
    ap.add_argument("--busy-share", type=float, default=DEFAULT_BUSY_SHARE)
    ap.add_argument("--wait-quiet-s", type=float, default=600.0)
    ap.add_argument("--keep", type=Path, help="keep the nights' root here (default: a temporary directory)")
    args = ap.parse_args()

    from bench.nightly import baseline
    from bench.nightly.night import NightOptions
    from bench.backends import backend_for
    from bench.spec import load_spec

    with tempfile.TemporaryDirectory(prefix="bench-nightly-real-") as tmp_name:
        tmp = Path(tmp_name)
        root = args.keep or tmp / "root"
        os.environ.setdefault("BENCH_SIGNING_KEY", str(tmp / "signing_key"))
        same, hot = spec_file(tmp, "real-night", 1.0), spec_file(tmp, "real-night-hot", 1.1)
        opts = NightOptions(str(same), root, busy_share=args.busy_share, wait_quiet_s=args.wait_quiet_s)
        plan = [("unchanged", opts, None, args.unchanged),
                ("+10% power", dataclasses.replace(opts, spec=str(hot)), None, args.detect),
                ("+20% latency", opts, 1.2, args.detect)]
        codes: dict[str, list[int]] = {}
        count = 0

        def until_valid(kind, night_opts, slow, wanted):
            """Nights of one kind until ``wanted`` are valid (not exit 2), at most MAX_TRIES x as many."""
            nonlocal count
            got = codes.setdefault(kind, [])
            while sum(c != 2 for c in got) < wanted and len(got) < MAX_TRIES * wanted:
                count += 1
                backend = Slowed(backend_for(load_spec(str(same))), slow) if slow else None
                got.append(night(count, kind, night_opts, backend).exit_code)
                if backend is not None:
                    backend.close()

        until_valid("baseline", opts, None, 1)  # the first valid night is the baseline
        if codes["baseline"][-1] != 0:
            print("no valid baseline night: INCONCLUSIVE (machine busy)")
            return 0
        print(f"          {baseline.choose(root / 'history.db', 'latest')}", flush=True)
        for kind, night_opts, slow, wanted in plan:
            until_valid(kind, night_opts, slow, wanted)

    unchanged = [c for c in codes.get("unchanged", []) if c != 2]
    false_alarms = sum(c == 1 for c in unchanged)
    detected = {k: (sum(c == 1 for c in codes.get(k, [])), sum(c != 2 for c in codes.get(k, [])))
                for k in ("+10% power", "+20% latency")}
    print(f"false alarms: {false_alarms} of {len(unchanged)} unchanged nights compared "
          f"({len(codes.get('unchanged', [])) - len(unchanged)} more were exit 2)")
    for kind, (hit, n) in detected.items():
        print(f"detected {kind}: {hit} of {n} valid nights")
    missed = false_alarms > 0 or any(hit < n for hit, n in detected.values())
    enough = len(unchanged) >= args.unchanged and all(n >= args.detect for _, n in detected.values())
    verdict = "MISSED" if missed else ("OK" if enough else "INCONCLUSIVE (too few valid nights: machine busy)")
    print(f"target (no false alarm, every change detected): {verdict}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
