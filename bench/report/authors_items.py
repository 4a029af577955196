"""Which item each of the authors' per-answer records is, recovered from their own data.

The site data's ``points`` are parallel arrays in run order with no item ids; its ``questions`` (12 per dataset)
carry the full record of every model's answer. A question's answer is found in its cell's arrays by its
(tokens, energy, latency, prefill) values, giving *anchors* (position -> item). In a cell that answered every item,
position = item (the authors' file order, which ``bench/catalog/selection`` ships); the anchors also show where a
cell skipped items (timeouts are not recorded by the authors' script), ran a prefix subset (HumanEval's first 50),
or started over (duplicates). Between two anchors with the same offset (item - position) the identity is known;
where the offset jumps it is not, and those rows get no item id rather than a guessed one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from bench.datasets.selection import load_selection

log = logging.getLogger(__name__)

MATCH_TENTHS = 1
"""The site stores E, latency and prefill in tenths; a question's 4-decimal value rounds to within one tenth."""

PREFIX_SUBSETS = {"humaneval": 50}
"""Cells that ran a prefix of the items: HumanEval_50_samples.jsonl is HumanEval/0..49 in order (the authors'
preliminary-test subset, used by six cells; paper-facts.md section 2). A shorter cell of that exact size whose
anchors all sit at offset 0 ran that subset."""


@dataclass(frozen=True)
class PowerTrace:
    """The authors' 2 Hz power trace of one answer: sample ``i`` is the mean power (W) of the interval ending at
    ``t0_s + i * dt_s``, in seconds from the answer's ``created_at``."""

    t0_s: float
    dt_s: float
    power_w: tuple[float, ...]

    def times_s(self) -> np.ndarray:
        return self.t0_s + self.dt_s * np.arange(len(self.power_w))

    def energy_j(self, start_s: float, end_s: float) -> float:
        """Raw energy of ``[start_s, end_s]`` as the authors computed it from their 2 Hz log: the cumulative energy
        at the sample nearest the end minus that at the sample nearest the start (NaN if the trace misses either
        edge by more than one sample interval)."""
        t = self.times_s()
        cum = np.cumsum(np.asarray(self.power_w) * self.dt_s)
        i, j = int(np.argmin(np.abs(t - start_s))), int(np.argmin(np.abs(t - end_s)))
        if abs(t[i] - start_s) > self.dt_s or abs(t[j] - end_s) > self.dt_s:
            return float("nan")
        return float(cum[j] - cum[i])


@dataclass(frozen=True)
class SampledAnswer:
    """One fully recorded answer of the site's ``questions``, placed in its cell (``position``, None if unfound)."""

    model: str
    dataset: str
    question: int
    item_index: int | None
    position: int | None
    response: str
    ok: bool
    energy_j: float
    latency_s: float
    tokens: int
    trace: PowerTrace | None


@dataclass(frozen=True)
class CellItems:
    """Item ids of one cell's rows (None where the data cannot tell) and how the cell relates to the selection."""

    item_ids: tuple[str | None, ...]
    kind: str  # complete | prefix | skipped | repeated
    anchors: int


def _tenths(x) -> int:
    return round(float(x) * 10)


def _candidates(cell: dict, answer: dict) -> list[int]:
    tok = np.asarray(cell["tok"])
    hit = tok == answer["tok"]
    for key, value in (("E", answer["E"]), ("lat", answer["lat"]), ("pre", answer.get("pre", 0))):
        hit &= np.abs(np.asarray(cell[key]) - _tenths(value)) <= MATCH_TENTHS
    return [int(j) for j in np.flatnonzero(hit)]


def _trace(answer: dict) -> PowerTrace | None:
    tr = answer.get("tr")
    if not tr or not tr.get("p"):
        return None
    return PowerTrace(float(tr["t0"]), float(tr["dt"]), tuple(p / 100.0 for p in tr["p"]))  # centiwatts -> W


def _question_items(data: dict, sizes: dict[str, int]) -> dict[int, int]:
    """Each question's item index: its (unique) position in the cells that answered every item, by majority."""
    models = data["models"]
    out = {}
    for qi, q in enumerate(data["questions"]):
        votes: dict[int, int] = {}
        for a in q["answers"]:
            cell = data["points"][models[a["m"]]["id"]][q["ds"]]
            hits = _candidates(cell, a)
            if len(cell["E"]) == sizes[q["ds"]] and len(hits) == 1:
                votes[hits[0]] = votes.get(hits[0], 0) + 1
        if votes:
            out[qi] = max(votes, key=votes.get)
    return out


def sampled_answers(data: dict) -> list[SampledAnswer]:
    """Every answer of ``questions`` with its item and its position in the cell's arrays (nearest candidate to the
    item's own index when several rows carry the same values)."""
    sizes = {ds: len(load_selection(ds).entries) for ds in {q["ds"] for q in data["questions"]}}
    items = _question_items(data, sizes)
    models = data["models"]
    out = []
    for qi, q in enumerate(data["questions"]):
        item = items.get(qi)
        for a in q["answers"]:
            m = models[a["m"]]
            hits = _candidates(data["points"][m["id"]][q["ds"]], a)
            pos = min(hits, key=lambda j: (abs(j - item), j)) if hits and item is not None else None
            out.append(SampledAnswer(model=m["ollama"], dataset=q["ds"], question=qi, item_index=item, position=pos,
                                     response=a.get("resp", ""), ok=bool(a.get("ok")), energy_j=float(a["E"]),
                                     latency_s=float(a["lat"]), tokens=int(a["tok"]), trace=_trace(a)))
    return out


def cell_items(n_rows: int, size: int, ids: tuple[str, ...], anchors: dict[int, int], dataset: str) -> CellItems:
    """Item ids for a cell of ``n_rows`` answers of a ``size``-item selection, from its ``anchors`` (pos -> item)."""
    positions = sorted(anchors)
    offsets = [anchors[p] - p for p in positions]
    if all(o == 0 for o in offsets) and (n_rows == size or (positions and PREFIX_SUBSETS.get(dataset) == n_rows)):
        return CellItems(tuple(ids[:n_rows]), "complete" if n_rows == size else "prefix", len(positions))
    known: list[str | None] = [None] * n_rows

    def fill(first: int, last: int, offset: int) -> None:
        for p in range(max(first, 0), min(last, n_rows - 1) + 1):
            if 0 <= p + offset < size:
                known[p] = ids[p + offset]

    for (p1, o1), (p2, o2) in pairwise(zip(positions, offsets)):
        if o1 == o2:  # no skip and no restart between two anchors with the same offset
            fill(p1, p2, o1)
    for p, o in zip(positions, offsets):
        fill(p, p, o)
    if offsets and offsets[0] == 0:  # nothing skipped before the first anchor
        fill(0, positions[0], 0)
    if offsets and n_rows - 1 + offsets[-1] == size - 1:  # nothing skipped after the last anchor
        fill(positions[-1], n_rows - 1, offsets[-1])
    restarted = n_rows > size or any(b < a for a, b in pairwise(offsets))
    return CellItems(tuple(known), "repeated" if restarted else "skipped", len(positions))


def align(x: np.ndarray, y: np.ndarray, anchors: dict[int, int]) -> dict[int, int]:
    """Place the rows of a cell that skipped ``len(y) - len(x)`` items: rows keep their order, row ``i`` goes to
    item ``i + s`` (``s`` = items skipped so far), its log prefill duration ``x[i]`` matching the reference cell's
    ``y[i + s]`` up to a constant (the model's speed); anchors are kept. Prefill time follows prompt length, so where
    prompts differ from item to item (HumanEval, BBH) this pins the skips. A row is placed only when every
    alignment that puts it elsewhere costs clearly more than the best (max-marginals of the L1 fit), so rows where
    the skip could sit in several places stay unplaced."""
    n, skips = len(x), len(y) - len(x)
    if skips <= 0 or not anchors:
        return dict(anchors)
    shift = float(np.median([x[p] - y[i] for p, i in anchors.items()]))
    here = np.abs(x[:, None] - np.lib.stride_tricks.sliding_window_view(y, n)[: skips + 1].T - shift)
    for p, i in anchors.items():
        banned = np.arange(skips + 1) != i - p
        here[p, banned] = np.inf
    fwd, bwd = np.empty_like(here), np.empty_like(here)
    fwd[0] = here[0]
    for i in range(1, n):
        fwd[i] = here[i] + np.minimum.accumulate(fwd[i - 1])  # skips never decrease along the rows
    bwd[-1] = here[-1]
    for i in range(n - 2, -1, -1):
        bwd[i] = here[i] + np.minimum.accumulate(bwd[i + 1][::-1])[::-1]
    with np.errstate(invalid="ignore"):
        through = np.where(np.isfinite(here), fwd + bwd - here, np.inf)
    best = float(through.min())
    if not np.isfinite(best):
        return dict(anchors)
    margin = max(4 * float(np.median(np.min(here, axis=1))), 0.1)
    placed = dict(anchors)
    for i in range(n):
        order = np.argsort(through[i])
        if through[i, order[1]] - through[i, order[0]] > margin:
            placed[i] = i + int(order[0])
    return placed


def reference_prefill(data: dict, ds: str, base: str, size: int) -> np.ndarray | None:
    """Log prefill durations of a cell that answered every item: same base model (same tokenizer) first."""
    full = [(m["fam"] != base, m["id"]) for m in data["models"] if len(data["points"][m["id"]][ds]["pre"]) == size]
    if not full:
        return None
    return np.log(np.maximum(np.asarray(data["points"][min(full)[1]][ds]["pre"], dtype=float), 1.0))


def items_by_cell(data: dict, sampled: list[SampledAnswer]) -> dict[tuple[str, str], CellItems]:
    """(model tag, dataset) -> the cell's item ids, for every cell of ``points``."""
    anchors: dict[tuple[str, str], dict[int, int]] = {}
    for s in sampled:
        if s.position is not None and s.item_index is not None:
            anchors.setdefault((s.model, s.dataset), {})[s.position] = s.item_index
    out = {}
    for m in data["models"]:
        for ds, cell in data["points"][m["id"]].items():
            ids = load_selection(ds).ids
            known = dict(anchors.get((m["ollama"], ds), {}))
            prefix = PREFIX_SUBSETS.get(ds) == len(cell["pre"])
            ref = reference_prefill(data, ds, m["fam"], len(ids)) if len(cell["pre"]) < len(ids) and not prefix else None
            if ref is not None:
                known = align(np.log(np.maximum(np.asarray(cell["pre"], dtype=float), 1.0)), ref, known)
            out[(m["ollama"], ds)] = cell_items(len(cell["E"]), len(ids), ids, known, ds)
    unknown = sum(c.item_ids.count(None) for c in out.values())
    log.info("authors' items: %d cells, %d rows of unknown identity", len(out), unknown)
    return out
