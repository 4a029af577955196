"""Offline check of a sealed result folder: signature, checksums, completeness, manifest, and the report's numbers.

The chain is: an allowed signer's key signed SHA256SUMS; SHA256SUMS lists every file (none missing, none extra,
none changed); manifest.json (itself listed) names the same files with the same digests. Without ``--trusted`` the
signature is checked against the folder's own ``allowed_signers``, which proves integrity but not *who* signed;
pinning a key with ``trusted_signers`` proves that too.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError, ProvenanceError
from bench.provenance import checksums, manifest as manifest_mod, signing
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SIGNERS_NAME, SUMS_NAME

log = logging.getLogger(__name__)

DB_NAME = "results.db"
REPORT_DIR = "report"


@dataclass(frozen=True, order=True)
class Problem:
    """One failed check, naming the file it concerns (relative to the result folder)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: ``ok`` iff no problems; notes are informational (e.g. a skipped check)."""

    result_dir: Path
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()
    signer: str | None = None
    files_checked: int = 0
    trusted: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


@dataclass
class _Acc:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))


def verify(
    result_dir: Path,
    trusted_signers: Path | None = None,
    *,
    namespace: str = signing.NAMESPACE,
    identity: str | None = None,
    check_numbers: bool = True,
) -> VerifyReport:
    """Check ``result_dir`` completely and return every problem found (it does not stop at the first)."""
    root = Path(result_dir)
    if not root.is_dir():
        raise ProvenanceError(f"{root}: not a directory")
    acc = _Acc()

    sums_bytes = _read_bytes(root / SUMS_NAME)
    if sums_bytes is None:
        acc.add(SUMS_NAME, "missing (the folder was never sealed?)")

    signer, sig_failed = _check_signature(root, sums_bytes, trusted_signers, namespace, identity, acc)

    files_checked = 0
    sums: dict[str, str] = {}
    if sums_bytes is not None:
        entries, parse_problems = checksums.parse(sums_bytes)
        for where, why in parse_problems:
            acc.add(SUMS_NAME, f"{where.removeprefix(SUMS_NAME).strip()} {why}".strip())
        sums = {e.path: e.sha256 for e in entries}
        files_checked = _check_files(root, sums, acc)

    if sig_failed:
        # Ed25519 cannot say which side changed; if SHA256SUMS still matches every file, the signature is the suspect.
        files_clean = not any(p.path != SIG_NAME for p in acc.problems)
        blamed = SIG_NAME if files_clean else SUMS_NAME
        acc.add(blamed, f"signature in {SIG_NAME} does not verify over {SUMS_NAME} (one of the two was altered)")

    predicate = _check_manifest(root, sums, acc) if sums_bytes is not None else {}
    _check_fleet_chain(root, predicate, acc)

    if check_numbers:
        _check_numbers(root, predicate, acc)

    return VerifyReport(
        result_dir=root,
        problems=tuple(sorted(set(acc.problems))),
        notes=tuple(acc.notes),
        signer=signer,
        files_checked=files_checked,
        trusted=trusted_signers is not None,
    )


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _check_signature(
    root: Path, sums_bytes: bytes | None, trusted: Path | None, namespace: str, identity: str | None, acc: _Acc
) -> tuple[str | None, bool]:
    """Returns (signer description, whether the Ed25519 check itself failed)."""
    sig_text = _read_bytes(root / SIG_NAME)
    if sig_text is None:
        acc.add(SIG_NAME, "missing (unsigned folder)")
        return None, False
    try:
        sig = signing.parse_signature(sig_text.decode("utf-8"))
    except UnicodeDecodeError:
        acc.add(SIG_NAME, "not valid UTF-8")
        return None, False
    except ProvenanceError as exc:
        acc.add(SIG_NAME, str(exc))
        return None, False

    if trusted is not None:
        signers_path, shown = Path(trusted), str(trusted)
        try:
            signers_text = signers_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProvenanceError(f"{trusted}: cannot read trusted signers file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ProvenanceError(f"{trusted}: not an allowed_signers file (not UTF-8 text)") from None
    else:
        signers_path, shown = root / SIGNERS_NAME, SIGNERS_NAME
        try:
            signers_text = signers_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            acc.add(SIGNERS_NAME, "missing (pass --trusted FILE to check the signature)")
            return None, False
        except (OSError, UnicodeDecodeError) as exc:
            acc.add(SIGNERS_NAME, f"not readable ({exc})")
            return None, False
    try:
        signers = signing.parse_signers(signers_text, shown)
    except ProvenanceError as exc:
        acc.add(shown, str(exc).removeprefix(f"{shown} "))
        return None, False
    try:
        signer = signing.find_signer(signers, sig, namespace, identity)
    except ProvenanceError as exc:
        acc.add(SIG_NAME, f"{exc} in {shown}")
        return None, False
    if sums_bytes is None:
        return None, False
    try:
        signing.verify_signature(sig, sums_bytes, namespace)
    except ProvenanceError as exc:
        if "namespace" in str(exc):
            acc.add(SIG_NAME, str(exc))
            return None, False
        return None, True
    who = f"{','.join(signer.principals)} ({sig.fingerprint})"
    if trusted is None:
        acc.notes.append(
            f"signature checked against the folder's own {SIGNERS_NAME}; pin the signer with --trusted FILE"
        )
    return who, False


def _check_files(root: Path, sums: dict[str, str], acc: _Acc) -> int:
    """Every listed file present and unchanged; every present file listed. Returns how many files were hashed."""
    actual, walk_problems = checksums.walk(root)
    for path, why in walk_problems:
        acc.add(path, why)
    present = set(actual)
    for rel in sorted(set(sums) - present):
        acc.add(rel, f"missing (listed in {SUMS_NAME})")
    for rel in sorted(present - set(sums)):
        acc.add(rel, f"extra file (not listed in {SUMS_NAME})")
    hashed = 0
    for rel in sorted(present & set(sums)):
        try:
            digest = checksums.sha256_file(root / rel)
        except OSError as exc:
            acc.add(rel, f"cannot read ({exc.strerror})")
            continue
        hashed += 1
        if digest != sums[rel]:
            acc.add(rel, f"content changed (sha256 differs from {SUMS_NAME})")
    return hashed


def _check_manifest(root: Path, sums: dict[str, str], acc: _Acc) -> dict[str, Any]:
    """Manifest subjects must be exactly SHA256SUMS minus the manifest itself, with the same digests."""
    try:
        data = manifest_mod.read_manifest(root)
        subjects = manifest_mod.subject_digests(data)
    except ProvenanceError as exc:
        acc.add(MANIFEST_NAME, str(exc).removeprefix(f"{MANIFEST_NAME}: "))
        return {}
    expected = {k: v for k, v in sums.items() if k != MANIFEST_NAME}
    for name in sorted(set(subjects) - set(expected)):
        acc.add(name, f"in {MANIFEST_NAME} subjects but not in {SUMS_NAME}")
    for name in sorted(set(expected) - set(subjects)):
        acc.add(name, f"in {SUMS_NAME} but not a {MANIFEST_NAME} subject")
    for name in sorted(set(expected) & set(subjects)):
        if expected[name] != subjects[name]:
            acc.add(name, f"{MANIFEST_NAME} subject digest differs from {SUMS_NAME}")
    return data["predicate"]


def _check_fleet_chain(root: Path, predicate: dict[str, Any], acc: _Acc) -> None:
    """Hook: a merged fleet folder (`bench merge`) is also checked back to each device's key (bench.fleet.chain)."""
    chain = importlib.import_module("bench.fleet.chain")
    if chain.is_merged(root):
        for path, message in chain.check(root, predicate):
            acc.add(path, message)


def _modes(predicate: dict[str, Any]) -> list[str]:
    modes = predicate.get("score_modes") or predicate.get("score_mode") or ["paper"]
    return [modes] if isinstance(modes, str) else [str(m) for m in modes]


def _check_numbers(root: Path, predicate: dict[str, Any], acc: _Acc) -> None:
    """Hook: recompute the report's numbers from the DB (``bench.results.answers_frame``) and compare them with the
    report (``bench.report.recompute_check``). The DB is copied first: opening SQLite can create -wal/-shm files,
    which would add files to the folder being verified."""
    db, report_dir = root / DB_NAME, root / REPORT_DIR
    if not db.is_file() or not report_dir.is_dir():
        acc.notes.append(f"numbers check unavailable: no {DB_NAME} or {REPORT_DIR}/ in the folder")
        return
    try:
        answers_frame = importlib.import_module("bench.results").answers_frame
        recompute_check = importlib.import_module("bench.report").recompute_check
    except (ImportError, AttributeError) as exc:
        acc.notes.append(f"numbers check unavailable: {type(exc).__name__}: {exc}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        for suffix in ("", "-wal"):
            if (root / (DB_NAME + suffix)).is_file():
                shutil.copy2(root / (DB_NAME + suffix), Path(tmp) / (DB_NAME + suffix))
        _check_identity(Path(tmp) / DB_NAME, predicate, acc)
        for mode in _modes(predicate):
            try:
                outcome = recompute_check(answers_frame(Path(tmp) / DB_NAME, mode), report_dir)
            except BenchError as exc:
                acc.add(f"{REPORT_DIR}/", f"numbers check ({mode}) failed: {exc}")
                continue
            except Exception as exc:  # a crash in the check is a failed check, not a crashed verifier
                log.debug("numbers check crashed", exc_info=True)
                acc.add(f"{REPORT_DIR}/", f"numbers check ({mode}) crashed: {type(exc).__name__}: {exc}")
                continue
            for message in _outcome_problems(outcome):
                acc.add(f"{REPORT_DIR}/", f"numbers ({mode}): {message}")
            log.info("numbers check (%s) done", mode)


def _check_identity(db_path: Path, predicate: dict[str, Any], acc: _Acc) -> None:
    """The run identity the manifest states must be the one stored in the DB (the report's numbers rest on the
    DB's): models, datasets, prompt and scorer versions."""
    import sqlite3

    from bench.results import connect_readonly, run_identity

    try:
        db = connect_readonly(db_path)
    except BenchError as exc:  # not one of our DBs: name the problem instead of stopping the whole check
        acc.add(DB_NAME, str(exc).removeprefix(f"{db_path}: "))
        return
    try:
        stored = run_identity(db)
    except sqlite3.Error as exc:
        acc.add(DB_NAME, f"run identity unreadable ({exc})")
        return
    finally:
        db.close()
    stated = predicate.get("identity")
    if stated is not None and not isinstance(stated, dict):
        acc.add(MANIFEST_NAME, "identity must be an object")
        return
    if stored is None or stated is None:
        if stored is not None or stated is not None:
            acc.add(MANIFEST_NAME, f"run identity is in {'the DB' if stored else MANIFEST_NAME} only")
        else:
            acc.notes.append("no run identity recorded (the run predates the identity snapshot)")
        return
    expected = manifest_mod.jsonable(stored, "identity")
    for key in sorted(set(expected) | set(stated)):
        if expected.get(key) != stated.get(key):
            acc.add(MANIFEST_NAME, f"identity.{key} differs from the run identity in {DB_NAME}")


def _outcome_problems(outcome: Any) -> Iterable[str]:
    """recompute_check may return None/True (ok), False, a message, or an iterable of messages (problems)."""
    if outcome is None or outcome is True:
        return []
    if outcome is False:
        return ["differ from the numbers recomputed from the database"]
    if isinstance(outcome, str):
        return [outcome] if outcome else []
    return [str(m) for m in outcome]
