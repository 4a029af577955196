"""One fetched shard folder, checked before anything of it is merged: sealed, signed by its own host's key (an
allowed signer of the fleet), a shard of a known spec, and what it holds per block.

Every refusal is one line naming the folder and the reason.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.errors import FleetError, ProvenanceError, ResultsError, SpecError
from bench.provenance import verify
from bench import results
from bench.results import RunRow
from bench.spec import ShardSpec, Spec, parse_spec

PRINCIPAL_SUFFIX = "@edge-llm-bench"


def host_principal(host: str) -> str:
    """The allowed_signers principal a host signs as (`bench keygen --identity`, set up by the playbook)."""
    return f"{host}{PRINCIPAL_SUFFIX}"


@dataclass(frozen=True)
class ShardFolder:
    """A verified shard folder: its run, its spec (with the [shard] table) and answers per block."""

    path: Path
    run: RunRow
    spec: Spec
    signer: str
    answers: dict[tuple[str, str], int]
    digests: dict[str, str | None]

    @property
    def shard(self) -> ShardSpec:
        assert self.spec.shard is not None
        return self.spec.shard


def load_shard(path: Path, signers: Path) -> ShardFolder:
    """Verify and read one shard folder; FleetError naming the folder otherwise."""
    path = Path(path)
    if not (path / "results.db").is_file():
        raise FleetError(f"{path}: not a result folder (no results.db)")
    try:  # first: nothing of a folder that does not verify is read
        report = verify(path, signers)
    except ProvenanceError as exc:
        raise FleetError(f"{path}: {exc}") from None
    if not report.ok:
        more = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        raise FleetError(f"{path}: does not verify against {signers}: {report.problems[0]}{more}")
    try:
        db = results.connect_readonly(path / "results.db")
    except ResultsError as exc:
        raise FleetError(f"{path}: {exc}") from None
    try:
        run = results.get_run(db)
        if run is None:
            raise FleetError(f"{path}: results.db holds no run")
        answers = results.answers_per_block(db)
        digests = results.model_digests(db)
    except ResultsError as exc:
        raise FleetError(f"{path}: {exc}") from None
    except sqlite3.Error as exc:
        raise FleetError(f"{path}: results.db unreadable ({exc})") from None
    finally:
        db.close()
    try:
        spec = parse_spec(run.spec_toml, f"{path}/spec")
    except SpecError as exc:  # a spec this toolkit cannot load belongs to another experiment
        raise FleetError(f"{path}: its spec does not load here ({exc})") from None
    if spec.shard is None:
        raise FleetError(f"{path}: not a fleet shard (its spec has no [shard] table)")
    principals = (report.signer or "").split(" (")[0].split(",")
    if host_principal(spec.shard.host) not in principals:
        raise FleetError(f"{path}: shard of host {spec.shard.host} signed by {report.signer}, not by "
                         f"{host_principal(spec.shard.host)}")
    return ShardFolder(path, run, spec, report.signer or "", answers, digests)
