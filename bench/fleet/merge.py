"""`bench merge`: verified shard folders of one plan -> one sealed result folder that records every answer's device.

Refused, each with one line naming the folder: a folder that does not verify against the fleet's allowed signers
(or is signed by another host's key), a shard of another spec or plan, one written by another toolkit version, a
shard given twice, a block that two shards both claim. A block moved off a dead host (`bench fleet move`) is taken
from the shard it was moved to; the dead host's answers in it are left out and counted. Blocks of the plan that no
shard completed are listed, not invented. The shard folders are embedded whole under ``shards/`` so a reviewer can
check each one against its device's key and the merged answers against them (``bench verify`` does both).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import __version__, results
from bench.errors import FleetError
from bench.fleet.chain import FLEET_SIGNERS, SHARDS_DIR
from bench.fleet.costs import answers_per_dataset
from bench.fleet.shardfolder import ShardFolder, load_shard
from bench.spec import Spec, parent_text, parse_spec

log = logging.getLogger(__name__)


Block = tuple[str, str]


@dataclass(frozen=True)
class Missing:
    block: Block
    have: int
    expected: int

    def __str__(self) -> str:
        why = "in no shard" if self.have == 0 else f"{self.have} of {self.expected} answers"
        return f"{self.block[0]} / {self.block[1]}: {why}"


@dataclass(frozen=True)
class MergePlan:
    """What comes from where, decided before anything is written."""

    parent: Spec
    work: tuple[ShardFolder, ...]
    calibration: tuple[ShardFolder, ...]
    kept: dict[str, list[Block]]
    superseded: dict[str, list[Block]]
    missing: list[Missing] = field(default_factory=list)


def _parent_of(s: ShardFolder) -> Spec:
    text = parent_text(s.run.spec_toml)
    parent = parse_spec(text, f"{s.path}/spec (parent)")
    if parent.sha256 != s.shard.parent_sha256:
        raise FleetError(f"{s.path}: its spec's parent part does not hash to shard.parent_sha256")
    return parent


def decide(shards: list[ShardFolder]) -> MergePlan:
    """Check the shards against each other and decide which blocks each contributes."""
    if not shards:
        raise FleetError("no shard folders given")
    names: dict[str, ShardFolder] = {}
    for s in shards:
        if s.run.toolkit_version != __version__:
            raise FleetError(f"{s.path}: written by toolkit {s.run.toolkit_version}, this merge is {__version__} "
                             f"(merge with the version that ran the fleet)")
        if s.shard.name in names:
            raise FleetError(f"{s.path}: shard {s.shard.name} given twice (also {names[s.shard.name].path})")
        names[s.shard.name] = s
    work = [s for s in shards if s.shard.role == "work"]
    calibration = [s for s in shards if s.shard.role == "calibration"]
    if not work:
        raise FleetError("no work shards given (only calibration folders)")
    first = work[0]
    for group in (work, calibration):
        for s in group[1:]:
            if s.shard.parent_sha256 != group[0].shard.parent_sha256:
                raise FleetError(f"{s.path}: shard of another spec ({s.spec.name}, sha256 "
                                 f"{s.shard.parent_sha256[:12]}), not {group[0].spec.name} "
                                 f"({group[0].shard.parent_sha256[:12]}) like {group[0].path}")
    for s in shards:
        if s.shard.plan != first.shard.plan:
            raise FleetError(f"{s.path}: shard of plan {s.shard.plan}, but {first.path} is of plan {first.shard.plan}")
    hosts: dict[str, ShardFolder] = {}
    for s in calibration:
        if s.shard.host in hosts:
            raise FleetError(f"{s.path}: a second calibration of {s.shard.host} (also {hosts[s.shard.host].path})")
        hosts[s.shard.host] = s
    parent = _parent_of(first)
    _same_models(work)
    kept, superseded = _blocks(work)
    counts = answers_per_dataset(parent)
    missing = []
    for block in parent.blocks():
        owner = next((s for s in work if block in kept[s.shard.name]), None)
        have = owner.answers.get(block, 0) if owner else 0
        if have < counts[block[1]]:
            missing.append(Missing(block, have, counts[block[1]]))
    return MergePlan(parent, tuple(work), tuple(calibration), kept, superseded, missing)


def _same_models(work: list[ShardFolder]) -> None:
    """A model run on two devices must be the same model: one digest everywhere."""
    seen: dict[str, tuple[str | None, ShardFolder]] = {}
    for s in work:
        for tag, digest in s.digests.items():
            if tag in seen and seen[tag][0] != digest:
                raise FleetError(f"{s.path}: model {tag} has digest {digest} here but {seen[tag][0]} in "
                                 f"{seen[tag][1].path}; a run must not mix model versions")
            seen.setdefault(tag, (digest, s))


def _blocks(work: list[ShardFolder]) -> tuple[dict[str, list[Block]], dict[str, list[Block]]]:
    """Each block from one shard: a block two shards claim is refused, unless one was moved from the other."""
    claims: dict[Block, list[ShardFolder]] = {}
    for s in work:
        for b in s.shard.blocks:
            claims.setdefault(b, []).append(s)
    kept = {s.shard.name: [] for s in work}
    superseded = {s.shard.name: [] for s in work}
    for block, owners in claims.items():
        winner = owners[0]
        for other in owners[1:]:
            if other.shard.moved_from == winner.shard.name:
                superseded[winner.shard.name].append(block)
                winner = other
            elif winner.shard.moved_from == other.shard.name:
                superseded[other.shard.name].append(block)
            else:
                raise FleetError(f"{other.path}: block {block[0]} / {block[1]} is also in {winner.path} (shard "
                                 f"{winner.shard.name}); a block must come from one shard (bench fleet move "
                                 f"records a move)")
        kept[winner.shard.name].append(block)
    return kept, superseded


def load_all(folders: list[Path], signers: Path) -> list[ShardFolder]:
    if not Path(signers).is_file():
        raise FleetError(f"{signers}: no fleet allowed_signers file (the playbook collects one line per host)")
    return [load_shard(Path(f), Path(signers)) for f in folders]


def merge(folders: list[Path], out: Path, signers: Path, *, key_path: Path | None = None,
          require_complete: bool = False) -> tuple[MergePlan, dict[str, Any]]:
    """Verify, decide, write ``out`` (results.db, spec.toml, shards/, report/) and seal it."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FleetError(f"{out}: exists and is not empty; merge into a new --out folder")
    plan = decide(load_all(folders, signers))
    if require_complete and plan.missing:
        raise FleetError(f"{len(plan.missing)} block(s) missing, e.g. {plan.missing[0]} (without --complete the "
                         f"merge lists them and goes on)")
    out.mkdir(parents=True, exist_ok=True)
    try:
        facts = _write(out, plan, signers, key_path)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # every check passed before; a failure here leaves no half folder
        raise
    return plan, facts


def _write(out: Path, plan: MergePlan, signers: Path, key_path: Path | None) -> dict[str, Any]:
    from bench.pipeline import build_run_report, run_facts
    from bench.provenance import seal
    from bench.report.devices import calibration_rows, summarise_variance

    (out / "spec.toml").write_text(plan.parent.source_text, "utf-8")
    shutil.copyfile(signers, out / FLEET_SIGNERS)
    db = results.connect(out / "results.db")
    try:
        run, _ = results.open_run(db, plan.parent.name, plan.parent.sha256, plan.parent.source_text)
        copied = {}
        for s in plan.work:
            copied[s.shard.name] = results.copy_shard(db, run.run_id, s.path / "results.db", s.shard.host,
                                                        s.shard.name, plan.kept[s.shard.name])
        for host in dict.fromkeys(s.shard.host for s in plan.work + plan.calibration):
            results.record_device(db, host, _signer_of(host, plan), _device_facts(host, plan))
        for s in plan.calibration:
            results.record_calibration(db, s.shard.host, calibration_rows(s.path / "results.db"))
        results.add_event(db, run.run_id, "merge", json.dumps(copied, sort_keys=True))
    finally:
        db.close()
    for s in plan.work + plan.calibration:
        shutil.copytree(s.path, out / SHARDS_DIR / s.shard.name)
    variance = summarise_variance(out / "results.db")
    build_run_report(out, plan.parent.scoring_modes[0])
    facts = {**run_facts(out), "fleet": _fleet_facts(plan, copied, variance)}
    results.finalize(out / "results.db")
    seal(out, facts, key_path=key_path)
    return facts["fleet"]


def _signer_of(host: str, plan: MergePlan) -> str:
    return next(s.signer for s in plan.work + plan.calibration if s.shard.host == host)


def _device_facts(host: str, plan: MergePlan) -> dict[str, Any]:
    """What each device's shards say about it: host facts and meter from their manifests, their idle baselines."""
    from bench.provenance.manifest import read_manifest

    mine = [s for s in plan.work + plan.calibration if s.shard.host == host]
    predicates = [read_manifest(s.path)["predicate"] for s in mine]
    return {"shards": [s.shard.name for s in mine], "host": predicates[0].get("host"),
            "meter": predicates[0].get("meter"),
            "idle_baselines": {s.shard.name: p.get("idle_baseline") for s, p in zip(mine, predicates)}}


def _fleet_facts(plan: MergePlan, copied: dict[str, int], variance: dict[str, Any]) -> dict[str, Any]:
    from bench.provenance.checksums import MANIFEST_NAME, SUMS_NAME, sha256_file

    shards = []
    for s in plan.work + plan.calibration:
        shards.append({
            "name": s.shard.name, "host": s.shard.host, "role": s.shard.role, "signer": s.signer,
            "folder": f"{SHARDS_DIR}/{s.shard.name}", "spec_sha256": s.run.spec_sha256,
            "manifest_sha256": sha256_file(s.path / MANIFEST_NAME), "sums_sha256": sha256_file(s.path / SUMS_NAME),
            "blocks_kept": [list(b) for b in plan.kept.get(s.shard.name, [])],
            "blocks_superseded": [list(b) for b in plan.superseded.get(s.shard.name, [])],
            "answers_merged": copied.get(s.shard.name, 0), "moved_from": s.shard.moved_from,
        })
    return {"plan": plan.work[0].shard.plan, "parent_spec_sha256": plan.parent.sha256,
            "allowed_signers": FLEET_SIGNERS, "shards": shards, "missing_blocks": [str(m) for m in plan.missing],
            "device_variance": variance}
