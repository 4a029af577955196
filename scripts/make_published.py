#!/usr/bin/env python3
"""Write bench/catalog/published.json: the study's published numbers as a reference catalog.

Development tool only; the product reads the JSON it writes, never ../shared. Numbers come from the authors'
companion-site data (`paper` = the paper's Tables 3, 4, 5, 9, 10, 11; `agg` = per model and dataset aggregates,
4 decimals; `fronts` = Pareto sets). The headline claims are the paper's sentences (arXiv 2504.03360, abstract and
results; see the research notes §7), written here as data.

    python scripts/make_published.py [--site-data PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SITE = ROOT.parent / "shared" / "paper-data" / "edge-llm-site-data.json"
DEFAULT_OUT = ROOT / "bench" / "catalog" / "published.json"

AGG_KEYS = ("n", "acc", "E", "jpt", "jptSd", "tok", "lat", "tps", "prefill", "gen", "load")

CLAIMS = {
    "energy_per_token_reduction": {
        "text": "Quantization reduced energy per token by up to 79%.",
        "value": 0.79,
        "example": {"base": "llama3.2_1b", "from": "fp16", "to": "q3_K_S", "from_value": 17.60, "to_value": 3.75},
    },
    "latency_reduction": {
        "text": "Quantization reduced latency by up to 69%.",
        "value": 0.69,
        "example": {"base": "qwen2.5_0.5b", "from": "fp16", "to": "q8_0", "from_value": 31.40, "to_value": 9.84},
    },
    "cheapest_group_per_answer": {
        "text": "q8_0 was the cheapest precision group per answer (Table 5 averages).",
        "value": "q8_0",
    },
    "group_order_per_answer": {
        "text": "By precision: q8_0 cheapest per answer, then q4, fp16 and q3 (Table 5 averages).",
        "value": ["q8_0", "q4", "fp16", "q3"],
    },
    "pareto_fronts": {
        "text": "The accuracy/energy Pareto front differs per task (sets as computed by the authors' build_data.py).",
        "value": "see fronts",
    },
}


def build(site: dict) -> dict:
    """Select and rename the published values; nothing is computed except id -> Ollama tag mapping."""
    tag = {m["id"]: m["ollama"] for m in site["models"]}
    models = {}
    for m in site["models"]:
        agg = site["agg"][m["id"]]
        models[m["ollama"]] = {
            "base": m["fam"], "quant": m["q"], "size_mb": m["size"],
            "datasets": {ds: {k: a[k] for k in AGG_KEYS if k in a} for ds, a in agg.items() if ds != "all"},
            "all": {k: agg["all"][k] for k in AGG_KEYS if k in agg["all"]},
        }
    paper = site["paper"]
    return {
        "source": "Husom et al. 2025, 'Sustainable LLM Inference for Edge AI', arXiv 2504.03360; companion site data "
                  "(ejhusom/neurips-edge-llm-challenge-sampled, edge-llm-site/build/data.json)",
        "generated_by": "scripts/make_published.py",
        "device": {"t3": "Raspberry Pi 4 (4 GB), Joulescope JS110", "t11": "Raspberry Pi 5 (8 GB), USB meter"},
        "idle_w": paper["idle"],
        "n_answers": site["meta"]["nInferences"],
        "tables": {
            "t4": {base: {"mean": v[0], "sd": v[1]} for base, v in paper["t4"].items()},
            "t5": paper["t5"], "t9": paper["t9"], "t10": paper["t10"], "t11": paper["t11"],
        },
        "models": models,
        "fronts": {ds: [tag[i] for i in ids] for ds, ids in site["fronts"].items()},
        "claims": CLAIMS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site-data", type=Path, default=DEFAULT_SITE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    site = json.loads(args.site_data.read_text("utf-8"))
    args.out.write_text(json.dumps(build(site), indent=1, sort_keys=False) + "\n", "utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
