"""Predicted cost of each (model, dataset) block, so the planner can balance hosts before anything has run.

A block costs (answers in it) x (seconds per answer). Seconds per answer come, in order of preference, from a
previous run of ours (mean host-clock answer time in the given result folders: our own hardware and protocol) or
from the authors' published per-cell mean latency (``published.json``, ``models.<tag>.datasets.<ds>.lat``: Ollama's
total duration on their Pi 4). Switching a host to another model costs a load (model bytes / storage read rate),
and every shard measures its own idle baseline first. The numbers are predictions, printed as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.catalog import model as catalog_model
from bench.datasets import DataSource
from bench.datasets.selection import load_selection
from bench.errors import FleetError
from bench.spec import Spec
from bench.suite import dataset as registered, load_items

# A Pi 4 reads its SD card at up to ~45 MB/s (the DDR50 bus tops out at 50 MB/s); Ollama loads the whole file.
DEFAULT_LOAD_MB_S = 45.0


@dataclass(frozen=True)
class Block:
    """One (model, dataset) block: how many answers, and the predicted seconds for all of them on a 1.0-speed Pi."""

    model: str
    dataset: str
    answers: int
    seconds: float
    source: str  # where the per-answer time came from: "published" or "run" (a --from-run folder)


@dataclass(frozen=True)
class CostModel:
    """Per-answer seconds by (model, dataset) from earlier runs, then the published table; the load rate."""

    measured: dict[tuple[str, str], float]
    load_mb_s: float = DEFAULT_LOAD_MB_S

    def per_answer(self, tag: str, dataset: str) -> tuple[float, str]:
        if (tag, dataset) in self.measured:
            return self.measured[(tag, dataset)], "run"
        from bench.report.published import load_published

        published_as = registered(dataset).adapter.selection_key  # a variant is timed as its dataset
        cell = load_published()["models"].get(tag, {}).get("datasets", {}).get(published_as)
        if cell is None or not cell.get("lat"):
            raise FleetError(f"no predicted time for block ({tag}, {dataset}): not in the published per-cell "
                             f"latencies; pass --from-run with a result folder that ran it")
        return float(cell["lat"]), "published"

    def reload_s(self, tag: str) -> float:
        """Seconds to load a model when a host switches to it."""
        return catalog_model(tag).size_bytes / (self.load_mb_s * 1e6)


def measured_times(result_dirs: list[Path]) -> dict[tuple[str, str], float]:
    """Mean host-clock seconds per answer by (model, dataset) in earlier result folders (later folders win)."""
    from bench.results import answers_frame

    out: dict[tuple[str, str], float] = {}
    for d in result_dirs:
        db = Path(d) / "results.db"
        if not db.is_file():
            raise FleetError(f"{d}: --from-run: no results.db (expected a result folder written by `bench run`)")
        frame = answers_frame(db)
        ok = frame[frame["status"] == "ok"]
        for (tag, ds), secs in ok.groupby(["model", "dataset"])["host_total_s"].mean().items():
            if math.isfinite(secs):
                out[(tag, ds)] = float(secs)
    return out


def answers_per_dataset(spec: Spec) -> dict[str, int]:
    """Items per dataset as the spec selects them; the paper's selection is counted from the shipped ids, so a
    controller needs no dataset cache to plan the paper spec."""
    counts = {}
    for ds in spec.datasets:
        if ds.selection == "paper":
            n = len(load_selection(registered(ds.name).adapter.selection_key).ids)
        else:
            source = DataSource(kind=ds.source, selection=ds.selection, limit=ds.limit, path=ds.path,
                                revision=ds.revision)
            n = len(load_items(ds.name, source))
        counts[ds.name] = min(n, ds.limit) if ds.limit is not None else n
    return counts


def blocks(spec: Spec, costs: CostModel) -> list[Block]:
    """Every block of the spec, in the spec's order, with its predicted cost."""
    counts = answers_per_dataset(spec)
    out = []
    for tag, ds in spec.blocks():
        secs, source = costs.per_answer(tag, ds)
        out.append(Block(tag, ds, counts[ds], counts[ds] * secs, source))
    return out


def spec_seconds(spec: Spec, costs: CostModel) -> float:
    """A whole spec run on one host, model loads and idle baseline included (the calibration set's cost)."""
    bl = blocks(spec, costs)
    return sum(b.seconds for b in bl) + sum(costs.reload_s(t) for t in dict.fromkeys(b.model for b in bl)) \
        + spec.idle.duration_s
