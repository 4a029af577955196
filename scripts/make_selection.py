"""Dev script: compute bench/catalog/selection/<dataset>.json from the authors' sampled files.

Writes facts only (item ids and sha256 of the canonical record, in the authors' order), never content.
Reads ../shared/paper-data (or --paper-data); the product itself never reads that folder.

    .venv/bin/python scripts/make_selection.py [--paper-data DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.suite import dataset  # noqa: E402

SOURCE = "ejhusom/neurips-edge-llm-challenge-sampled@3f928b3"
FILES = {
    "commonsenseqa": "CommonsenseQA/commonsenseqa_200_samples.jsonl",
    "bigbenchhard": "BIG-Bench-Hard/collated_bbh_200_samples.jsonl",
    "gsm8k": "GSM8K/gsm8k_200_samples.jsonl",
    "truthfulqa": "TruthfulQA/truthfulQA_MC_200_samples.jsonl",
    "humaneval": "HumanEval/HumanEval.jsonl",
}


def selection_doc(name: str, path: Path) -> dict:
    a = dataset(name).adapter
    # Plain json here: the authors' TruthfulQA file maps choices to labels in dicts whose key order matters.
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = a.items_from_records(records, "", str(path))
    ids = [item.item_id for item in items]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{name}: duplicate item ids in {path}")
    return {
        "dataset": name,
        "source": f"{SOURCE} {FILES[name]}",
        "id_scheme": a.id_scheme,
        "hash": "sha256 of canonical_json(Item.fields), fields in the hub's record form",
        "count": len(items),
        "items": [{"id": item.item_id, "sha256": item.sha256} for item in items],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-data", type=Path, default=ROOT.parent / "shared" / "paper-data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "catalog" / "selection")
    parser.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    args = parser.parse_args()
    status = 0
    for name, rel in FILES.items():
        doc = selection_doc(name, args.paper_data / rel)
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        target = args.out / f"{name}.json"
        if args.check:
            same = target.is_file() and target.read_text(encoding="utf-8") == text
            print(f"{name}: {'ok' if same else 'DIFFERS'} ({doc['count']} items)")
            status |= 0 if same else 1
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"{name}: {doc['count']} items -> {target.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
