"""Per-window error bounds against a known waveform: how often the bound is needed, how tight it is.

The sweep of tests/test_phase_bounds.py (idle 2.85 W, prefill 4.1 W, decode 6.3 W; 240 answers, prefills from
10 ms to 2 s, edges at every phase of the sample grid), at 10 Hz and 50 Hz, with an exact meter and one that errs
(0.2% gain, 5 mW, 1 ms late stamps) and declares a little more. Per configuration: covered and empty windows, how
many windows are truly off by more than the report's 5% (each one must be flagged), how many are flagged, and the
largest true error as a share of its bound (1.0 = the bound is attained); it stops with an AssertionError if any
bound is exceeded or any window over 5% is not flagged. Then, per cell, J per prompt token and J
per output token: true error, stated bound, flag. Run: .venv/bin/python tests/benchmarks/bench_energy_bounds.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.report.aggregate import cells  # noqa: E402
from bench.report.phases import PHASE_VALUES, phase_table  # noqa: E402
from test_phase_bounds import EXACT, IMPERFECT, checked, run  # noqa: E402


def main() -> None:
    print(f"{'meter':9s} {'Hz':>4s} {'windows':>7s} {'empty':>5s} {'>5% off':>7s} {'flagged':>7s} {'max err/bound':>13s}")
    cell_lines = []
    for meter, name in ((EXACT, "exact"), (IMPERFECT, "declared")):
        for rate in (10.0, 50.0):
            with tempfile.TemporaryDirectory() as tmp:
                rows, frame = run(Path(tmp), rate, meter)
            st = checked(rows)  # raises if a bound is exceeded or a window over 5% is left unflagged
            print(f"{name:9s} {rate:4.0f} {st['windows']:7d} {st['empty']:5d} {st['over_tol']:7d} {st['flagged']:7d} "
                  f"{st['max_err_to_bound']:13.3f}")
            table = phase_table(cells(frame)).set_index("model")
            for model, r in table.iterrows():
                length = model.split("-")[1]
                for phase, metric in PHASE_VALUES.items():
                    kept = [w for w in rows if w["cell"] == length and w["phase"] == phase and w["n"] > 0]
                    true = float(np.mean([w["true_j"] / w["tokens"] for w in kept]))
                    cell_lines.append(f"{name:9s} {model:22s} {metric:23s} {abs(r[metric] - true) / true:8.2%} "
                                      f"{r[f'{metric}_bound'] / true:8.2%} {'flagged' if r[f'{phase}_flagged'] else 'ok'}")
    print(f"\n{'meter':9s} {'cell':22s} {'value':23s} {'true err':>8s} {'bound':>8s} flag")
    print("\n".join(cell_lines))


if __name__ == "__main__":
    main()
