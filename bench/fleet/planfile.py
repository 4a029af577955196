"""The plan on disk: ``<fleet dir>/plan.json`` and one spec per shard under ``<fleet dir>/specs/``.

The fleet dir is the controller's working folder for one fleet experiment: the playbook copies the specs to the
hosts from it, probes write ``status/<host>.json`` into it, finished shard folders are fetched into
``shards/<shard>/``, and ``bench merge`` reads them from there. The plan id is a hash of what was assigned, so
planning the same spec on the same inventory again gives the same plan (and writing it again is a no-op).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import __version__
from bench.errors import FleetError
from bench.fleet.plan import Assignment
from bench.records import canonical_json, sha256_text
from bench.results import utc_now
from bench.spec import ShardSpec, Spec, parse_spec, with_shard

PLAN_NAME = "plan.json"
SPECS_DIR = "specs"


@dataclass(frozen=True)
class ShardEntry:
    """One shard of the plan: its spec file (relative to the fleet dir), its host, blocks and predicted answers."""

    name: str
    host: str
    role: str
    spec: str
    blocks: list[dict[str, Any]]
    moved_from: str | None = None

    @property
    def answers(self) -> int:
        return sum(b["answers"] for b in self.blocks)


def calibration_name(host: str) -> str:
    return f"calibration-{host}"


def plan_doc(spec: Spec, calibration: Spec, assignment: Assignment, *, load_mb_s: float,
             calibration_s: float) -> dict[str, Any]:
    """plan.json's content (shard specs are written from it by :func:`write_plan`)."""
    shards = []
    for hp in assignment.hosts:
        shards.append({"name": hp.host.name, "host": hp.host.name, "role": "work",
                       "spec": f"{SPECS_DIR}/{hp.host.name}.toml",
                       "blocks": [{"model": b.model, "dataset": b.dataset, "answers": b.answers,
                                   "seconds": round(b.seconds, 1), "source": b.source} for b in hp.blocks]})
        name = calibration_name(hp.host.name)
        shards.append({"name": name, "host": hp.host.name, "role": "calibration", "spec": f"{SPECS_DIR}/{name}.toml",
                       "blocks": []})
    identity = {"spec": spec.sha256, "calibration": calibration.sha256,
                "hosts": [[s["host"], s["role"], [[b["model"], b["dataset"]] for b in s["blocks"]]] for s in shards]}
    return {
        "plan_id": sha256_text(canonical_json(identity))[:16],
        "toolkit_version": __version__,
        "spec": {"name": spec.name, "sha256": spec.sha256, "toml": spec.source_text},
        "calibration": {"name": calibration.name, "sha256": calibration.sha256, "toml": calibration.source_text,
                        "predicted_s": round(calibration_s, 1)},
        "cost_model": {"load_mb_s": load_mb_s, "idle_baseline_s": spec.idle.duration_s},
        "hosts": [{"host": hp.host.name, "speed": hp.host.speed, "predicted_hours": round(hp.hours, 3),
                   "reloads": hp.reloads} for hp in assignment.hosts],
        "makespan_hours": round(assignment.makespan_h, 3),
        "mean_hours": round(assignment.mean_h, 3),
        "balance": round(assignment.balance, 4),
        "shards": shards,
    }


def shard_spec_text(doc: dict[str, Any], entry: ShardEntry) -> str:
    """The spec a shard runs: its parent's text (the work spec or the calibration spec) plus its [shard] table."""
    parent_key = "spec" if entry.role == "work" else "calibration"
    parent = parse_spec(doc[parent_key]["toml"], doc[parent_key]["name"])
    blocks = tuple((b["model"], b["dataset"]) for b in entry.blocks) if entry.blocks else parent.blocks()
    shard = ShardSpec(plan=doc["plan_id"], name=entry.name, host=entry.host, role=entry.role,
                      parent_sha256=parent.sha256, blocks=blocks, moved_from=entry.moved_from)
    text = with_shard(parent.source_text, shard)
    parse_spec(text, entry.spec)  # what we write must load
    return text


def entries(doc: dict[str, Any]) -> list[ShardEntry]:
    return [ShardEntry(**s) for s in doc["shards"]]


def write_plan(fleet_dir: Path, doc: dict[str, Any], *, replace: bool = False) -> Path:
    """Write plan.json and every shard spec; refuses to overwrite a different plan unless ``replace``."""
    fleet_dir = Path(fleet_dir)
    path = fleet_dir / PLAN_NAME
    if path.exists() and not replace:
        old = read_plan(fleet_dir)
        if old["plan_id"] != doc["plan_id"]:
            raise FleetError(f"{path}: holds plan {old['plan_id']} (its shards may be running); pass --replace to "
                             f"write plan {doc['plan_id']} instead")
        doc = old  # same assignment: keep the original (its creation time, any moves)
    doc.setdefault("created_utc", utc_now())
    return save_plan(fleet_dir, doc)


def save_plan(fleet_dir: Path, doc: dict[str, Any]) -> Path:
    """plan.json and every shard's spec, as the doc says now."""
    fleet_dir = Path(fleet_dir)
    (fleet_dir / SPECS_DIR).mkdir(parents=True, exist_ok=True)
    for entry in entries(doc):
        (fleet_dir / entry.spec).write_text(shard_spec_text(doc, entry), "utf-8")
    path = fleet_dir / PLAN_NAME
    path.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    return path


def read_plan(fleet_dir: Path) -> dict[str, Any]:
    path = Path(fleet_dir) / PLAN_NAME
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise FleetError(f"{path}: no plan (run `bench fleet plan` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise FleetError(f"{path}: not readable JSON ({exc})") from None


def plan_fleet(spec: Spec, calibration: Spec, hosts: list, costs) -> tuple[Assignment, dict[str, Any]]:
    """Cost the blocks, assign them (every host also pays its idle baseline and the calibration set), build the doc."""
    from bench.fleet.costs import blocks, spec_seconds
    from bench.fleet.plan import assign

    if spec.shard is not None or calibration.shard is not None:
        raise FleetError(f"{spec.source_path}: is already a shard of plan {(spec.shard or calibration.shard).plan}; "
                         f"plan the parent spec")
    calibration_s = spec_seconds(calibration, costs)
    assignment = assign(blocks(spec, costs), hosts, costs, overhead_s=spec.idle.duration_s + calibration_s)
    return assignment, plan_doc(spec, calibration, assignment, load_mb_s=costs.load_mb_s, calibration_s=calibration_s)
