"""Where items come from, and the paper's exact selection.

`read_items(adapter, source)` returns `Item`s whose ``fields`` are the dataset's canonical (hub-shaped) record, so
`Item.sha256` is the same whichever source loaded it; with ``selection="paper"`` every item is checked against the
shipped ids and hashes. Which datasets exist, and by which name, is `bench.suite`'s to say.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

from bench.datasets.base import Adapter
from bench.datasets.selection import apply_selection, load_selection
from bench.errors import DatasetError
from bench.records import Item

log = logging.getLogger(__name__)

KINDS = ("fixtures", "cache", "hub", "files")
SELECTIONS = ("paper", "all")


@dataclass(frozen=True)
class DataSource:
    """Where items come from: shipped ``fixtures``, the ``cache`` of `bench data fetch`, the ``hub`` at a
    revision, or a directory of upstream-format ``files``; ``selection`` "paper" (verified) or "all"."""

    kind: str = "cache"
    selection: str = "paper"
    limit: int | None = None
    path: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"data source kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.selection not in SELECTIONS:
            raise DatasetError(f"data selection: expected one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise DatasetError(f"data limit: expected a non-negative int or None, got {self.limit!r}")


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_DATA_DIR") or Path.home() / ".cache" / "edge-llm-bench" / "data")


def fixtures_dir(a: Adapter) -> Path:
    return Path(str(resources.files("bench.catalog").joinpath("fixtures", a.selection_key)))


def _source_items(a: Adapter, source: DataSource) -> tuple[list[Item], str]:
    if source.kind == "fixtures":
        directory = fixtures_dir(a)
        return a.read_dir(directory), f"fixtures {directory}"
    if source.kind == "cache":
        directory = (Path(source.path) if source.path else default_cache_dir()) / a.selection_key
        if not directory.is_dir():
            raise DatasetError(f"{a.name}: no cached data in {directory}; run `bench data fetch {a.selection_key}`")
        return a.read_dir(directory), f"cache {directory}"
    if source.kind == "files":
        if not source.path:
            raise DatasetError(f"{a.name}: data source 'files' needs a path")
        base = Path(source.path)
        directory = base / a.selection_key if (base / a.selection_key).is_dir() else base
        return a.read_dir(directory), f"files {directory}"
    from bench.datasets.hub import load_hub

    items, resolved = load_hub(a, source.revision)
    return items, "hub " + ", ".join(f"{repo}@{rev}" for repo, rev in resolved.items())


def read_items(a: Adapter, source: DataSource) -> list[Item]:
    """The items of one dataset from ``source``: the paper's (verified, authors' order) or all, first ``limit``."""
    items, where = _source_items(a, source)
    if source.selection == "paper":
        items = apply_selection(a.name, a.selection_key, items, where)
    if source.limit is not None:
        items = items[: source.limit]
    log.info("%s: %d items (%s, selection %s)", a.name, len(items), where, source.selection)
    return items


def fetch(adapters: Iterable[Adapter], dest: Path | str | None = None, revision: str | None = None,
          selection: str = "paper") -> dict[str, Path]:
    """Download from the hub, select, verify and cache; one directory per dataset with its revision record (a
    variant shares its dataset's, fetched once)."""
    from bench.datasets.hub import DEFAULT_REVISION, load_hub, write_cache

    directory = Path(dest) if dest else default_cache_dir()
    by_key: dict[str, Adapter] = {}
    for a in adapters:
        by_key.setdefault(a.selection_key, a)
    done: dict[str, Path] = {}
    for a in by_key.values():
        items, resolved = load_hub(a, revision)
        if selection == "paper":
            items = apply_selection(a.name, a.selection_key, items, "hub")
        meta = {"requested_revision": revision or DEFAULT_REVISION, "resolved_revisions": resolved,
                "selection": selection, "task_version": a.task_version, "id_scheme": a.id_scheme}
        done[a.selection_key] = write_cache(directory, a, items, meta)
    return done


def verify(adapters: Iterable[Adapter], dest: Path | str | None = None) -> dict[str, str]:
    """Check a cache against the paper's selection: ``{dataset: "ok: N items" | error message}``."""
    directory = Path(dest) if dest else default_cache_dir()
    report: dict[str, str] = {}
    for a in adapters:
        try:
            items = read_items(a, DataSource(kind="cache", selection="paper", path=str(directory)))
            report[a.name] = f"ok: {len(items)} items match the paper's selection"
        except DatasetError as exc:
            report[a.name] = f"FAILED: {exc}"
    return report


__all__ = ["DataSource", "read_items", "fetch", "verify", "load_selection", "fixtures_dir"]
