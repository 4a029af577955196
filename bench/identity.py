"""A run's identity, taken once when the run starts: its models' catalog entries, its datasets with their task
versions and exact items, the prompt version. ``bench.results`` stores it; everything downstream of ``run`` reads it
from there, never from today's catalog, so editing a catalog entry cannot change an old folder's report or make its
verification fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from bench.catalog import ModelEntry
from bench.prompts import PROMPT_VERSION
from bench.records import Item, canonical_json, sha256_text
from bench.spec import Spec
from bench.suite import dataset


@dataclass(frozen=True)
class DatasetIdentity:
    """One dataset as the run asked it: its adapter's task version and the exact item ids, in asking order."""

    name: str
    task_version: str
    source: str
    selection: str
    limit: int | None
    item_ids: tuple[str, ...]
    items_sha256: str  # sha256 over the (id, item sha256) pairs: the item set and its content in one hash


@dataclass(frozen=True)
class RunIdentity:
    """What a stored run's numbers mean: the prompt version, every model's catalog entry as it was when the run
    started, every dataset as asked. ``scoring`` maps each scored mode to the scorer version of its stored scores."""

    prompt_version: str
    models: tuple[ModelEntry, ...]
    datasets: tuple[DatasetIdentity, ...]
    scoring: Mapping[str, str] = field(default_factory=dict)


def items_sha256(items: Iterable[Item]) -> str:
    """One hash of an item list: ids and content, in order."""
    return sha256_text(canonical_json([[item.item_id, item.sha256] for item in items]))


def snapshot(spec: Spec, items: Mapping[str, list[Item]]) -> RunIdentity:
    """The identity of a run of ``spec`` whose datasets hold ``items`` (dataset name -> items in asking order)."""
    return RunIdentity(
        prompt_version=PROMPT_VERSION,
        models=tuple(spec.model_entries()),
        datasets=tuple(DatasetIdentity(name=d.name, task_version=dataset(d.name).version, source=d.source,
                                       selection=d.selection, limit=d.limit,
                                       item_ids=tuple(i.item_id for i in items[d.name]),
                                       items_sha256=items_sha256(items[d.name]))
                       for d in spec.datasets),
    )
