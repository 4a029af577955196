"""What `bench verify` checks in a run folder beyond its seal: `bench.provenance.verify.FolderCheck`s, which
`bench.pipeline.verify_run` composes.

* `identity_and_numbers`: the run identity the manifest states is the one in ``results.db``, and every number of
  the report (``report/numbers.json``) is recomputed from the DB's answers frame, in each scored mode.
* `fleet_chain`: a merged fleet folder checks back to each device's key (`bench.fleet.chain`).

The DB is read from a private copy: opening SQLite can create -wal/-shm files, which would add files to the folder
being verified.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Mapping

from bench import results
from bench.errors import BenchError
from bench.fleet import chain
from bench.provenance import manifest
from bench.provenance.checksums import MANIFEST_NAME
from bench.provenance.verify import Findings, Problem
from bench.report import recompute_check

log = logging.getLogger(__name__)

DB_NAME = "results.db"
REPORT_DIR = "report"


def identity_and_numbers(root: Path, predicate: Mapping[str, Any]) -> Findings:
    """The stored identity against the manifest's, then the report's numbers against the DB, per scored mode."""
    db, report_dir = root / DB_NAME, root / REPORT_DIR
    if not db.is_file() or not report_dir.is_dir():
        return Findings(notes=(f"numbers check unavailable: no {DB_NAME} or {REPORT_DIR}/ in the folder",))
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        copy = Path(tmp) / DB_NAME
        for suffix in ("", "-wal"):
            if (root / (DB_NAME + suffix)).is_file():
                shutil.copy2(root / (DB_NAME + suffix), Path(tmp) / (DB_NAME + suffix))
        found = [_identity(copy, predicate)] + [_numbers(copy, report_dir, mode) for mode in _modes(predicate)]
    return Findings(tuple(p for f in found for p in f.problems), tuple(n for f in found for n in f.notes))


def fleet_chain(root: Path, predicate: Mapping[str, Any]) -> Findings:
    """A merged fleet folder's chain to its devices; nothing to say about any other folder."""
    if not chain.is_merged(root):
        return Findings()
    return Findings(tuple(Problem(path, message) for path, message in chain.check(root, dict(predicate))))


def _modes(predicate: Mapping[str, Any]) -> list[str]:
    modes = predicate.get("score_modes") or predicate.get("score_mode") or ["paper"]
    return [modes] if isinstance(modes, str) else [str(m) for m in modes]


def _numbers(db_path: Path, report_dir: Path, mode: str) -> Findings:
    try:
        messages = recompute_check(results.answers_frame(db_path, mode), report_dir)
    except BenchError as exc:
        return Findings((Problem(f"{REPORT_DIR}/", f"numbers check ({mode}) failed: {exc}"),))
    log.info("numbers check (%s) done", mode)
    return Findings(tuple(Problem(f"{REPORT_DIR}/", f"numbers ({mode}): {m}") for m in messages))


def _identity(db_path: Path, predicate: Mapping[str, Any]) -> Findings:
    """The run identity the manifest states must be the one stored in the DB (the report's numbers rest on the
    DB's): models, datasets, prompt and scorer versions."""
    try:
        db = results.connect_readonly(db_path)
    except BenchError as exc:  # not one of our DBs: name the problem instead of stopping the whole check
        return Findings((Problem(DB_NAME, str(exc).removeprefix(f"{db_path}: ")),))
    try:
        stored = results.run_identity(db)
    except sqlite3.Error as exc:
        return Findings((Problem(DB_NAME, f"run identity unreadable ({exc})"),))
    finally:
        db.close()
    stated = predicate.get("identity")
    if stated is not None and not isinstance(stated, dict):
        return Findings((Problem(MANIFEST_NAME, "identity must be an object"),))
    if stored is None and stated is None:
        return Findings(notes=("no run identity recorded (the run predates the identity snapshot)",))
    if stored is None or stated is None:
        return Findings((Problem(MANIFEST_NAME, f"run identity is in {'the DB' if stored else MANIFEST_NAME} only"),))
    expected = manifest.jsonable(stored, "identity")
    return Findings(tuple(Problem(MANIFEST_NAME, f"identity.{key} differs from the run identity in {DB_NAME}")
                          for key in sorted(set(expected) | set(stated)) if expected.get(key) != stated.get(key)))
