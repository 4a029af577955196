"""Download from the Hugging Face hub at a pinned revision, and cache what `bench data fetch` selected.

The cache is one canonical JSON Lines file per dataset plus ``revision.json`` next to it, recording the requested
and resolved hub revisions and the file's sha256: a later run reads exactly what was fetched (its items are
checked against the paper's hashes), and the record says where it came from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from bench.datasets._files import write_jsonl
from bench.datasets.base import Adapter
from bench.errors import DatasetError
from bench.records import Item

log = logging.getLogger(__name__)

DEFAULT_REVISION = "main"  # resolved to a commit sha at fetch time and recorded; content is pinned by sha256
CACHE_FILE = "items.jsonl"
REVISION_FILE = "revision.json"


def resolve_revision(repo: str, revision: str) -> str:
    """The commit sha a branch or tag points to (the revision itself if the hub cannot be asked)."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo, revision=revision).sha or revision
    except Exception as exc:  # offline, unknown repo, ... : keep going, the load will fail with the real reason
        log.warning("cannot resolve %s@%s: %s", repo, revision, exc)
        return revision


def load_hub(adapter: Adapter, revision: str | None = None) -> tuple[list[Item], dict[str, str]]:
    """Every item of the dataset from the hub, and the resolved revision of each repo used."""
    import datasets  # lazy

    datasets.disable_progress_bars()
    revision = revision or DEFAULT_REVISION
    resolved: dict[str, str] = {}
    items: list[Item] = []
    for part in adapter.hub_parts:
        if part.repo not in resolved:
            resolved[part.repo] = resolve_revision(part.repo, revision)
        where = f"{part.repo}@{resolved[part.repo]} {part.config or 'default'}/{part.split}"
        try:
            ds = datasets.load_dataset(part.repo, part.config, split=part.split, revision=resolved[part.repo])
        except Exception as exc:  # network, auth, missing config: one line naming the part
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise DatasetError(f"{adapter.name}: cannot load {where} from the hub ({first})") from None
        items.extend(adapter.items_from_records(ds.to_list(), part.origin, where))
    return items, resolved


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_cache(directory: Path, adapter: Adapter, items: list[Item], meta: dict[str, Any]) -> Path:
    """``<directory>/<dataset>/items.jsonl`` + ``revision.json``; returns the dataset's cache directory."""
    target = directory / adapter.selection_key
    write_jsonl(target / CACHE_FILE, [dict(item.fields) for item in items])
    record = dict(meta, dataset=adapter.selection_key, n_items=len(items),
                  items_sha256=_sha256_file(target / CACHE_FILE),
                  fetched_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    (target / REVISION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("cached %d %s items in %s", len(items), adapter.selection_key, target)
    return target
