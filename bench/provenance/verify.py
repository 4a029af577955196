"""Offline check of a sealed result folder: signature, checksums, completeness, manifest, and the report's numbers.

The chain is: an allowed signer's key signed SHA256SUMS; SHA256SUMS lists every file (none missing, none extra,
none changed); manifest.json (itself listed) names the same files with the same digests. Without ``--trusted`` the
signature is checked against the folder's own ``allowed_signers``, which proves integrity but not *who* signed;
pinning a key with ``trusted_signers`` proves that too.

What the files *say* (a run's DB against its report and manifest, a merged folder's chain to its devices) is not
this module's to know: such checks are `FolderCheck` callables that the caller composes (`bench.pipeline.verify_run`
for a run folder), run after the seal checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bench.errors import ProvenanceError
from bench.provenance import checksums, manifest as manifest_mod, signing
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SIGNERS_NAME, SUMS_NAME

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Findings:
    """What one folder check found: problems, each naming a file, and notes (a check that could not run, and why)."""

    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()


FolderCheck = Callable[[Path, Mapping[str, Any]], Findings]
"""A check of what a sealed folder's files say, given the folder and its manifest's predicate ({} when unreadable).
It must not change the folder; a check that raises is reported as a problem, never a crashed verifier."""


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
    checks: Sequence[FolderCheck] = (),
) -> VerifyReport:
    """Check ``result_dir`` completely and return every problem found (it does not stop at the first): the seal,
    then each of ``checks``."""
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
    for folder_check in checks:
        _run_check(folder_check, root, predicate, acc)

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


def _run_check(folder_check: FolderCheck, root: Path, predicate: Mapping[str, Any], acc: _Acc) -> None:
    name = getattr(folder_check, "__name__", type(folder_check).__name__)
    try:
        found = folder_check(root, predicate)
    except Exception as exc:  # a crash in a check is a failed check, not a crashed verifier
        log.debug("folder check %s crashed", name, exc_info=True)
        acc.add(".", f"check {name} crashed: {type(exc).__name__}: {exc}")
        return
    acc.problems.extend(found.problems)
    acc.notes.extend(found.notes)
