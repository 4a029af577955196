"""What every dataset adapter declares: where its data lives, how an upstream record becomes canonical fields,
and how canonical fields become an `Item`.

The canonical form of each dataset is its Hugging Face hub record (the authors' files and the original releases
are normalised to it), so an item hashes the same whichever source loaded it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.datasets._files import SUFFIXES, read_records
from bench.errors import DatasetError
from bench.records import Item

log = logging.getLogger(__name__)

_SPLIT_RANK = ("train", "dev", "validation", "valid", "test")
NOT_DATA = {"revision.json"}  # the cache's provenance record sits next to the data


class MissingField(Exception):
    """Raised by canonicalisers; turned into a DatasetError naming the file, record and field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def need(record: Mapping[str, Any], dotted: str) -> Any:
    """``record['a']['b']`` for ``'a.b'``, raising MissingField when absent or null."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or value.get(part) is None:
            raise MissingField(dotted)
        value = value[part]
    return value


def short_sha(text: str, n: int = 16) -> str:
    """Stable key for datasets without ids: the first ``n`` hex digits of sha256(text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


@dataclass(frozen=True)
class HubPart:
    """One `load_dataset(repo, config, split=...)` call; ``origin`` is passed to the canonicaliser."""

    repo: str
    config: str | None
    split: str
    origin: str = ""


@dataclass(frozen=True)
class Adapter:
    """A dataset: its hub parts, canonicaliser and item construction."""

    name: str
    task_version: str
    id_scheme: str
    hub_parts: tuple[HubPart, ...]
    canonical: Callable[[Mapping[str, Any], str], dict[str, Any]]
    item_id: Callable[[Mapping[str, Any]], str]
    reference: Callable[[Mapping[str, Any], str], Any]
    json_field: Callable[[Path], str | None] = lambda path: None
    selection_name: str = ""

    @property
    def selection_key(self) -> str:
        """The dataset whose selection, cache and fixtures this one uses (itself unless a variant)."""
        return self.selection_name or self.name

    def files(self, directory: Path) -> list[Path]:
        """Data files in ``directory``, train-like splits first, then by name (the authors combined train+dev)."""
        found = [p for p in directory.iterdir()
                 if p.is_file() and p.name.endswith(SUFFIXES) and p.name not in NOT_DATA and not p.name.startswith(".")]

        def rank(path: Path) -> tuple[int, str]:
            stem = path.name.lower()
            hits = [i for i, key in enumerate(_SPLIT_RANK) if key in stem]
            return (hits[0] if hits else len(_SPLIT_RANK), path.name)

        return sorted(found, key=rank)

    def make_item(self, fields: dict[str, Any]) -> Item:
        item_id = self.item_id(fields)
        ref = self.reference(fields, item_id)
        return Item(dataset=self.name, item_id=item_id, fields=fields, reference=ref)

    def items_from_records(self, records: list[Mapping[str, Any]], origin: str, where: str) -> list[Item]:
        items = []
        for index, record in enumerate(records):
            try:
                fields = self.canonical(record, origin)
            except MissingField as exc:
                raise DatasetError(f"{where}: record {index + 1}: missing field {exc.field!r}") from None
            items.append(self.make_item(fields))
        return items

    def read_dir(self, directory: Path) -> list[Item]:
        """Every item of every data file in ``directory``, in file order."""
        if not directory.is_dir():
            raise DatasetError(f"{self.name}: data directory {directory} does not exist")
        paths = self.files(directory)
        if not paths:
            raise DatasetError(f"{self.name}: no data files ({', '.join(SUFFIXES)}) in {directory}")
        items: list[Item] = []
        for path in paths:
            records = read_records(path, self.json_field(path))
            origin = path.name.split(".")[0]
            items.extend(self.items_from_records(records, origin, str(path)))
        log.info("%s: %d items from %s", self.name, len(items), directory)
        return items
