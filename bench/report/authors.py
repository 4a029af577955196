"""The authors' companion-site data (``edge-llm-site-data.json``) in this toolkit's shapes.

* ``load_authors_frame``: the per-answer ``points`` as an answers frame (energy, latency and prefill are stored in
  tenths, so their means can move the second decimal by one; eval seconds are absent, hence no tokens/s).
* ``load_authors_cells``: the per-(model, dataset) ``agg`` as cells (exact to the 4 decimals published; only
  J/token carries an sd), which the table code accepts in place of cells computed from a frame.
* ``load_authors_traces``: the 2 Hz power traces of the sample questions, as ``AnswerTrace`` records.
"""

from __future__ import annotations

import json
import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from bench.catalog import precision_group
from bench.report.authors_items import SampledAnswer, items_by_cell, sampled_answers
from bench.report.metrics import COUNT_FLAGS, METRICS
from bench.report.traces import AnswerTrace
from bench.results import FRAME_COLUMNS

log = logging.getLogger(__name__)

# agg key -> metric name in cells
AGG_METRICS = {
    "acc": "accuracy", "E": "energy_j", "jpt": "j_per_token", "tok": "tokens", "lat": "latency_s",
    "tps": "tokens_per_s", "prefill": "prefill_s", "gen": "gen_s", "load": "load_s",
}

AUTHORS_TOLERANCE_ABS = 0.05
"""How far means from ``points`` may sit from ``agg``: energy, latency and prefill are stored in tenths, so each
answer is off by at most 0.05 (J or s) and so is any mean of them (J/token: 0.05 / tokens)."""


def load_site(path: Path) -> dict:
    """The parsed site data (cached by path and modification time: several loaders read the same file)."""
    path = Path(path).resolve()
    return _parse(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _parse(path: str, _mtime_ns: int) -> dict:
    data = json.loads(Path(path).read_text("utf-8"))
    for key in ("models", "agg", "points"):
        if key not in data:
            raise ValueError(f"{path}: expected the companion-site format with key {key!r}; found {sorted(data)}")
    return data


def _models(data: dict) -> dict[str, dict]:
    return {m["id"]: m for m in data["models"]}


def _identity(m: dict, meta: dict) -> dict:
    """A site-data model entry as the frame's model facts (its size is published in MB = bytes / 1024^2)."""
    return {"model": m["ollama"], "base": m["fam"], "quant": m["q"], "precision_group": precision_group(m["q"]),
            "parameter_size": meta.get("params", {}).get(m["fam"]), "size_bytes": round(float(m["size"]) * 1024**2)}


def load_authors_frame(path: Path) -> pd.DataFrame:
    """The authors' 26,251 answers as an answers frame (NaN where the site data has no value). Item ids are
    recovered from the data itself (``authors_items``); a row whose item cannot be told has none."""
    data = load_site(path)
    models = _models(data)
    idle_w = float(data.get("meta", {}).get("idleW", math.nan))
    sampled = sampled_answers(data)
    items = items_by_cell(data, sampled)
    traced = {(s.model, s.dataset, s.position): s.trace.energy_j(0.0, s.latency_s) / s.latency_s for s in sampled
              if s.trace is not None and s.position is not None and s.latency_s > 0}
    parts = []
    for mid, per_ds in data["points"].items():
        m = models[mid]
        for ds, p in per_ds.items():
            parts.append(pd.DataFrame({
                **_identity(m, data.get("meta", {})), "dataset": ds,
                "item_id": list(items[(m["ollama"], ds)].item_ids),
                "correct": np.frombuffer(p["ok"].encode("ascii"), dtype=np.uint8) - ord("0"),
                "energy_j": np.asarray(p["E"], dtype=float) / 10,
                "eval_count": np.asarray(p["tok"], dtype=float),
                "total_s": np.asarray(p["lat"], dtype=float) / 10,
                "prompt_eval_s": np.asarray(p["pre"], dtype=float) / 10,
                # mean power of the published window, where a sample answer's power trace shows it
                "mean_w": [traced.get((m["ollama"], ds, i), math.nan) for i in range(len(p["E"]))],
            }))
    frame = pd.concat(parts, ignore_index=True)
    frame["correct"] = frame["correct"].astype(float)
    frame["correct_paper"] = frame["correct"]
    frame["run_id"] = "authors"
    frame["status"] = "ok"
    frame["score_mode"] = "paper"
    frame["idle_w"] = idle_w
    for col in FRAME_COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    log.info("loaded %d authors' answers from %s", len(frame), path)
    return frame[list(FRAME_COLUMNS)]


def load_authors_cells(path: Path) -> pd.DataFrame:
    """The authors' per-(model, dataset) aggregates in the cells schema of ``aggregate.cells``."""
    data = load_site(path)
    models = _models(data)
    rows = []
    for mid, per_ds in data["agg"].items():
        m = models[mid]
        for ds, a in per_ds.items():
            if ds == "all":
                continue
            n = int(a["n"])
            row = {**_identity(m, data.get("meta", {})), "dataset": ds, "n_rows": n, "n_answers": n, "n_failed": 0,
                   **{f"{flag}_n": 0 for flag in COUNT_FLAGS}}
            for metric in METRICS:
                row[metric], row[f"{metric}_sd"], row[f"{metric}_n"] = math.nan, math.nan, 0
            for key, metric in AGG_METRICS.items():
                if key in a:
                    row[metric], row[f"{metric}_n"] = float(a[key]), n
            row["j_per_token_sd"] = float(a.get("jptSd", math.nan))
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "dataset"], ignore_index=True)


def load_authors_traces(path: Path, limit: int = 3) -> list[AnswerTrace]:
    """Power traces of the first ``limit`` sample answers that carry one (2 Hz, centiwatts, ``t0`` offset in s)."""
    data = load_site(path)
    tags = [m["ollama"] for m in data["models"]]
    out: list[AnswerTrace] = []
    for q in data.get("questions", []):
        for a in q.get("answers", []):
            tr = a.get("tr")
            if not tr or not tr.get("p") or not a.get("lat"):
                continue
            t0_ns = round(float(tr["t0"]) * 1e9)
            dt_ns = round(float(tr["dt"]) * 1e9)
            samples = [(t0_ns + i * dt_ns, p / 100.0) for i, p in enumerate(tr["p"])]
            first_s = float(a.get("load") or 0) + float(a.get("pre") or 0)
            out.append(AnswerTrace(
                label=f"{tags[a['m']]} · {q['ds']} (authors' sample, 2 Hz)", samples=tuple(samples),
                t_send_ns=0, t_first_ns=round(first_s * 1e9) if first_s else None,
                t_last_ns=round(float(a["lat"]) * 1e9), idle_w=float(data.get("meta", {}).get("idleW", math.nan)),
            ))
            if len(out) >= limit:
                return out
    return out


def load_authors_sampled(path: Path) -> list[SampledAnswer]:
    """The fully recorded sample answers (response, trace), each placed in its cell."""
    return sampled_answers(load_site(path))

