"""The nightly's parts without a run: the drift rule (night-to-night spread, widened intervals, idle power), the
history DB's migrations, the trend plot's content, one-line failure reasons, and the per-answer CPU reading."""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench import conditions
from bench.errors import ResultsError
from bench.nightly import history, trend
from bench.nightly.drift import (
    BY_NAME, METRICS, MIN_LEARN_NIGHTS, PRIOR_NIGHTS, Z, NightValues, Spread, judge, learn_spread, paired_bootstrap,
    widen,
)
from bench.nightly.failures import one_line, reason_for
from bench.nightly.machine import NightConditions
from bench.nightly.outcome import NightFailed
from bench.records import IdleBaseline

N_ITEMS = 30
RNG = np.random.default_rng(20250403)
ITEM_LATENCY = RNG.uniform(0.5, 3.0, N_ITEMS)    # per-item base values: items differ far more than nights do
ITEM_CORRECT = (RNG.random(N_ITEMS) < 0.5).astype(float)


def night(shift: float = 0.0, *, power: float = 1.0, latency: float = 1.0, wrong: int = 0, noise: float = 0.01,
          idle_w: float = 2.85, rng=RNG) -> NightValues:
    """One synthetic night: a whole-night shift (log scale) on top of small per-answer noise."""
    jitter = rng.normal(0.0, noise, N_ITEMS)
    lat = ITEM_LATENCY * latency * np.exp(shift + jitter)
    watts = 6.9 * power * np.exp(shift / 4 + rng.normal(0.0, noise / 4, N_ITEMS))
    correct = ITEM_CORRECT.copy()
    correct[np.flatnonzero(correct)[:wrong]] = 0.0
    tokens = np.full(N_ITEMS, 20.0)
    frame = pd.DataFrame({"accuracy": correct, "energy_j": lat * (watts - 2.85), "power_w": watts, "latency_s": lat,
                          "tokens_per_s": tokens / lat, "j_per_token": lat * (watts - 2.85) / tokens},
                         index=pd.MultiIndex.from_tuples([("m", "ds", str(i)) for i in range(N_ITEMS)],
                                                         names=["model", "dataset", "item_id"]))
    idle = IdleBaseline(mean_w=idle_w, sd_w=0.02, n_samples=120 * 50, start_ns=0, end_ns=120 * 10**9, source="measured")
    return NightValues(frame, idle)


def spreads(base: NightValues | None = None, nights: list[NightValues] = ()) -> dict[str, Spread]:
    """Spreads learned as the nightly learns them: from the changes judged on accepted nights against ``base``."""
    defaults = {m.name: learn_spread(m, []) for m in METRICS}
    changes = [{j.metric: j.change for j in judge(base, n, defaults)} for n in nights]
    return {m.name: learn_spread(m, [c[m.name] for c in changes]) for m in METRICS}


def drifted(judgements) -> set[str]:
    return {j.metric for j in judgements if j.drifted}


# -- the drift rule -------------------------------------------------------------------------------------------

def test_spread_is_the_default_until_enough_nights_then_a_robust_estimate_pooled_with_it():
    energy = BY_NAME["energy_per_answer_j"]
    s0 = energy.default_spread
    assert learn_spread(energy, [0.0] * (MIN_LEARN_NIGHTS - 1)) == Spread(s0, 0)
    logs = np.array([0.0, 0.01, -0.01, 0.02, -0.02])           # MAD 0.01 -> sd 0.014826 (log of 1 + change)

    def pooled(k: int, learned: float) -> float:
        return math.sqrt((k * learned**2 + PRIOR_NIGHTS * s0**2) / (k + PRIOR_NIGHTS))

    learned = learn_spread(energy, list(np.expm1(logs)))
    assert learned.nights == 5 and learned.value == pytest.approx(pooled(5, 0.014826), rel=1e-4)
    many = learn_spread(energy, list(np.expm1(np.tile(logs, 20))))  # 100 nights: the learned value rules
    assert many.value == pytest.approx(pooled(100, 0.014826), rel=1e-4) and many.value < 0.4 * s0
    with_outlier = learn_spread(energy, list(np.expm1(np.r_[np.tile(logs, 20), 0.5])))  # one odd night
    assert with_outlier.value == pytest.approx(many.value, rel=0.05)
    accuracy = learn_spread(BY_NAME["accuracy"], [0.0] * 95)     # deterministic answers: spread tends to 0
    assert accuracy.value == pytest.approx(BY_NAME["accuracy"].default_spread * math.sqrt(5 / 100))


def test_widen_adds_the_night_to_night_spread_in_quadrature():
    assert widen(0.0, -0.02, 0.02, 0.0, "relative") == pytest.approx((-0.02, 0.02), abs=5e-4)
    low, high = widen(0.0, 0.0, 0.0, 0.05, "relative")
    assert math.log1p(high) == pytest.approx(Z * math.sqrt(2) * 0.05)
    assert math.log1p(low) == pytest.approx(-math.log1p(high))
    assert widen(0.1, 0.05, 0.15, 0.0, "absolute") == pytest.approx((0.05, 0.15))


def test_whole_night_shifts_are_false_alarms_for_the_within_night_interval_but_not_for_the_rule():
    history_nights = [night(shift) for shift in (-0.06, -0.04, -0.02, 0.0, 0.02, 0.04, 0.06, 0.08)]
    base, tonight = night(0.0), night(0.12)   # latency +13%: as far off as unchanged nights were seen to be
    within_only = {m.name: Spread(0.0, 8) for m in METRICS}
    assert "latency_s" in drifted(judge(base, tonight, within_only))  # the within-night rule's false alarm
    learned = spreads(base, history_nights)
    assert learned["latency_s"].nights == 8 and 0.04 < learned["latency_s"].value < 0.07
    assert drifted(judge(base, tonight, learned)) == set()


def test_real_changes_are_still_detected_with_the_learned_spread():
    base = night()
    learned = spreads(base, [night(shift) for shift in (-0.03, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.03)])
    slow = drifted(judge(base, night(latency=1.2), learned))
    assert {"latency_s", "tokens_per_s"} <= slow and "power_w" not in slow and "accuracy" not in slow
    hot_night = judge(base, night(power=1.1, idle_w=2.85 * 1.1), learned)
    hot = drifted(hot_night)
    assert {"power_w", "idle_w"} <= hot and "latency_s" not in hot
    energy = next(j for j in hot_night if j.metric == "energy_per_answer_j")  # +17%: a drift exactly when it
    assert energy.drifted == (math.log1p(energy.change) > math.log1p(energy.detectable))  # clears what it states
    worse = drifted(judge(base, night(wrong=6), learned))  # 6 of 30 answers now wrong: -0.2
    assert worse == {"accuracy"}
    assert drifted(judge(base, night(wrong=1), learned)) == set()  # one answer is within tolerance


def test_idle_power_gets_a_real_interval_and_units_are_stated():
    base, tonight = night(idle_w=2.85), night(idle_w=2.87)
    idle = next(j for j in judge(base, tonight, spreads()) if j.metric == "idle_w")
    assert idle.ci_low < idle.change < idle.ci_high and idle.ci_high - idle.ci_low > 0.005
    assert not idle.drifted
    text = idle.describe()
    assert "W" in text and "tolerance ±5%" in text and "(default)" in text
    acc = next(j for j in judge(base, night(wrong=6), spreads()) if j.metric == "accuracy")
    assert "tolerance ±0.1 absolute" in acc.describe()


def test_each_judgement_states_the_smallest_change_it_can_detect_and_keeps_to_it():
    base = night()
    wide = {m.name: Spread(0.08, 10) for m in METRICS}     # the kind of spread a noisy machine teaches
    latency = next(j for j in judge(base, night(), wide) if j.metric == "latency_s")
    between = math.expm1(Z * math.sqrt(2) * 0.08)          # +35.4%: the within-night part adds little to it
    assert between < latency.detectable < between * 1.02
    assert f"detects ±{latency.detectable * 100:.1f}%" in latency.describe()
    bigger = 1.0 + latency.detectable * 1.1
    assert "latency_s" in drifted(judge(base, night(latency=bigger), wide))
    assert "latency_s" not in drifted(judge(base, night(latency=1.0 + latency.detectable * 0.9), wide))
    narrow = {m.name: Spread(0.001, 10) for m in METRICS}  # then the tolerance is what limits it
    assert next(j for j in judge(base, night(), narrow) if j.metric == "latency_s").detectable == 0.10


def test_paired_bootstrap_rule():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 5, 40)
    same = base * rng.normal(1.0, 0.01, 40)
    point, low, high = paired_bootstrap(base, same, "relative")
    assert low < 0 < high and abs(point) < 0.01
    point, low, high = paired_bootstrap(base, base * 1.10, "relative")
    assert point == pytest.approx(0.10) and low > 0.09
    point, low, high = paired_bootstrap(np.zeros(50), np.r_[np.ones(20), np.zeros(30)], "absolute")
    assert point == pytest.approx(0.4) and low > 0.2


# -- history DB -----------------------------------------------------------------------------------------------

# The schema bench/nightly.py created before its history had numbered migrations (commit dd40f86).
LEGACY_SCHEMA = """
CREATE TABLE nights (id INTEGER PRIMARY KEY, started_utc TEXT NOT NULL, folder TEXT NOT NULL, spec_sha256 TEXT,
    signature_sha256 TEXT, exit_code INTEGER NOT NULL, summary TEXT NOT NULL) STRICT;
CREATE TABLE night_metrics (night_id INTEGER NOT NULL REFERENCES nights(id), metric TEXT NOT NULL, value REAL,
    n INTEGER NOT NULL, PRIMARY KEY (night_id, metric)) STRICT;
CREATE TABLE baseline (id INTEGER PRIMARY KEY CHECK (id = 1), night_id INTEGER NOT NULL REFERENCES nights(id),
    folder TEXT NOT NULL, signature_sha256 TEXT NOT NULL, chosen_utc TEXT NOT NULL) STRICT;
INSERT INTO nights VALUES (1, '2026-01-01T02:30:00+00:00', '/r/n1', 'ab', 'cd', 0, 'n1: ok');
INSERT INTO night_metrics VALUES (1, 'latency_s', 1.5, 10);
INSERT INTO baseline VALUES (1, 1, '/r/n1', 'cd', '2026-01-02T00:00:00+00:00');
"""


def test_a_history_from_before_migrations_is_adopted_and_its_baseline_kept_unpinned(tmp_path):
    path = tmp_path / "history.db"
    legacy = sqlite3.connect(path)
    legacy.executescript(LEGACY_SCHEMA)
    legacy.close()
    db = history.connect(path)
    try:
        [n] = history.nights(db)
        assert (n.id, n.exit_code, n.reason, n.summary) == (1, 0, "", "n1: ok")
        base = history.baseline(db, tmp_path)
        assert (base.night_id, str(base.folder), base.signers) == (1, "/r/n1", None)
        kept = [tuple(r) for r in db.execute("SELECT night_id, metric, value FROM night_metrics")]
        assert kept == [(1, "latency_s", 1.5)]
        applied = [r[0] for r in db.execute("SELECT name FROM _bench_migrations ORDER BY name")]
        assert applied == [name for name, _ in history.MIGRATIONS]
    finally:
        db.close()


def test_a_history_from_a_newer_toolkit_is_refused_in_one_line(tmp_path):
    path = tmp_path / "history.db"
    history.connect(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO _bench_migrations VALUES ('m999_future', 'x')")
    db.commit()
    db.close()
    with pytest.raises(ResultsError, match=r"m999_future.*newer version") as err:
        history.connect(path)
    assert "\n" not in str(err.value)


def test_night_paths_are_stored_relative_to_the_root_so_it_can_move(tmp_path):
    assert history.stored_path(tmp_path / "20260101T000000Z", tmp_path) == "20260101T000000Z"
    elsewhere = tmp_path.parent / "other-disk" / "n1"
    assert history.stored_path(elsewhere, tmp_path) == str(elsewhere.resolve())
    assert history.resolve("n1", tmp_path / "moved") == tmp_path / "moved" / "n1"


# -- trend plot -----------------------------------------------------------------------------------------------

def _record(db, code: int, base: int | None = None, changes: dict[str, float] | None = None,
            drifted_metrics: tuple[str, ...] = ()) -> int:
    from bench.nightly.drift import Judgement

    judgements = [Judgement(m, 1.0, 1.0 + c, c, c - 0.05, c + 0.05, 0.01, 0, BY_NAME[m].tolerance, 10,
                            m in drifted_metrics) for m, c in (changes or {}).items()]
    return history.record(db, history.NightRecord("2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00",
                                                  "n", code, "line", "why", baseline_night_id=base,
                                                  judgements=judgements, conditions=NightConditions(cpus=4)))


def test_trend_shows_change_from_the_baseline_drift_and_failed_nights(tmp_path):
    db = history.connect(tmp_path / "history.db")
    try:
        first = _record(db, 0)
        second = _record(db, 0, first, {"latency_s": 0.002, "accuracy": 0.0})
        failed = _record(db, 2, first)                 # e.g. a busy night: marked, no point
        drift = _record(db, 1, first, {"latency_s": 0.25, "accuracy": -0.2}, ("latency_s", "accuracy"))
        data = trend.trend_data(db)
    finally:
        db.close()
    assert data.baseline_nights == (first,) and data.failed_nights == (failed,)
    latency = next(p for p in data.panels if p.metric.name == "latency_s")
    assert latency.nights == (first, second, drift)
    assert latency.change_pct == pytest.approx((0.0, 0.2, 25.0))
    assert latency.drifted == (False, False, True) and latency.tolerance_pct == pytest.approx(10.0)
    accuracy = next(p for p in data.panels if p.metric.name == "accuracy")
    assert accuracy.change_pct == pytest.approx((0.0, 0.0, -20.0))  # points, not percent

    fig = trend.figure(data)
    fig.canvas.draw()
    ax = fig.axes[[p.metric.name for p in data.panels].index("latency_s")]
    ticks = [t for t in ax.get_xticks() if first <= t <= drift]
    assert ticks and all(float(t).is_integer() for t in ticks)       # whole nights only
    assert ax.get_ylim()[1] >= 2 * latency.tolerance_pct            # a 0.2% change does not look like a jump
    assert any(abs(line.get_xdata()[0] - failed) < 1e-9 for line in ax.get_lines()
               if line.get_linestyle() == ":")                      # the failed night is marked


# -- one-line reasons -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/results.db"), "disk full: /x/results.db: No space"),
    (OSError(errno.EROFS, "Read-only file system", "/x"), "disk read-only: /x: Read-only file system"),
    (sqlite3.OperationalError("database or disk is full"), "disk full: SQLite"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "disk read-only: SQLite"),
    (sqlite3.DatabaseError("file is not a database"), "database error: DatabaseError: file is not a database"),
    (KeyError("answers"), "internal error: KeyError"),
])
def test_failures_get_a_reason_naming_the_cause(tmp_path, exc, expected):
    assert reason_for(exc, tmp_path).startswith(expected)


def test_a_reason_is_always_one_bounded_line():
    text = one_line("first\nsecond\r\n  third " + "x" * 5000)
    assert "\n" not in text and text.startswith("first second third") and len(text) <= 1200


# -- per-answer CPU reading -----------------------------------------------------------------------------------

def test_cpu_reading_separates_this_process_from_others():
    start = conditions.read_counters()
    t = os.times()
    while os.times().user + os.times().system - t.user - t.system < 0.3:
        pass  # this process's own work
    hog = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4:\n    pass"
    subprocess.run([sys.executable, "-c", hog], check=True)  # another process's work
    got = conditions.between(start, conditions.read_counters())
    assert got.own_cpu_s >= 0.29
    assert got.other_cpu_s >= 0.35  # the child's 0.4 s (plus whatever the rest of the machine did)
    assert got.cpus == os.cpu_count() and got.load1 is not None
    assert 0 < got.other_share <= 1.0


# -- the machine ----------------------------------------------------------------------------------------------

def test_a_busy_machine_is_waited_for_then_judged_by_the_last_quiet_check():
    from bench.nightly import machine

    slept = []
    shares = iter([0.9, 0.6, 0.1])
    cond = machine.wait_until_quiet(NightConditions(cpus=4), 3.0, 0.25, 100.0, sleep=slept.append,
                                    measure=lambda: next(shares))
    assert (cond.quiet_other_share, cond.quiet_waited_s, slept) == (0.1, 60.0, [30.0, 30.0])
    assert machine.busy_before(cond, 0.25, 3.0) is None and "after waiting 60 s" in cond.describe()
    shares = iter([0.9] * 10)
    cond = machine.wait_until_quiet(NightConditions(cpus=4, load1_before=3.5), 3.0, 0.25, 45.0, sleep=lambda s: None,
                                    measure=lambda: next(shares))
    assert cond.quiet_waited_s == 45.0
    assert machine.busy_before(cond, 0.25, 3.0).startswith("machine busy: other processes used 90% of the 4 CPUs")


def test_the_during_night_check_counts_disturbed_answers_where_the_reading_separates_the_system_under_test():
    from bench.nightly import machine

    busy = NightConditions(cpus=2, answers=12, answers_disturbed=4)  # a third disturbed: more than a quarter
    reason = machine.busy_during(busy, 0.10, "llamacpp")
    assert reason.startswith("machine busy: 4 of 12 answers ran while other processes used more than 10% of the 2")
    assert machine.busy_during(busy, 0.10, "ollama") is None  # its server's work is in the reading
    assert machine.busy_during(NightConditions(cpus=2, answers=12, answers_disturbed=3), 0.10, "llamacpp") is None


def test_disturbed_answers_are_left_out_of_the_comparison():
    base, slow = night(), night(latency=1.3)
    keys = list(base.answers.index)
    everywhere = frozenset(keys)
    assert "latency_s" in drifted(judge(base, slow, spreads()))
    partly = NightValues(slow.answers, slow.idle, frozenset(keys[:10]))
    [lat] = [j for j in judge(base, partly, spreads()) if j.metric == "latency_s"]
    assert lat.n == N_ITEMS - 10                                    # judged on the undisturbed rest
    with pytest.raises(NightFailed, match="machine busy: all 30 answers"):
        judge(NightValues(base.answers, base.idle, everywhere), slow, spreads())


# Raspberry Pi documentation, "vcgencmd get_throttled": bit 0 under-voltage detected, 1 ARM frequency capped,
# 2 currently throttled, 3 soft temperature limit active; bits 16-19 the same conditions "has occurred" since boot.
@pytest.mark.parametrize("before, after, during", [
    ("0x0", "0x0", False),
    ("0x50000", "0x50000", False),   # throttled and under-voltage earlier since boot, nothing now: not this answer
    ("0x0", "0x4", True),            # currently throttled at the end
    ("0x0", "0x40000", True),        # throttling occurred during the answer and stopped
    ("0x1", "0x10001", True),        # under-voltage now
    (None, None, False),             # no vcgencmd (not a Pi)
    ("garbage", "0x0", False),
])
def test_an_answer_counts_as_throttled_only_for_conditions_during_it(before, after, during):
    from bench.nightly.machine import throttled_during

    assert throttled_during(before, after) is during
