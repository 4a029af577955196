"""The paper's definitions, on small hand-made answers frames whose right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report import aggregate, pareto, phases, roofline, stats
from bench.catalog import precision_group
from bench.results import FRAME_COLUMNS


def frame_of(rows: list[dict]) -> pd.DataFrame:
    """An answers frame with every documented column, NaN where a row does not say."""
    f = pd.DataFrame(rows)
    if "status" not in f.columns:
        f["status"] = "ok"
    for c in FRAME_COLUMNS:
        if c not in f.columns:
            f[c] = np.nan
    return f[list(FRAME_COLUMNS)]


def ans(model="m1", base="b1", quant="q8_0", dataset="gsm8k", **kw) -> dict:
    row = {"model": model, "base": base, "quant": quant, "precision_group": precision_group(quant),
           "dataset": dataset, "status": "ok"}
    row.update(kw)
    return row


def test_per_answer_means_are_means_of_ratios_and_skip_failures():
    f = frame_of([
        ans(energy_j=10.0, eval_count=10, eval_s=2.0, total_s=5.0, correct=1.0),
        ans(energy_j=30.0, eval_count=1, eval_s=1.0, total_s=7.0, correct=0.0),
        ans(energy_j=20.0, eval_count=4, eval_s=2.0, total_s=6.0, correct=np.nan),  # unscored
        ans(status="timeout", energy_j=np.nan, total_s=np.nan),
    ])
    c = aggregate.cells(f).iloc[0]
    assert c["energy_j"] == pytest.approx(20.0)
    # mean of ratios (1 + 30 + 5) / 3 = 12, not the ratio of means 60 / 15 = 4
    assert c["j_per_token"] == pytest.approx(12.0)
    assert c["tokens_per_s"] == pytest.approx((5 + 1 + 2) / 3)
    assert c["latency_s"] == pytest.approx(6.0)
    assert c["accuracy"] == pytest.approx(0.5) and c["accuracy_n"] == 2
    assert (c["n_rows"], c["n_answers"], c["n_failed"]) == (4, 3, 1)
    assert c["energy_j_sd"] == pytest.approx(10.0)


def test_zero_tokens_give_no_j_per_token_instead_of_infinity():
    f = frame_of([ans(energy_j=5.0, eval_count=0), ans(energy_j=6.0, eval_count=3)])
    c = aggregate.cells(f).iloc[0]
    assert c["j_per_token"] == pytest.approx(2.0) and c["j_per_token_n"] == 1


def test_all_is_unweighted_over_datasets_and_table9_is_pooled():
    rows = [ans(dataset="gsm8k", energy_j=10.0, total_s=10.0) for _ in range(9)]
    rows += [ans(dataset="humaneval", energy_j=100.0, total_s=100.0)]
    c = aggregate.cells(frame_of(rows))
    summary = aggregate.model_summary(c, ["energy_j"])
    assert summary.loc[0, "energy_j"] == pytest.approx(55.0)  # (10 + 100) / 2, not 19 pooled
    t5 = aggregate.table5(c)
    t9 = aggregate.table9(c)
    assert t5[(t5.row == "q8_0") & (t5.col == "b1")].value.item() == pytest.approx(55.0)
    assert t9[(t9.row == "q8_0") & (t9.col == "b1")].value.item() == pytest.approx(19.0)  # 190 / 10 answers


def test_table5_is_mean_over_models_and_avg_is_mean_of_cells():
    rows = []
    for model, base, quant, e in [("a", "b1", "q4_0", 10.0), ("b", "b1", "q4_K_M", 30.0), ("c", "b2", "q4_1", 50.0),
                                  ("d", "b1", "fp16", 70.0)]:
        rows += [ans(model=model, base=base, quant=quant, dataset=ds, energy_j=e, total_s=e)
                 for ds in ("gsm8k", "truthfulqa") for _ in range(2)]
    t5 = aggregate.wide(aggregate.table5(aggregate.cells(frame_of(rows))))
    assert t5.loc["q4", "b1"] == pytest.approx(20.0)
    assert t5.loc["q4", "b2"] == pytest.approx(50.0)
    assert t5.loc["q4", "avg"] == pytest.approx(35.0)
    assert t5.loc["avg", "b1"] == pytest.approx(45.0)  # (20 + 70) / 2
    assert list(t5.index) == ["fp16", "q4", "avg"]


def test_table4_sd_is_mean_within_cell_sd():
    rows = [ans(dataset="gsm8k", energy_j=e, eval_count=1) for e in (1.0, 3.0)]
    rows += [ans(dataset="truthfulqa", energy_j=e, eval_count=1) for e in (10.0, 20.0)]
    t4 = aggregate.table4(aggregate.cells(frame_of(rows)))
    assert t4[t4.stat == "mean"].value.item() == pytest.approx(8.5)
    assert t4[t4.stat == "sd"].value.item() == pytest.approx((math.sqrt(2) + math.sqrt(50)) / 2)


def test_pooled_equals_direct_computation():
    rng = np.random.default_rng(1)
    groups = [rng.normal(rng.uniform(0, 10), rng.uniform(0.5, 3), size=rng.integers(2, 40)) for _ in range(7)]
    est = stats.pooled(np.array([g.mean() for g in groups]), np.array([g.std(ddof=1) for g in groups]),
                       np.array([len(g) for g in groups], dtype=float))
    allv = np.concatenate(groups)
    assert est.mean == pytest.approx(allv.mean())
    assert est.sd == pytest.approx(allv.std(ddof=1))
    assert est.half == pytest.approx(stats.t_quantile(len(allv) - 1) * allv.std(ddof=1) / math.sqrt(len(allv)))


# scipy.stats.t.ppf(0.975, df), scipy 1.17.1 (importing scipy in the test would cost seconds).
T_REFERENCE = {1: 12.706204736174694, 2: 4.302652729749462, 3: 3.1824463052837078, 5: 2.5705818356363146,
               9: 2.262157162798205, 10: 2.228138851986274, 15: 2.131449545559776, 30: 2.0422724563012378,
               199: 1.9719565442517533, 5000: 1.9604385517065073}


@pytest.mark.parametrize("df", sorted(T_REFERENCE))
def test_t_quantile_matches_scipy(df):
    assert stats.t_quantile(df) == pytest.approx(T_REFERENCE[df], rel=5e-6)


def test_mean_of_propagates_standard_errors():
    a = stats.Estimate(10.0, stats.Z * 1.0, 50)
    b = stats.Estimate(20.0, stats.Z * 2.0, 30)
    m = stats.mean_of([a, b])
    assert (m.mean, m.n) == (15.0, 80)
    assert m.half == pytest.approx(stats.Z * math.sqrt(1 + 4) / 2)
    assert math.isnan(stats.mean_of([a, stats.Estimate(1.0, math.nan, 3)]).half)


def test_phase_metrics_with_bounds_flag_by_the_bound_not_the_sample_count():
    # prefill: 2 samples but a tight bound (1%); decode: 50 samples but a loose one (10%)
    rows = [ans(prefill_energy_j=6.0, decode_energy_j=2.0, energy_j=8.0, prompt_eval_count=60, eval_count=4,
                prefill_coverage=1.0, decode_coverage=1.0, coverage=1.0, prefill_n_samples=2, decode_n_samples=50,
                prefill_energy_bound_j=0.06, decode_energy_bound_j=0.2, energy_bound_j=0.26) for _ in range(3)]
    c = aggregate.cells(frame_of(rows))
    p = phases.phase_table(c).iloc[0]
    assert p["j_per_prompt_token"] == pytest.approx(0.1)
    assert p["j_per_prompt_token_bound"] == pytest.approx(0.001)
    assert p["j_per_gen_token_decode"] == pytest.approx(0.5)
    assert p["j_per_gen_token_decode_bound"] == pytest.approx(0.05)
    assert p["prefill_energy_share"] == pytest.approx(0.75)
    assert p["j_per_token"] == pytest.approx(2.0)
    assert not p["prefill_flagged"] and p["decode_flagged"]
    assert (p["prefill_over_bound_n"], p["decode_over_bound_n"]) == (0, 3)
    note = phases.jpt_vs_decode_note(phases.phase_table(c))
    assert "4.00x" in note and "75%" in note and "1 of these cells are flagged" in note


def test_phase_note_without_phase_data_says_so():
    c = aggregate.cells(frame_of([ans(energy_j=1.0, eval_count=1)]))
    assert "no per-phase energy" in phases.jpt_vs_decode_note(phases.phase_table(c))


def test_pareto_front_dominance_and_ties():
    models = ["cheap", "good", "dominated", "tie_costly", "nan"]
    acc = np.array([0.2, 0.6, 0.1, 0.6, np.nan])
    en = np.array([10.0, 50.0, 20.0, 60.0, 1.0])
    assert pareto.front(models, acc, en) == ["cheap", "good"]


def test_fronts_per_dataset_and_all():
    rows = []
    for model, acc_g, e_g, acc_t, e_t in [("x", 1.0, 10.0, 0.0, 100.0), ("y", 0.0, 5.0, 1.0, 5.0)]:
        rows += [ans(model=model, dataset="gsm8k", correct=acc_g, energy_j=e_g),
                 ans(model=model, dataset="truthfulqa", correct=acc_t, energy_j=e_t)]
    f = pareto.fronts(aggregate.cells(frame_of(rows)))
    assert sorted(f["gsm8k"]) == ["x", "y"] and f["truthfulqa"] == ["y"]
    assert f["all"] == ["y"]  # x: acc 0.5 at 55 J; y: acc 0.5 at 5 J


def test_roofline_uses_the_runs_model_bytes():
    summary = pd.DataFrame([{"model": "a", "base": "a", "quant": "q4_0", "size_bytes": 5e8, "tokens_per_s": 2.0},
                            {"model": "b", "base": "z", "quant": "q", "size_bytes": np.nan, "tokens_per_s": 1.0}])
    r = roofline.roofline(summary, 4.0)
    assert r.loc[0, "max_tokens_per_s"] == pytest.approx(8.0)
    assert r.loc[0, "pct_of_limit"] == pytest.approx(25.0)
    assert math.isnan(r.loc[1, "pct_of_limit"])


def test_cells_carry_the_frames_model_bytes_to_the_summary():
    f = frame_of([{"model": "a", "base": "a", "quant": "q4_0", "size_bytes": 5e8, "dataset": d, "energy_j": 1.0}
                  for d in ("gsm8k", "truthfulqa")])
    assert aggregate.model_summary(aggregate.cells(f)).loc[0, "size_bytes"] == 5e8


def test_missing_identity_is_the_tag_never_the_catalog():
    """A frame without model facts (a run stored before the identity snapshot) is grouped by tag: the catalog,
    which may have changed since, is not consulted."""
    from bench.catalog import paper_models

    m = paper_models()[3]
    f = frame_of([{"model": m.tag, "dataset": "gsm8k", "energy_j": 1.0, "base": "", "quant": ""}])
    c = aggregate.cells(f).iloc[0]
    assert (c["base"], c["quant"], c["precision_group"]) == (m.tag, "unknown", "unknown")


def test_missing_identity_columns_or_no_answers_are_typed_errors(tmp_path):
    from bench.errors import ResultsError
    from bench.report import build_report

    with pytest.raises(ResultsError, match="dataset"):
        aggregate.cells(pd.DataFrame({"model": ["a"], "energy_j": [1.0]}))
    with pytest.raises(ResultsError, match="no answers"):
        build_report(frame_of([]).astype({"model": object, "dataset": object}), tmp_path, run_info={})


def test_cell_with_only_failures_is_counted_with_no_means():
    f = frame_of([ans(dataset="gsm8k", energy_j=1.0), ans(dataset="humaneval", status="timeout"),
                  ans(dataset="humaneval", status="error")])
    c = aggregate.cells(f).set_index("dataset")
    assert (c.loc["humaneval", "n_rows"], c.loc["humaneval", "n_answers"], c.loc["humaneval", "n_failed"]) == (2, 0, 2)
    assert math.isnan(c.loc["humaneval", "energy_j"]) and c.loc["humaneval", "energy_j_n"] == 0
    assert c.loc["humaneval", "base"] == "b1"
    # "all" skips the dataset without a mean instead of turning NaN
    assert aggregate.model_summary(c.reset_index(), ["energy_j"]).loc[0, "energy_j"] == pytest.approx(1.0)


def test_compare_tolerances_and_not_run():
    from bench.report.compare import ACC_TOL, REL_TOL, compare_long

    cols = ["table", "row", "col", "stat", "value"]
    theirs = pd.DataFrame([("cell", "m", "gsm8k", "energy_j", 100.0), ("cell", "m", "gsm8k", "accuracy", 0.5),
                           ("cell", "m", "gsm8k", "n_answers", 200), ("cell", "x", "gsm8k", "energy_j", 1.0)],
                          columns=cols)
    ours = pd.DataFrame([("cell", "m", "gsm8k", "energy_j", 100.0 * (1 + REL_TOL) + 0.01),
                         ("cell", "m", "gsm8k", "accuracy", 0.5 + ACC_TOL - 0.001),
                         ("cell", "m", "gsm8k", "n_answers", 199)], columns=cols)
    out = compare_long(ours, theirs).set_index("stat")
    assert out.loc["energy_j"].iloc[0]["status"] == "outside"
    assert out.loc["energy_j"].iloc[0]["ratio"] == pytest.approx(1.1001)
    assert out.loc["accuracy", "status"] == "within"
    assert out.loc["n_answers", "status"] == "outside"
    assert out.loc["energy_j"].iloc[1]["status"] == "not run"


def test_reference_table_t11_replaces_t5():
    from bench.report.published import load_published, published_tables

    pub = load_published()
    t = published_tables(pub, "t11")
    t5 = t[(t.table == "t5") & (t.row == "q4") & (t.col == "qwen2.5_1.5b")].value.item()
    assert t5 == pub["tables"]["t11"]["q4"]["qwen2.5_1.5b"] != pub["tables"]["t5"]["q4"]["qwen2.5_1.5b"]
