"""Per-phase energy end to end: a simulated meter with a known waveform (3 W while the prompt is processed, 7 W
while tokens are generated), the runner's windowing (one `windows` request over the daemon's socket), the results
store and the report's phase metrics. Both phase energies must come back within 1%, raw and idle-subtracted, each
with an error bound that covers its true error. (The 10/50 Hz sweep of short windows is tests/test_phase_bounds.py.)"""

from __future__ import annotations

import time

import pytest

from bench import results
from bench.meter.client import connect
from bench.meter.local import spawn_daemon
from bench.records import Completion
from bench.report.aggregate import cells
from bench.runner import meter_windows

S = 1_000_000_000
IDLE_W = 2.0


def test_prefill_and_decode_energy_recovered_within_one_percent(tmp_path):
    sock = str(tmp_path / "m.sock")
    opts = {"mode": "schedule", "schedule": "2:3.0,3:7.0", "rate_hz": 200, "noise_w": 0.02, "seed": 3}
    with spawn_daemon("sim", opts, sock):
        meter = connect(sock)
        origin = meter.info()["origin_ns"]
        # request sent 0.5 s in, first token at the step (2 s), last byte at 4.5 s
        c = Completion(text="<ANS>7</ANS>", t_send_ns=origin + S // 2, t_first_token_ns=origin + 2 * S,
                       t_last_token_ns=origin + 9 * S // 2, prompt_eval_count=30, eval_count=50,
                       eval_duration_ns=5 * S // 2, prompt_eval_duration_ns=3 * S // 2, total_duration_ns=4 * S)
        time.sleep(max(0.0, (c.t_last_token_ns - time.monotonic_ns()) / 1e9))
        windows = meter_windows(meter, c)
        meter.close()
    assert windows["prefill"].energy_j == pytest.approx(1.5 * 3.0, rel=0.01)
    assert windows["decode"].energy_j == pytest.approx(2.5 * 7.0, rel=0.01)
    assert windows["answer"].energy_j == pytest.approx(4.5 + 17.5, rel=0.01)
    assert min(w.coverage for w in windows.values()) == 1.0
    assert windows["prefill"].n_samples >= 290 and windows["decode"].n_samples >= 490

    db = results.connect(tmp_path / "results.db")
    run, _ = results.open_run(db, "phase-test", "0" * 64, "")
    results.record_answer(db, results.AnswerRecord(
        run_id=run.run_id, model="qwen2.5:0.5b-instruct-q4_0", dataset="gsm8k", item_id="q", item_sha256="0" * 64,
        prompt_sha256="1" * 64, status="ok", completion=c, idle_w=IDLE_W, windows=windows))
    db.close()
    frame = results.answers_frame(tmp_path / "results.db")
    row = frame.iloc[0]
    assert row["prefill_energy_j"] == pytest.approx(1.5 * (3.0 - IDLE_W), rel=0.01)
    assert row["decode_energy_j"] == pytest.approx(2.5 * (7.0 - IDLE_W), rel=0.01)
    # every stored window carries its error bound, and the bound covers the true error (the edges are steps here;
    # the sim's 0.02 W noise is a meter error it does not declare: allow 4 sd of its integral on top)
    for pre, truth in (("", 4.5 + 17.5), ("prefill_", 4.5), ("decode_", 17.5)):
        noise_j = 4 * opts["noise_w"] * row[f"{pre}n_samples"] ** 0.5 / opts["rate_hz"]
        assert abs(row[f"{pre}energy_raw_j"] - truth) <= row[f"{pre}energy_bound_j"] + noise_j
        assert row[f"{pre}energy_bound_j"] < 0.01 * truth and row[f"{pre}energy_reason"] == ""
    cell = cells(frame).iloc[0]
    assert cell["j_per_prompt_token"] == pytest.approx(1.5 / 30, rel=0.01)
    assert cell["j_per_gen_token_decode"] == pytest.approx(12.5 / 50, rel=0.01)
    assert cell["prefill_energy_share"] == pytest.approx(1.5 / 14.0, rel=0.02)
    # the paper's J/token charges the prompt to the generated tokens: (1.5 + 12.5) J / 50 tokens
    assert cell["j_per_token"] == pytest.approx(14.0 / 50, rel=0.01)
