"""The per-device view of a merged fleet folder, and how far apart the devices themselves are.

Every host ran the same calibration set (the fleet's small common spec), so any spread between devices on it
is the devices' own (board, power supply, meter, SD card, temperature), not the models'. Its size, per metric, is
the relative range ``(max - min) / mean`` across devices, taken as the largest over the calibration's models. A
difference between two models that ran on different devices is only told apart from device variance when it is
larger than that spread; the report counts those pairs and lists the ones that are not.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from bench import results
from bench.report.metrics import derive

METRICS = {"idle_w": "idle power (W)", "j_per_token": "J/token", "tokens_per_s": "tokens/s"}
MODEL_METRICS = ("j_per_token", "tokens_per_s")  # idle power is the device's, not a model's


def _per_answer(frame: pd.DataFrame) -> pd.DataFrame:
    d = derive(frame)
    d["device"] = frame.loc[d.index, "device"] if "device" in frame.columns else None
    d["idle_w"] = pd.to_numeric(frame.loc[d.index, "idle_w"], errors="coerce")
    return d


def calibration_rows(db_path: Path) -> list[dict[str, Any]]:
    """One calibration run's means per model: answers, idle baseline, J/token, tokens/s (the paper's definitions)."""
    from bench.results import answers_frame

    d = _per_answer(answers_frame(db_path))
    rows = []
    for model, g in d.groupby("model", sort=True):
        rows.append({"model": model, "n_answers": int(len(g)),
                     **{m: _finite(g[m].mean()) for m in METRICS}})
    return rows


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


@dataclass(frozen=True)
class DeviceData:
    devices: pd.DataFrame       # device, signer, facts (dict)
    calibration: pd.DataFrame   # device, model, n_answers, idle_w, j_per_token, tokens_per_s


def load_devices(db_path: Path) -> DeviceData | None:
    """The devices and calibration tables of a merged DB; None for a single-machine run."""
    tables = results.device_tables(db_path)
    if tables is None or tables[0].empty:
        return None
    devices, calibration = tables
    devices["facts"] = [json.loads(f) for f in devices.pop("facts_json")]
    return DeviceData(devices, calibration)


def device_spread(calibration: pd.DataFrame) -> dict[str, float | None]:
    """Per metric: the largest relative range across devices over the calibration's models (None: < 2 devices)."""
    out: dict[str, float | None] = {}
    for m in METRICS:
        spreads = []
        for _, g in calibration.groupby("model"):
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            if len(v) >= 2 and v.mean() > 0:
                spreads.append(float((v.max() - v.min()) / v.mean()))
        out[m] = max(spreads) if spreads else None
    return out


def cross_device(frame: pd.DataFrame, spread: dict[str, float | None]) -> dict[str, Any]:
    """Pairs of (model, dataset) cells of the same dataset run on different devices, per model metric: how many
    differ by more than the devices' own spread, and the ones that do not."""
    d = _per_answer(frame)
    cells = d.groupby(["model", "dataset"]).agg(device=("device", "first"),
                                                 **{m: (m, "mean") for m in MODEL_METRICS}).reset_index()
    out: dict[str, Any] = {}
    for m in MODEL_METRICS:
        s = spread.get(m)
        pairs, within = 0, []
        for ds, g in cells.groupby("dataset"):
            for a, b in combinations(g.itertuples(), 2):
                va, vb = getattr(a, m), getattr(b, m)
                if a.device == b.device or not (math.isfinite(va) and math.isfinite(vb)) or va + vb <= 0:
                    continue
                pairs += 1
                rel = abs(va - vb) / ((va + vb) / 2)
                if s is None or rel <= s:
                    within.append({"dataset": ds, "a": a.model, "b": b.model, "devices": [a.device, b.device],
                                   "difference": round(rel, 4)})
        out[m] = {"spread": s, "pairs": pairs, "exceeding": pairs - len(within) if s is not None else None,
                  "within_spread": within}
    return out


def summarise_variance(db_path: Path) -> dict[str, Any]:
    """The merge's verdict on device variance: spread per metric and the cross-device model differences."""
    from bench.results import answers_frame

    data = load_devices(db_path)
    if data is None or data.calibration.empty:
        return {"note": "no calibration runs merged: device-to-device spread unknown"}
    spread = device_spread(data.calibration)
    return {"devices": sorted(set(data.calibration["device"])), "spread": spread,
            "cross_device": cross_device(answers_frame(db_path), spread)}


@dataclass(frozen=True)
class DeviceView:
    """What the report shows: per device, the calibration per device and model, the spread and the verdicts."""

    per_device: pd.DataFrame
    calibration: pd.DataFrame
    spread: dict[str, float | None]
    cross: dict[str, Any]


def device_view(frame: pd.DataFrame, data: DeviceData | None) -> DeviceView | None:
    if data is None or "device" not in frame.columns:
        return None
    d = _per_answer(frame)
    per = d.groupby("device").agg(answers=("model", "size"), models=("model", "nunique"),
                                  idle_w=("idle_w", "mean"), j_per_token=("j_per_token", "mean"),
                                  tokens_per_s=("tokens_per_s", "mean")).reset_index()
    per["signer"] = per["device"].map(dict(zip(data.devices["device"], data.devices["signer"])))
    spread = device_spread(data.calibration)
    return DeviceView(per, data.calibration, spread, cross_device(frame, spread))


def _f(x: Any, digits: int = 3) -> str:
    try:
        return f"{float(x):.{digits}f}" if math.isfinite(float(x)) else "–"
    except (TypeError, ValueError):
        return "–"


def _tables(v: DeviceView) -> list[tuple[str, list[str], list[list[str]]]]:
    per = [[r.device, str(r.answers), str(r.models), _f(r.idle_w), _f(r.j_per_token), _f(r.tokens_per_s, 2),
            str(r.signer)] for r in v.per_device.itertuples()]
    cal = [[r.device, r.model, str(r.n_answers), _f(r.idle_w), _f(r.j_per_token), _f(r.tokens_per_s, 2)]
           for r in v.calibration.itertuples()]
    spread = [[METRICS[m], "–" if s is None else f"{100 * s:.1f}%"] for m, s in v.spread.items()]
    verdict = []
    for m, c in v.cross.items():
        told = "–" if c["exceeding"] is None else str(c["exceeding"])
        verdict.append([METRICS[m], str(c["pairs"]), told, str(len(c["within_spread"]))])
    return [
        ("Answers per device", ["device", "answers", "models", "idle W", "J/token", "tokens/s", "signed by"], per),
        ("Calibration set on every device", ["device", "model", "answers", "idle W", "J/token", "tokens/s"], cal),
        ("Device-to-device spread (max - min) / mean, largest over the calibration's models", ["metric", "spread"],
         spread),
        ("Model differences across devices vs the devices' own spread",
         ["metric", "cross-device pairs", "larger than the spread", "within it"], verdict),
    ]


def html_section(v: DeviceView, table) -> str:
    """The section for report.html; ``table(header, rows)`` is the report's own table renderer."""
    parts = ["<h2>Devices of the fleet</h2>",
             "<p>Each answer was run on one device (the merged folder records which). The calibration set ran on "
             "every device; a model difference smaller than the devices' own spread cannot be told apart from "
             "the device it ran on.</p>"]
    for title, header, rows in _tables(v):
        parts.append(f"<h3>{html.escape(title)}</h3>" + table(header, rows))
    within = [w for c in v.cross.values() for w in c["within_spread"]]
    if within:
        rows = [[w["dataset"], w["a"], w["b"], " vs ".join(map(str, w["devices"])), f"{100 * w['difference']:.1f}%"]
                for w in within]
        parts.append("<details><summary>differences within the device spread</summary>"
                     + table(["dataset", "model a", "model b", "devices", "difference"], rows) + "</details>")
    return "\n".join(parts)


def markdown_section(v: DeviceView, table) -> list[str]:
    out = ["## Devices of the fleet", ""]
    for title, header, rows in _tables(v):
        out += [f"### {title}", "", table(header, rows), ""]
    return out
