"""The reviewer's re-analysis on small frames whose right answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.catalog import precision_group
from bench.report import aggregate, compare, pareto, quality, robustness, window_shift
from bench.results import FRAME_COLUMNS
from bench.report.authors_items import PowerTrace, SampledAnswer, align, cell_items
from bench.report.matching import common_items
from bench.report.scoring_checks import pass_at_one, position_baselines, spearman


def frame_of(rows: list[dict]) -> pd.DataFrame:
    f = pd.DataFrame(rows)
    for c in FRAME_COLUMNS:
        if c not in f.columns:
            f[c] = np.nan
    f["status"] = f["status"].fillna("ok")
    return f[list(FRAME_COLUMNS)]


def answer(model: str, base: str, quant: str, dataset: str, item: str, **values) -> dict:
    return {"model": model, "base": base, "quant": quant, "precision_group": precision_group(quant),
            "dataset": dataset, "item_id": item, "status": "ok", **values}


# --- matched items -------------------------------------------------------------------------------------------------

def test_common_items_are_those_every_model_answered_once():
    rows = [answer("a", "b", "fp16", "gsm8k", i, total_s=1.0) for i in ("1", "2", "3")]
    rows += [answer("c", "b", "q8_0", "gsm8k", i, total_s=1.0) for i in ("2", "3", "3", None)]
    rows.append(answer("c", "b", "q8_0", "gsm8k", "1", status="timeout"))
    m = common_items(frame_of(rows))
    assert sorted(zip(m["model"], m["item_id"])) == [("a", "2"), ("a", "3"), ("c", "2"), ("c", "3")]


# --- verdicts ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pooled, matched, scoped, expected", [
    (None, True, [], robustness.UNKNOWN), (False, True, [], robustness.FAILS),
    (True, False, [True], robustness.NOT_MATCHED), (True, True, [True, False], robustness.ONLY_POOLED),
    (True, None, [None, True], robustness.HOLDS), (True, True, [], robustness.HOLDS),
])
def test_verdict_rule(pooled, matched, scoped, expected):
    assert robustness.verdict(pooled, matched, scoped) == expected


def _claims(frame: pd.DataFrame, pub: dict):
    cells = aggregate.cells(frame)
    tables = aggregate.paper_tables(cells)
    return cells, compare.evaluate_claims(tables, cells, pareto.fronts(cells), pub)


PUB = {"claims": {
    "energy_per_token_reduction": {"text": "J/token down up to 75%", "value": 0.75},
    "latency_reduction": {"text": "latency down up to 75%", "value": 0.75},
    "cheapest_group_per_answer": {"text": "q8_0 cheapest", "value": "q8_0"},
    "group_order_per_answer": {"text": "order", "value": ["q8_0", "fp16", "q3"]},
    "pareto_fronts": {"text": "fronts"}}, "fronts": {}, "models": {}}


def test_a_latency_cut_made_by_an_easier_item_set_does_not_hold_on_matched_items():
    """fp16 answered 4 items (two of them slow), q8_0 only the 2 fast ones: pooled -87.5%, matched -50%."""
    rows = [answer("f", "b", "fp16", "gsm8k", str(i), total_s=s, energy_j=1.0, eval_count=1, correct=1.0)
            for i, s in enumerate((2.0, 2.0, 14.0, 14.0))]
    rows += [answer("q", "b", "q8_0", "gsm8k", str(i), total_s=1.0, energy_j=1.0, eval_count=1, correct=1.0)
             for i in (0, 1)]
    frame = frame_of(rows)
    cells, claims = _claims(frame, PUB)
    r = robustness.latency(next(c for c in claims if c.key == "latency_reduction"), cells,
                           robustness.Answers.of(frame))
    assert r.verdict == robustness.NOT_MATCHED
    assert "Pooled -87.5%" in r.words and "on the items both answered -50.0%" in r.words
    assert "4 gsm8k answers against 2" in r.words


def test_a_per_token_cut_carried_by_longer_answers_holds_only_pooled():
    """q writes 4x the tokens for 80% of fp16's energy per answer: J/token -80%, energy per answer only -20%."""
    rows = [answer("f", "b", "fp16", "gsm8k", str(i), energy_j=100.0, eval_count=10, total_s=1.0, correct=1.0)
            for i in range(3)]
    rows += [answer("q", "b", "q3_K_S", "gsm8k", str(i), energy_j=80.0, eval_count=40, total_s=1.0, correct=0.0)
             for i in range(3)]
    frame = frame_of(rows)
    cells, claims = _claims(frame, {**PUB, "claims": {**PUB["claims"], "energy_per_token_reduction": {
        "text": "J/token down up to 80%", "value": 0.80}}})
    c = next(c for c in claims if c.key == "energy_per_token_reduction")
    r = robustness.energy_per_token(c, aggregate.model_summary(cells, ["j_per_token", "energy_j", "tokens",
                                                                       "accuracy"]), robustness.Answers.of(frame))
    assert r.verdict == robustness.ONLY_POOLED
    assert "4.0x the tokens" in r.words and "falls only 20.0%" in r.words and "1.000 -> 0.000" in r.words


def test_a_pooled_group_order_made_by_composition_holds_only_pooled():
    """Family A: q8_0 10 < q3 20 < fp16 40 J. Family B (no fp16, no q8_0): q3 200 J. Pooled q3 = 110 > fp16 = 40."""
    rows = []
    for model, base, quant, e in (("a16", "A", "fp16", 40.0), ("a8", "A", "q8_0", 10.0), ("a3", "A", "q3_K_M", 20.0),
                                  ("b3", "B", "q3_K_M", 200.0)):
        rows += [answer(model, base, quant, "gsm8k", str(i), energy_j=e, eval_count=1, total_s=1.0, correct=1.0)
                 for i in range(2)]
    frame = frame_of(rows)
    cells, claims = _claims(frame, PUB)
    order = next(c for c in claims if c.key == "group_order_per_answer")
    assert order.holds is True  # pooled: q8_0 10 < fp16 40 < q3 110
    r = robustness.group_order(order, cells, aggregate.cells(common_items(frame)))
    assert r.verdict == robustness.ONLY_POOLED
    assert "A: q8_0 10.00 < q3 20.00 < fp16 40.00" in r.words
    assert "q3's average is above fp16's only because it also pools B (200.00 J), which have no fp16 model" in r.words
    comp = r.checks[r.checks["check"] == "composition"].set_index("scope")["numbers"]
    assert comp["q3"].startswith("2 models (A (1), B (1))")


# --- data quality ----------------------------------------------------------------------------------------------------

def _quality_frame() -> tuple[pd.DataFrame, dict]:
    expected = {"gsm8k": [str(i) for i in range(4)]}
    rows = [answer("full", "b", "fp16", "gsm8k", str(i), energy_j=10.0 + i, idle_w=2.85, mean_w=5.0, total_s=1.0,
                   eval_count=1, correct=1.0) for i in range(4)]
    rows += [answer("sub", "b", "q8_0", "gsm8k", str(i), energy_j=5.0, idle_w=2.85, mean_w=4.0, total_s=1.0,
                    eval_count=1, correct=1.0) for i in range(2)]  # the first two items only
    rows += [answer("zero", "c", "q4_0", "gsm8k", str(i % 4), energy_j=0.0 if i >= 2 else 8.0, idle_w=2.85,
                    mean_w=6.2 if i == 3 else np.nan, total_s=1.0, eval_count=1, correct=0.0) for i in range(6)]
    return frame_of(rows), expected


def test_item_sets_name_subsets_repeats_and_more_answers_than_items():
    frame, expected = _quality_frame()
    sets = quality.item_sets(frame, expected).set_index("model")
    assert sets.loc["full", "missing"] == 0 and not sets.loc["full", "prefix_subset"]
    assert sets.loc["sub", "prefix_subset"] and sets.loc["sub", "missing"] == 2
    assert sets.loc["zero", "answers"] == 6 and sets.loc["zero", "repeats"] == 2
    found = {f.key: f for f in quality.find(frame, expected)}
    words = found["item_sets"].words
    assert "2 of 3 cells" in words and "1 ran only the first 2 of 4 gsm8k items (sub)" in words
    assert "zero gsm8k holds 6 answers for 4 items" in words


def test_zero_energy_under_load_is_found_and_its_impact_recomputed():
    frame, expected = _quality_frame()
    z = {f.key: f for f in quality.find(frame, expected)}["zero_energy"]
    assert z.cells.loc[0, "affected"] == 4 and z.cells.loc[0, "under_load"] == 1
    assert "6.20-6.20 W against idle 2.85 W" in z.words
    # Without its four 0 J answers, the q4 cell's mean is its two real answers: 8 J (Table 5 q4/c 2.67 -> 8.00).
    t5 = z.impact.tables.set_index(["table", "row", "col"])
    assert t5.loc[("t5", "q4", "c"), "before"] == pytest.approx(8.0 / 3) and t5.loc[("t5", "q4", "c"), "after"] == 8.0


def test_low_coverage_windows_are_a_finding():
    rows = [answer("m", "b", "fp16", "gsm8k", str(i), energy_j=10.0 * (i + 1), coverage=0.5 if i == 0 else 1.0,
                   total_s=1.0, eval_count=1) for i in range(3)]
    found = {f.key: f for f in quality.find(frame_of(rows), {"gsm8k": ["0", "1", "2"]})}
    assert "1 answer windows in 1 cell(s) were covered less than 95%" in found["coverage"].words
    assert "left out of every mean" in found["coverage"].words
    assert set(found) == {"coverage"}
    # ... as the energy stage's rule does: the cell's energy mean is of the two covered answers.
    assert aggregate.cells(frame_of(rows)).loc[0, "energy_j"] == pytest.approx(25.0)


# --- the authors' item identity -------------------------------------------------------------------------------------

def test_align_finds_the_skipped_items_from_prefill_times():
    """A cell that skipped items 3 and 7 of 10: its prefill times follow the reference's at half the speed."""
    rng = np.random.default_rng(1)
    ref = np.log(rng.uniform(5, 500, 10))
    kept = [i for i in range(10) if i not in (3, 7)]
    x = ref[kept] + np.log(2.0) + rng.normal(0, 0.01, len(kept))
    placed = align(x, ref, {0: 0, 7: 9})
    assert placed == dict(enumerate(kept))
    ids = tuple(f"i{k}" for k in range(10))
    c = cell_items(len(kept), 10, ids, placed, "gsm8k")
    assert c.kind == "skipped" and c.item_ids == tuple(ids[k] for k in kept)


def test_rows_between_anchors_whose_offset_jumps_stay_unknown():
    ids = tuple(str(i) for i in range(10))
    c = cell_items(8, 10, ids, {1: 1, 6: 8}, "gsm8k")
    assert c.item_ids[:2] == ("0", "1") and c.item_ids[6:] == ("8", "9") and set(c.item_ids[2:6]) == {None}
    assert cell_items(5, 10, ids, {1: 1, 3: 3}, "humaneval").kind == "skipped"  # 5 is not the HumanEval subset
    c = cell_items(12, 10, ids, {2: 2, 9: 5}, "gsm8k")
    assert c.kind == "repeated" and c.item_ids[:3] == ("0", "1", "2")


# --- the energy window ----------------------------------------------------------------------------------------------

def _meter_log(durations: list[float], busy_w: list[float], idle_w: float = 2.0, dt: float = 0.5):
    """One 2 Hz meter log of back-to-back answers; stamps at completion, as Ollama's created_at."""
    t, power, done = 0.0, [], []
    for d, w in zip(durations, busy_w):
        power += [w] * int(round(d / dt))
        t += d
        done.append(t)
    power += [idle_w] * 40
    return np.asarray(power), done


def test_traces_cut_at_completion_stamps_prove_the_stamp_and_give_the_true_window():
    durations, busy = [6.0, 8.0, 4.0], [5.0, 7.0, 6.0]
    power, done = _meter_log(durations, busy)
    power = power + np.arange(len(power)) * 1e-3  # every sample distinct, as a real meter's
    sampled = []
    for k, (d, c) in enumerate(zip(durations, done)):
        first = int(round((c - 2.5) / 0.5))  # the trace starts 2.5 s before created_at, as the authors' do
        last = int(round((c + d + 2.5) / 0.5))
        trace = PowerTrace(t0_s=(first + 1) * 0.5 - c, dt_s=0.5, power_w=tuple(power[first:last]))
        published = trace.energy_j(0.0, d) - 2.0 * d
        sampled.append(SampledAnswer("m", "gsm8k", k, k, k, "", True, published, d, 1, trace))
    shift = window_shift.authors_shift(sampled, idle_w=2.0)
    assert len(shift.proof) == 2
    assert (shift.proof["off_later_s"] < 0.01).all() and (shift.proof["off_earlier_s"] > 1.9).all()
    got = shift.per_answer.set_index("item")
    # The true window of each answer holds exactly its own samples of the log, above idle.
    for k in (1, 2):
        own = power[int(round((done[k] - durations[k]) / 0.5)):int(round(done[k] / 0.5))]
        assert got.loc[k, "start_j"] == pytest.approx(own.sum() * 0.5 - 2.0 * durations[k], abs=1e-4)
        assert got.loc[k, "start_j"] == pytest.approx((busy[k] - 2.0) * durations[k], rel=0.01)
    assert "created_at is the completion time" in shift.words


def test_run_shift_compares_our_two_windows():
    rows = [answer("m", "b", "q4_0", "gsm8k", str(i), energy_j=e, completion_energy_j=c, total_s=1.0)
            for i, (e, c) in enumerate(((10.0, 10.0), (10.0, 20.0), (5.0, 0.0)))]
    s = window_shift.run_shift(frame_of(rows))
    assert list(s.per_answer["ratio"].round(3).fillna(-1)) == [1.0, 0.5, -1]
    assert s.per_cell.loc[0, "sum_ratio"] == pytest.approx(25 / 30)


# --- what the accuracy numbers measure ------------------------------------------------------------------------------

def test_spearman_matches_scipy():
    """Reference values from scipy.stats.spearmanr (ties get average ranks)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 6]
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic)
    assert math.isnan(spearman([1, 2], [2, 1]))


def test_pass_at_one_counts_flips_and_ranks():
    scored = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4 + ["c"] * 4, "base": ["x"] * 8 + ["y"] * 4,
                           "correct_paper": [1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0],
                           "correct_strict": [0, 0, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0]})
    p = pass_at_one(scored, {"a": 0.9, "b": 0.1, "c": 0.5})
    assert "Of 12 HumanEval answers scored both ways, 5 verdicts flip (42%): 2 pass only" in p.words
    by = p.per_model.set_index("model")
    assert by.loc["b", "pass_at_1"] == 0.75 and by.loc["a", "paper"] == 0.75
    assert p.per_model["model"].iloc[0] == "b"


def test_position_baselines_on_the_shipped_truthfulqa_items(tmp_path):
    from bench.datasets import DataSource
    from bench.suite import load_items

    items = {n: load_items(n, DataSource("fixtures", "all")) for n in ("truthfulqa", "truthfulqa_lettered")}
    b = position_baselines(items, tmp_path / "cache.sqlite").table.set_index(["dataset", "mode", "baseline"])
    first_correct = np.mean([i.fields["mc1_targets"]["labels"][0] == 1 for i in items["truthfulqa"]])
    assert b.loc[("truthfulqa", "strict", "first choice"), "accuracy"] == pytest.approx(first_correct)
    assert b.loc[("truthfulqa", "strict", "constant '?'"), "accuracy"] == 0.0
    letters = [i.reference["letter"] == "A" for i in items["truthfulqa_lettered"]]
    assert b.loc[("truthfulqa_lettered", "strict", "first choice"), "accuracy"] == pytest.approx(np.mean(letters))


def test_rescoring_is_cached(tmp_path, monkeypatch):
    from bench.records import Score
    from bench.report import rescoring

    calls = []
    monkeypatch.setattr(rescoring, "score", lambda item, r, mode: calls.append(r) or Score(r == "yes", None, ""))
    item = __import__("bench.records", fromlist=["Item"]).Item("gsm8k", "1", {"q": 1}, 1)
    cache = tmp_path / "c.sqlite"
    assert rescoring.verdicts([(item, "yes"), (item, "no"), (item, "yes")], "strict", cache) == [True, False, True]
    assert rescoring.verdicts([(item, "no"), (item, "yes")], "strict", cache) == [False, True]
    assert sorted(calls) == ["no", "yes"]  # each distinct answer scored once, the second call from the cache


def test_findings_on_a_frame_without_model_facts_name_the_model():
    """A run stored before identities were snapshotted: cells carry no base, the finding names the model."""
    rows = [{**answer("m", None, None, "gsm8k", str(i), energy_j=0.0, idle_w=2.85, mean_w=6.0, total_s=1.0,
                      eval_count=1), "quant": None, "precision_group": None} for i in range(2)]
    z = {f.key: f for f in quality.find(frame_of(rows), {"gsm8k": ["0", "1"]})}["zero_energy"]
    assert z.cells.loc[0, "base"] == "m" and "Table 4 (m)" in z.touches


def test_one_model_gets_no_rank_correlation_and_nothing_judged_is_not_reproduced():
    from bench.report.findings import reproduction

    one = pass_at_one(pd.DataFrame({"model": ["a"] * 2, "base": ["x"] * 2, "correct_paper": [1, 0],
                                    "correct_strict": [1, 1]}))
    assert "needs at least 3 models" in one.words and "nan" not in one.words
    cmp = pd.DataFrame({"table": ["t5", "cell"], "status": ["partial", "not run"]})
    assert reproduction(cmp, authors=False).verdict == "cannot be evaluated"


def test_fronts_nothing_comparable_says_why_instead_of_counting_zero():
    from bench.report.findings import fronts_finding

    empty = pd.DataFrame([], columns=robustness.CHECK_COLUMNS)
    fronts = [robustness.Robustness(f"pareto_front_{ds}", ds, robustness.UNKNOWN,
                                    f"cannot be evaluated: 28 of the paper's models not run on {ds}", empty)
              for ds in ("gsm8k", "all")]
    f = fronts_finding(fronts)
    assert f.verdict == "cannot be evaluated" and "0 of" not in f.words
    assert f.words == ("None of the 2 published fronts can be compared: 28 of the paper's models not run on gsm8k; "
                       "28 of the paper's models not run on all.")
