"""`bench verify` on a merged fleet folder: from the merged answers back to each device's key.

A merged folder's own signature (the controller's key) covers everything in it, including ``shards/<name>/``,
the shard folders exactly as their devices sealed them. This check adds the chain: each embedded shard verifies
on its own against the fleet's allowed signers (``fleet_signers``) as its host's principal; the manifest names
the same shard manifests and checksums; and every device's answers in ``results.db`` (content, energy windows,
scores) are exactly that device's shard answers in the blocks the merge took from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import results
from bench.errors import FleetError, ProvenanceError
from bench.fleet.shardfolder import load_shard
from bench.provenance.checksums import MANIFEST_NAME, SUMS_NAME, sha256_file

SHARDS_DIR = "shards"  # a merged folder's embedded shard folders, as their devices sealed them
FLEET_SIGNERS = "fleet_signers"  # the fleet's allowed signers, one principal per device


def is_merged(root: Path) -> bool:
    return (Path(root) / SHARDS_DIR).is_dir() and (Path(root) / FLEET_SIGNERS).is_file()


def check(root: Path, predicate: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, problem) pairs; empty when the chain holds."""
    root = Path(root)
    fleet = predicate.get("fleet")
    if not isinstance(fleet, dict) or not isinstance(fleet.get("shards"), list):
        return [(MANIFEST_NAME, "a folder with shards/ must carry the merge's fleet facts (predicate.fleet)")]
    problems: list[tuple[str, str]] = []
    listed = {s.get("folder") for s in fleet["shards"]}
    for extra in sorted(p.name for p in (root / SHARDS_DIR).iterdir() if f"{SHARDS_DIR}/{p.name}" not in listed):
        problems.append((f"{SHARDS_DIR}/{extra}", "embedded shard not named in the manifest's fleet facts"))
    for entry in fleet["shards"]:
        folder = str(entry.get("folder"))
        path = root / folder
        try:
            shard = load_shard(path, root / FLEET_SIGNERS)
        except (FleetError, ProvenanceError) as exc:
            problems.append((folder, str(exc).removeprefix(f"{path}: ")))
            continue
        for name, digest_key in ((MANIFEST_NAME, "manifest_sha256"), (SUMS_NAME, "sums_sha256")):
            if sha256_file(path / name) != entry.get(digest_key):
                problems.append((f"{folder}/{name}", f"differs from the {digest_key} the merge recorded"))
        if shard.shard.role != "work":
            continue
        kept = [tuple(b) for b in entry.get("blocks_kept", [])]
        mine = _answer_digest(path / "results.db", None, kept)
        merged = _answer_digest(root / "results.db", shard.shard.host, kept)
        if mine != merged:
            problems.append(("results.db", f"answers of device {shard.shard.host} differ from {folder}/results.db"))
    return problems


def _answer_digest(db_path: Path, device: str | None, blocks: list[tuple[str, str]]) -> str:
    db = results.connect_readonly(db_path)
    try:
        return results.answer_digest(db, device, blocks)
    finally:
        db.close()
