"""`bench fleet move`: a dead host's unfinished blocks become a new shard on another host, explicitly.

Nothing moves by itself: a host that is only slow or briefly unreachable must not have its blocks run twice. What
is unfinished is judged from the best record the controller has of the dead host: its fetched shard folder
(``shards/<shard>/``, e.g. sealed by hand after its SD card was recovered), else its last status report, else
nothing (every block moves). The new shard records ``moved_from``, so a merge takes those blocks from it and
leaves the dead shard's answers in them out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import results
from bench.errors import FleetError
from bench.fleet.planfile import SPECS_DIR, entries, read_plan, save_plan

Block = tuple[str, str]


def done_counts(fleet_dir: Path, shard: str, host: str) -> tuple[dict[Block, int], str]:
    """Answers per block the controller knows the shard has, and where that knowledge came from."""
    db_path = Path(fleet_dir) / "shards" / shard / "results.db"
    if db_path.is_file():
        db = results.connect_readonly(db_path)
        try:
            return results.answers_per_block(db), f"fetched folder {db_path.parent}"
        finally:
            db.close()
    status = Path(fleet_dir) / "status" / f"{host}.json"
    if status.is_file():
        report = json.loads(status.read_text("utf-8"))
        for s in report.get("shards", []):
            if s.get("name") == shard:
                return {(b["model"], b["dataset"]): b["answers"] for b in s.get("blocks", [])}, \
                    f"status of {report.get('probed_utc', '?')}"
    return {}, "no record (every block moves)"


def move(fleet_dir: Path, from_shard: str, to_host: str) -> tuple[dict[str, Any], str]:
    """Add a shard to the plan holding ``from_shard``'s unfinished blocks, assigned to ``to_host``."""
    doc = read_plan(fleet_dir)
    by_name = {e.name: e for e in entries(doc)}
    if from_shard not in by_name:
        raise FleetError(f"{fleet_dir}/plan.json: no shard {from_shard!r} (shards: {', '.join(by_name)})")
    src = by_name[from_shard]
    if src.role != "work":
        raise FleetError(f"{from_shard}: a calibration run is not moved (each device runs its own)")
    hosts = {h["host"] for h in doc["hosts"]}
    if to_host not in hosts:
        raise FleetError(f"{to_host}: not a host of this plan (hosts: {', '.join(sorted(hosts))})")
    if to_host == src.host:
        raise FleetError(f"{from_shard} already runs on {to_host}; moving means another host")
    if any(e.moved_from == from_shard for e in by_name.values()):
        raise FleetError(f"{from_shard}: its blocks were already moved; move the new shard instead")
    done, source = done_counts(fleet_dir, from_shard, src.host)
    remaining = [b for b in src.blocks if done.get((b["model"], b["dataset"]), 0) < b["answers"]]
    if not remaining:
        raise FleetError(f"{from_shard}: every block is finished ({source}); fetch it instead of moving")
    name = f"{from_shard}-on-{to_host}"
    doc["shards"].append({"name": name, "host": to_host, "role": "work", "spec": f"{SPECS_DIR}/{name}.toml",
                          "blocks": remaining, "moved_from": from_shard})
    save_plan(fleet_dir, doc)
    return doc["shards"][-1], source
