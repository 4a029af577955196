"""The authors' data through our code: Tables 4, 5, 9 and 10, the fronts and the claims come out as published.

Published values are read from the site data's ``paper`` section directly (not from our published.json), so the
check does not depend on our own extraction; a separate test checks published.json against the same source.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

from bench.report import aggregate, compare, pareto, render
from bench.report.authors import AUTHORS_TOLERANCE_ABS, load_authors_cells, load_authors_frame
from bench.report.published import load_published
from bench.results import FRAME_COLUMNS
from paper_data import SITE

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not SITE.is_file(), reason=f"authors' data not present at {SITE} (../shared/paper-data)"),
]


@lru_cache(maxsize=1)
def site() -> dict:
    return json.loads(SITE.read_text("utf-8"))


@lru_cache(maxsize=1)
def agg_tables():
    return aggregate.paper_tables(load_authors_cells(SITE))


@lru_cache(maxsize=1)
def points_frame():
    return load_authors_frame(SITE)


@lru_cache(maxsize=1)
def points_tables():
    return aggregate.paper_tables(aggregate.cells(points_frame()))


def published_cells() -> list[tuple[str, str, str, str, float]]:
    """(table, row, col, stat, value) for every number of Tables 4, 5, 9 and 10 (no file: empty list)."""
    if not SITE.is_file():
        return []
    paper = json.loads(SITE.read_text("utf-8"))["paper"]
    out = []
    for base, (mean, sd) in paper["t4"].items():
        out += [("t4", "j_per_token", base, "mean", mean), ("t4", "j_per_token", base, "sd", sd)]
    for t in ("t5", "t9"):
        out += [(t, g, c, "mean", v) for g, cols in paper[t].items() for c, v in cols.items()]
    out += [("t10", "latency_s", ds, "mean", v) for ds, v in paper["t10"].items()]
    return out


CELLS = published_cells()
IDS = ["/".join(c[:4]) for c in CELLS]


def lookup(tables, table, row, col, stat) -> float:
    hit = tables[(tables.table == table) & (tables.row == row) & (tables.col == col) & (tables.stat == stat)]
    assert len(hit) == 1, f"{table}/{row}/{col}/{stat}: {len(hit)} rows"
    return float(hit.value.iloc[0])


def test_every_published_cell_is_covered():
    assert len(CELLS) == 8 + 19 + 19 + 5


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_table_cell_from_agg_equals_published_to_2_decimals(cell):
    table, row, col, stat, published = cell
    assert round(lookup(agg_tables(), table, row, col, stat), 2) == pytest.approx(published, abs=1e-9)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_table_cell_from_points_within_tenths_rounding(cell):
    """Per-answer path: energies and latencies are stored in tenths, so a mean may move by up to 0.05."""
    table, row, col, stat, published = cell
    ours = lookup(points_tables(), table, row, col, stat)
    assert abs(ours - published) <= AUTHORS_TOLERANCE_ABS


def test_points_path_mostly_exact():
    """All but one cell (Table 5 q3/qwen2.5_1.5b, 113.71 vs 113.72) match exactly from the points too."""
    exact = sum(round(lookup(points_tables(), *c[:4]), 2) == pytest.approx(c[4], abs=1e-9) for c in CELLS)
    assert exact >= len(CELLS) - 1, f"only {exact} of {len(CELLS)} exact"


def test_authors_frame_shape_and_counts():
    f = points_frame()
    assert tuple(f.columns) == FRAME_COLUMNS
    assert len(f) == site()["meta"]["nInferences"] == 26_251
    c = aggregate.cells(f).set_index(["model", "dataset"])
    tags = {m["id"]: m["ollama"] for m in site()["models"]}
    for mid, per_ds in site()["agg"].items():
        for ds, a in per_ds.items():
            if ds == "all":
                continue
            cell = c.loc[(tags[mid], ds)]
            assert cell["n_answers"] == a["n"]
            assert cell["accuracy"] == pytest.approx(a["acc"], abs=5e-5)
            assert cell["tokens"] == pytest.approx(a["tok"], abs=5e-5)
            assert cell["energy_j"] == pytest.approx(a["E"], abs=0.05)


def test_fronts_equal_the_authors_fronts():
    tags = {m["id"]: m["ollama"] for m in site()["models"]}
    for cells in (load_authors_cells(SITE), aggregate.cells(points_frame())):
        ours = pareto.fronts(cells)
        for ds, ids in site()["fronts"].items():
            assert set(ours[ds]) == {tags[i] for i in ids}, ds


def test_claims_hold_on_the_authors_data():
    cells = load_authors_cells(SITE)
    tables = aggregate.paper_tables(cells)
    claims = compare.evaluate_claims(tables, cells, pareto.fronts(cells), load_published())
    assert len(claims) == 4 + 6
    assert all(c.holds is True for c in claims), [(c.key, c.ours) for c in claims if c.holds is not True]
    by_key = {c.key: c for c in claims}
    assert by_key["energy_per_token_reduction"].deciding["to"] == "q3_K_S"
    assert by_key["energy_per_token_reduction"].deciding["reduction"] == pytest.approx(0.787, abs=1e-3)
    assert by_key["latency_reduction"].deciding["reduction"] == pytest.approx(0.687, abs=1e-3)
    # paper-facts.md: "Llama 3.2 1B averaged 17.60 J/token at fp16 and 3.75 J/token at q3_K_S" [SITE]; as words.
    assert render.deciding_words(by_key["energy_per_token_reduction"].deciding) == (
        "llama3.2_1b fp16 17.60 -> q3_K_S 3.75 J/token; reduction 78.7% (tolerance 10 pp)")


def test_comparison_of_authors_data_is_all_within():
    cells = load_authors_cells(SITE)
    cmp = compare.compare(aggregate.paper_tables(cells), cells, load_published())
    assert set(cmp.status) == {"within"}
    assert cmp["diff"].abs().max() < 0.005


def test_published_json_matches_the_site_data():
    pub = load_published()
    paper = site()["paper"]
    assert pub["tables"]["t5"] == paper["t5"] and pub["tables"]["t9"] == paper["t9"]
    assert pub["tables"]["t10"] == paper["t10"] and pub["tables"]["t11"] == paper["t11"]
    assert {b: [v["mean"], v["sd"]] for b, v in pub["tables"]["t4"].items()} == paper["t4"]
    assert len(pub["models"]) == 28 and pub["n_answers"] == 26_251
