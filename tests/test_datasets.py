"""Datasets: fixtures in upstream formats, cache round trip, hub path (mocked), the paper's selection, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.datasets as ds
from bench.datasets import DataSource, fixtures_dir
from bench.datasets.hub import CACHE_FILE, REVISION_FILE, write_cache
from bench.datasets.selection import Selection, load_selection
from bench.errors import CatalogError, DatasetError
from bench.suite import DATASETS, PAPER_DATASETS, dataset, load_items

FIXTURES = DataSource(kind="fixtures", selection="all")


def test_dataset_names_follow_the_contract():
    assert tuple(DATASETS) == ("commonsenseqa", "bigbenchhard", "gsm8k", "truthfulqa", "humaneval",
                               "truthfulqa_lettered")
    assert PAPER_DATASETS == tuple(DATASETS)[:5]


@pytest.mark.parametrize("name", DATASETS)
def test_fixtures_load_with_unique_ids_and_references(name):
    items = load_items(name, FIXTURES)
    assert len(items) == 5
    assert len({i.item_id for i in items}) == 5
    assert all(i.dataset == name and i.reference not in (None, "") for i in items)
    assert all(len(i.sha256) == 64 for i in items)


def test_item_ids_and_references_per_dataset():
    csqa = load_items("commonsenseqa", FIXTURES)[0]
    assert csqa.item_id == "fx-csqa-0001" and csqa.reference == "B"
    assert csqa.fields["choices"]["label"] == ["A", "B", "C", "D", "E"]  # the hub's flat form
    gsm = load_items("gsm8k", FIXTURES)[3]
    assert gsm.reference == "209" and len(gsm.item_id) == 16
    bbh = load_items("bigbenchhard", FIXTURES)
    assert [i.item_id.split("/")[0] for i in bbh][:2] == ["boolean_expressions"] * 2
    he = load_items("humaneval", FIXTURES)[0]
    assert he.item_id == "Fixture/0" and he.reference == "add_pairs"


def test_limit_takes_the_first_items_in_order():
    assert [i.item_id for i in load_items("gsm8k", DataSource("fixtures", "all", limit=2))] == \
        [i.item_id for i in load_items("gsm8k", FIXTURES)][:2]


def test_lettered_variant_shuffles_deterministically_and_points_at_the_correct_choice():
    plain = load_items("truthfulqa", FIXTURES)
    lettered = load_items("truthfulqa_lettered", FIXTURES)
    again = load_items("truthfulqa_lettered", FIXTURES)
    assert [i.reference for i in lettered] == [i.reference for i in again]
    assert [p.sha256 for p in plain] == [q.sha256 for q in lettered]  # same content, same selection
    firsts = 0
    for p, q in zip(plain, lettered):
        order, letter = q.reference["order"], q.reference["letter"]
        assert sorted(order) == sorted(p.fields["mc1_targets"]["choices"])
        assert order["ABCDEFGHIJ".index(letter)] == p.reference
        firsts += letter == "A"
    assert firsts < 5  # the upstream order always has the correct choice first


def test_hash_is_independent_of_the_source_shape(tmp_path):
    """Original CSQA (nested question) and the hub's flat record give the same item and hash."""
    original = load_items("commonsenseqa", FIXTURES)
    flat = tmp_path / "validation.jsonl"
    flat.write_text("".join(json.dumps({**dict(i.fields)}) + "\n" for i in original), encoding="utf-8")
    again = load_items("commonsenseqa", DataSource("files", "all", path=str(tmp_path)))
    assert [(i.item_id, i.sha256) for i in again] == [(i.item_id, i.sha256) for i in original]


def test_truthfulqa_dict_form_hashes_like_the_hub_form():
    a = dataset("truthfulqa").adapter
    hub = {"question": "Q?", "mc1_targets": {"choices": ["x", "y"], "labels": [1, 0]},
           "mc2_targets": {"choices": ["x", "z"], "labels": [1, 0]}}
    original = {"question": "Q?", "mc1_targets": {"x": 1, "y": 0}, "mc2_targets": {"x": 1, "z": 0}}
    [h], [o] = a.items_from_records([hub], "", "hub"), a.items_from_records([original], "", "file")
    assert h.sha256 == o.sha256 and h.reference == "x"


def _fake_selection(monkeypatch, name, items):
    sel = Selection(name, "test", "test", tuple((i.item_id, i.sha256) for i in items))
    monkeypatch.setattr(ds, "apply_selection", lambda d, key, got, where: _apply(sel, d, got, where))


def _apply(selection, dataset, items, where):
    from bench.datasets import selection as mod

    original = mod.load_selection
    try:
        mod.load_selection = lambda key: selection
        return mod.apply_selection(dataset, dataset, items, where)
    finally:
        mod.load_selection = original


def test_cache_round_trip_and_paper_verification(tmp_path, monkeypatch):
    items = load_items("gsm8k", FIXTURES)
    write_cache(tmp_path, dataset("gsm8k").adapter, items, {"requested_revision": "main"})
    assert (tmp_path / "gsm8k" / CACHE_FILE).is_file()
    meta = json.loads((tmp_path / "gsm8k" / REVISION_FILE).read_text())
    assert meta["n_items"] == 5 and len(meta["items_sha256"]) == 64
    cached = load_items("gsm8k", DataSource("cache", "all", path=str(tmp_path)))
    assert [(i.item_id, i.sha256) for i in cached] == [(i.item_id, i.sha256) for i in items]

    _fake_selection(monkeypatch, "gsm8k", list(reversed(items[:3])))
    chosen = load_items("gsm8k", DataSource("cache", "paper", path=str(tmp_path)))
    assert [i.item_id for i in chosen] == [i.item_id for i in reversed(items[:3])]  # the selection's order

    path = tmp_path / "gsm8k" / CACHE_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("#### 14", "#### 15")] + lines[1:]) + "\n")
    with pytest.raises(DatasetError, match=rf"gsm8k: item '{items[0].item_id}' differs from the paper's selection"):
        load_items("gsm8k", DataSource("cache", "paper", path=str(tmp_path)))
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetError, match=rf"gsm8k: item '{items[0].item_id}' .* is missing"):
        load_items("gsm8k", DataSource("cache", "paper", path=str(tmp_path)))


def test_fixtures_are_not_the_paper_selection():
    with pytest.raises(DatasetError, match=r"^humaneval: item 'HumanEval/0' of the paper's selection is missing"):
        load_items("humaneval", DataSource("fixtures", "paper"))


def test_shipped_selection_counts():
    counts = {n: len(load_selection(n).entries) for n in PAPER_DATASETS}
    assert counts == {"commonsenseqa": 200, "bigbenchhard": 200, "gsm8k": 200, "truthfulqa": 200, "humaneval": 164}
    assert load_selection("humaneval").ids[:2] == ("HumanEval/0", "HumanEval/1")


def test_bad_json_names_file_and_line(tmp_path):
    good = (fixtures_dir(dataset("gsm8k").adapter) / "test.jsonl").read_text().splitlines()
    (tmp_path / "test.jsonl").write_text("\n".join(good[:2] + ['{"question": "broken",'] + good[2:]) + "\n")
    with pytest.raises(DatasetError, match=r"test\.jsonl: line 3: bad JSON") as err:
        load_items("gsm8k", DataSource("files", "all", path=str(tmp_path)))
    assert "\n" not in str(err.value)


def test_invalid_utf8_and_garbage_parquet(tmp_path):
    (tmp_path / "test.jsonl").write_bytes(b'{"question": "\xff\xfe", "answer": "#### 1"}\n')
    with pytest.raises(DatasetError, match=r"test\.jsonl: not UTF-8 text"):
        load_items("gsm8k", DataSource("files", "all", path=str(tmp_path)))
    (tmp_path / "test.jsonl").unlink()
    (tmp_path / "train.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(DatasetError, match=r"train\.parquet: not a readable parquet file"):
        load_items("gsm8k", DataSource("files", "all", path=str(tmp_path)))


def test_missing_field_names_file_record_and_field(tmp_path):
    (tmp_path / "test.jsonl").write_text('{"question": "a", "answer": "#### 1"}\n{"question": "b"}\n')
    with pytest.raises(DatasetError, match=r"test\.jsonl: record 2: missing field 'answer'"):
        load_items("gsm8k", DataSource("files", "all", path=str(tmp_path)))


def test_bbh_file_without_examples_list(tmp_path):
    (tmp_path / "navigate.json").write_text('{"canary": "x", "items": []}')
    with pytest.raises(DatasetError, match=r"navigate\.json"):
        load_items("bigbenchhard", DataSource("files", "all", path=str(tmp_path)))


def test_missing_cache_and_bad_source_and_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="run `bench data fetch gsm8k`"):
        load_items("gsm8k", DataSource("cache", "all", path=str(tmp_path)))
    with pytest.raises(DatasetError, match="kind"):
        DataSource(kind="web")
    with pytest.raises(DatasetError, match="selection"):
        DataSource(selection="some")
    with pytest.raises(CatalogError, match="Did you mean 'gsm8k'"):
        load_items("gsm8", FIXTURES)


def test_hub_path_and_fetch_with_a_mocked_hub(tmp_path, monkeypatch):
    """The hub is unreachable here: replace `load_dataset` and the revision lookup, keep everything else real."""
    import datasets

    import bench.datasets.hub as hub

    rows = [dict(i.fields) for i in load_items("humaneval", FIXTURES)]
    calls = []
    real_load = datasets.load_dataset

    def fake_load(repo, config=None, split=None, revision=None, **kwargs):
        if "data_files" in kwargs:  # local files (the cache) still go through the real loader
            return real_load(repo, split=split, **kwargs)
        calls.append((repo, config, split, revision))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(hub, "resolve_revision", lambda repo, rev: "abc123" if rev == "main" else rev)
    items = load_items("humaneval", DataSource("hub", "all"))
    assert len(items) == 5 and calls == [("openai/openai_humaneval", None, "test", "abc123")]

    sel = Selection("humaneval", "t", "t", tuple((i.item_id, i.sha256) for i in items[:2]))
    monkeypatch.setattr("bench.datasets.selection.load_selection", lambda key: sel)
    done = ds.fetch([dataset("humaneval").adapter], tmp_path, revision="v1")
    meta = json.loads((done["humaneval"] / REVISION_FILE).read_text())
    assert meta["resolved_revisions"] == {"openai/openai_humaneval": "v1"} and meta["n_items"] == 2
    assert ds.verify([dataset("humaneval").adapter], tmp_path)["humaneval"].startswith("ok: 2 items")


def test_hub_failure_is_one_line(monkeypatch):
    import datasets

    import bench.datasets.hub as hub

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(hub, "resolve_revision", lambda repo, rev: rev)
    with pytest.raises(DatasetError, match=r"^gsm8k: cannot load openai/gsm8k@main main/train") as err:
        load_items("gsm8k", DataSource("hub", "all"))
    assert "\n" not in str(err.value)


def test_cli_show_and_verify(tmp_path):
    from click.testing import CliRunner

    from bench.cli import _register, cli

    _register()
    runner = CliRunner()
    shown = runner.invoke(cli, ["data", "show", "commonsenseqa", "-n", "1"])
    assert shown.exit_code == 0 and "fx-csqa-0001" in shown.output and "(B) hallway stand" in shown.output
    verified = runner.invoke(cli, ["data", "verify", "gsm8k", "--dir", str(tmp_path)])
    assert verified.exit_code == 1 and "FAILED" in verified.output


def test_no_runtime_reads_of_shared_folder():
    root = Path(ds.__file__).resolve().parents[1]
    for path in list(root.rglob("*.py")):
        assert "shared/paper-data" not in path.read_text(encoding="utf-8"), path
