"""The paper's item selection, shipped as facts (ids and content hashes, in the authors' order), never content.

`bench/catalog/selection/<dataset>.json` is made by `scripts/make_selection.py` from the authors' sampled files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from bench.errors import DatasetError
from bench.records import Item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Ids and sha256 of the paper's items, in the authors' order."""

    dataset: str
    id_scheme: str
    source: str
    entries: tuple[tuple[str, str], ...]  # (item_id, sha256)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(item_id for item_id, _ in self.entries)


@lru_cache(maxsize=None)
def load_selection(dataset: str) -> Selection:
    ref = resources.files("bench.catalog").joinpath("selection", f"{dataset}.json")
    try:
        doc = json.loads(ref.read_text(encoding="utf-8"))
        entries = tuple((e["id"], e["sha256"]) for e in doc["items"])
        return Selection(dataset, doc["id_scheme"], doc["source"], entries)
    except FileNotFoundError:
        raise DatasetError(f"{dataset}: no paper selection shipped (bench/catalog/selection/{dataset}.json)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"bench/catalog/selection/{dataset}.json: corrupt ({exc!r})") from None


def apply_selection(dataset: str, selection_key: str, items: list[Item], where: str) -> list[Item]:
    """The paper's items in the paper's order; any missing item or changed content is an error naming it."""
    selection = load_selection(selection_key)
    by_id: dict[str, Item] = {}
    for item in items:
        by_id.setdefault(item.item_id, item)
    chosen = []
    for item_id, sha in selection.entries:
        item = by_id.get(item_id)
        if item is None:
            raise DatasetError(f"{dataset}: item {item_id!r} of the paper's selection is missing from {where}")
        if item.sha256 != sha:
            raise DatasetError(
                f"{dataset}: item {item_id!r} differs from the paper's selection "
                f"(sha256 {item.sha256[:12]}…, expected {sha[:12]}…) in {where}"
            )
        chosen.append(item)
    log.info("%s: %d items match the paper's selection", dataset, len(chosen))
    return chosen
