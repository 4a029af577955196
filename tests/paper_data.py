"""Where the authors' data sits for conformance tests (../shared/paper-data beside the checkout; CI has it).

Tests that use it skip with a reason naming this path when it is absent; the product itself never reads it.
"""

from __future__ import annotations

from pathlib import Path

PAPER_DATA = Path(__file__).resolve().parents[2] / "shared" / "paper-data"
SITE = PAPER_DATA / "edge-llm-site-data.json"
# The authors' sampled files, by our dataset name.
AUTHORS_FILES = {
    "commonsenseqa": "CommonsenseQA/commonsenseqa_200_samples.jsonl",
    "bigbenchhard": "BIG-Bench-Hard/collated_bbh_200_samples.jsonl",
    "gsm8k": "GSM8K/gsm8k_200_samples.jsonl",
    "truthfulqa": "TruthfulQA/truthfulQA_MC_200_samples.jsonl",
    "humaneval": "HumanEval/HumanEval.jsonl",
}
