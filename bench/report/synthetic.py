"""A synthetic answers frame with the paper's shape (28 models x 5 datasets), for tests, benchmarks and demos.

Costs scale with model size the way a memory-bound device behaves (prefill and decode rates inversely with bytes);
numbers are plausible, not the paper's. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.traces import AnswerTrace
from bench.results import FRAME_COLUMNS
from bench.suite import PAPER_DATASETS

IDLE_W = 2.85
SAMPLE_HZ = 2.0
_ITEMS = {"commonsenseqa": 200, "bigbenchhard": 200, "gsm8k": 200, "truthfulqa": 200, "humaneval": 164}
_PROMPT_TOK = {"commonsenseqa": 90, "bigbenchhard": 210, "gsm8k": 120, "truthfulqa": 150, "humaneval": 170}
_GEN_TOK = {"commonsenseqa": 12, "bigbenchhard": 15, "gsm8k": 20, "truthfulqa": 18, "humaneval": 160}
_ACC = {"commonsenseqa": 0.4, "bigbenchhard": 0.25, "gsm8k": 0.06, "truthfulqa": 0.28, "humaneval": 0.5}


def synthetic_frame(n_answers: int = 26_251, seed: int = 0, models: list | None = None,
                    datasets: tuple[str, ...] = PAPER_DATASETS, failure_rate: float = 0.01) -> pd.DataFrame:
    """``n_answers`` rows spread over ``models`` (default: the paper's 28) x ``datasets``, ~1% timeouts."""
    from bench.catalog import paper_models

    rng = np.random.default_rng(seed)
    models = models if models is not None else paper_models()
    full = [(m, ds, i) for m in models for ds in datasets for i in range(_ITEMS.get(ds, 200))]
    keep = np.sort(rng.choice(len(full), size=min(n_answers, len(full)), replace=False))
    rows = [full[k] for k in keep]
    n = len(rows)
    size = np.array([m.size_bytes for m, _, _ in rows], dtype=float)
    ds_arr = np.array([ds for _, ds, _ in rows], dtype=object)
    ptok = np.array([_PROMPT_TOK.get(ds, 100) for ds in ds_arr]) * rng.uniform(0.7, 1.3, n)
    gtok = np.maximum(1, rng.lognormal(np.log([_GEN_TOK.get(ds, 20) for ds in ds_arr]), 0.5)).round()
    prefill_tps = 25e9 / size * rng.uniform(0.9, 1.1, n)
    decode_tps = 4e9 / size * rng.uniform(0.9, 1.1, n)
    load_s = rng.uniform(0.1, 0.5, n)
    prompt_eval_s = ptok / prefill_tps
    eval_s = gtok / decode_tps
    total_s = load_s + prompt_eval_s + eval_s
    ttft_s = load_s + prompt_eval_s + rng.uniform(0.0, 0.05, n)
    decode_s = total_s + rng.uniform(0.0, 0.05, n) - ttft_s
    prefill_w = rng.normal(3.9, 0.2, n)
    decode_w = rng.normal(3.3, 0.2, n)
    prefill_e = np.clip(prefill_w * ttft_s + rng.normal(0, 0.5, n), 0, None)
    decode_e = np.clip(decode_w * decode_s + rng.normal(0, 0.5, n), 0, None)
    # Error bounds as bench.energy forms them: the power step at each edge x the worst case of where it fell in the
    # sample interval holding the edge (up to half a period), plus a 1% gain error on the raw energy.
    h = rng.uniform(0.0, 0.5 / SAMPLE_HZ, (3, n))
    step = np.abs(decode_w - prefill_w)
    prefill_b = prefill_w * h[0] + step * h[1] + 0.01 * (prefill_e + IDLE_W * ttft_s)
    decode_b = step * h[1] + decode_w * h[2] + 0.01 * (decode_e + IDLE_W * decode_s)
    answer_b = prefill_w * h[0] + decode_w * h[2] + 0.01 * (prefill_e + decode_e + IDLE_W * (ttft_s + decode_s))
    acc_p = np.array([_ACC.get(ds, 0.3) for ds in ds_arr]) * rng.uniform(0.8, 1.2, n)
    status = np.where(rng.random(n) < failure_rate, "timeout", "ok")
    ok = status == "ok"
    t_send = np.cumsum(np.r_[0, total_s[:-1] + 1.0]) * 1e9 + 1e12
    frame = pd.DataFrame({
        "run_id": "synthetic", "model": [m.tag for m, _, _ in rows], "base": [m.base for m, _, _ in rows],
        "quant": [m.quant for m, _, _ in rows], "precision_group": [m.precision_group for m, _, _ in rows],
        "family": [m.family for m, _, _ in rows], "parameter_size": [m.parameter_size for m, _, _ in rows],
        "size_bytes": size,
        "dataset": ds_arr, "item_id": [f"{ds}-{i}" for _, ds, i in rows], "status": status,
        "reason": np.where(ok, None, "answer exceeded timeout"),
        "correct": np.where(ok, (rng.random(n) < acc_p).astype(float), np.nan), "score_mode": "paper",
        "energy_j": prefill_e + decode_e, "energy_raw_j": prefill_e + decode_e + IDLE_W * (ttft_s + decode_s),
        "idle_w": IDLE_W, "mean_w": IDLE_W + (prefill_e + decode_e) / (ttft_s + decode_s), "coverage": 1.0,
        "n_samples": np.floor((ttft_s + decode_s) * SAMPLE_HZ), "energy_bound_j": answer_b, "energy_reason": "",
        "clock_bound_ms": np.nan, "clock_flag": np.nan,  # one machine: no clock conversion
        "prefill_energy_j": prefill_e, "prefill_energy_raw_j": prefill_e + IDLE_W * ttft_s, "prefill_coverage": 1.0,
        "prefill_n_samples": np.floor(ttft_s * SAMPLE_HZ), "prefill_energy_bound_j": prefill_b,
        "prefill_energy_reason": "",
        "decode_energy_j": decode_e, "decode_energy_raw_j": decode_e + IDLE_W * decode_s, "decode_coverage": 1.0,
        "decode_n_samples": np.floor(decode_s * SAMPLE_HZ), "decode_energy_bound_j": decode_b,
        "decode_energy_reason": "",
        "eval_count": gtok, "prompt_eval_count": ptok.round(), "total_s": total_s, "load_s": load_s,
        "prompt_eval_s": prompt_eval_s, "eval_s": eval_s, "host_total_s": ttft_s + decode_s, "ttft_s": ttft_s,
        "decode_s": decode_s, "t_send_ns": t_send.astype("int64"),
        "t_last_ns": (t_send + (ttft_s + decode_s) * 1e9).astype("int64"),
    })
    # What the paper's window [last byte, last byte + total] would have held: mostly the next answer's power.
    excess = np.r_[(prefill_e + decode_e)[1:] / (ttft_s + decode_s)[1:], 0.0]
    frame["completion_energy_j"] = np.clip(excess * total_s, 0, None)
    frame["completion_coverage"] = 1.0
    frame["correct_paper"] = frame["correct"]
    flip = (ds_arr == "humaneval") & (rng.random(n) < 0.3)  # strict pass@1 disagrees with the paper's check
    frame["correct_strict"] = np.where(flip, 1.0 - frame["correct"], frame["correct"])
    measured = [c for c in frame.columns if c.endswith(("_j", "_w", "coverage", "_samples", "_count", "_s"))]
    frame.loc[~ok, measured] = np.nan
    return frame.reindex(columns=list(FRAME_COLUMNS))  # what it does not model (context, device...) is NaN


def synthetic_trace(seed: int = 0, prefill_s: float = 6.0, decode_s: float = 4.0) -> AnswerTrace:
    """A 2 Hz power trace around one answer: idle, a prefill plateau, a decode plateau, idle again."""
    rng = np.random.default_rng(seed)
    t_send = 10_000_000_000
    t_first = t_send + int(prefill_s * 1e9)
    t_last = t_first + int(decode_s * 1e9)
    times = np.arange(t_send - 3_000_000_000, t_last + 3_000_000_000, int(1e9 / SAMPLE_HZ))
    power = np.where(times < t_send, IDLE_W, np.where(times < t_first, 6.7, np.where(times < t_last, 6.1, IDLE_W)))
    power = power + rng.normal(0, 0.05, len(times))
    return AnswerTrace(label="synthetic answer", samples=tuple(zip(times.tolist(), power.tolist())),
                       t_send_ns=t_send, t_last_ns=t_last, t_first_ns=t_first, idle_w=IDLE_W)
