"""The baseline: chosen only after `bench verify` passes on it, checked again before every night and comparison.

Choosing pins the folder's signer (its ``allowed_signers`` line goes into the history) and its signature's sha256.
Later checks verify the signature against that pinned key, every checksum, and that the signature file is the one
chosen: so a baseline whose results were altered, re-sealed with another key, or re-signed after an edit is
refused with exit 2 instead of being compared (an altered baseline would otherwise read as drift).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.nightly import history
from bench.nightly.outcome import NightFailed
from bench.pipeline import verify_run
from bench.provenance import VerifyReport
from bench.provenance.checksums import SIG_NAME, SIGNERS_NAME, sha256_file


def choose(history_path: Path, which: str = "latest") -> str:
    """Make night ``which`` (an id, or ``latest``: the newest night that made a valid comparison) the baseline."""
    db = history.connect(history_path)
    try:
        chosen = history.latest_compared(db) if which == "latest" else history.night(db, _night_id(which))
        if chosen is None or chosen.exit_code not in (0, 1):
            raise NightFailed(f"{history_path}: no night {which!r} that completed a valid run to use as the baseline")
        folder = chosen.path(history_path.parent)
        if not folder.is_dir():
            raise NightFailed(f"night {chosen.id}: its folder {folder} is gone")
        report = verify_run(folder)
        if not report.ok:
            raise NightFailed(f"night {chosen.id} ({folder}) cannot be the baseline: {_problems(report)}")
        if signature_sha256(folder) != chosen.signature_sha256:
            raise NightFailed(f"night {chosen.id} ({folder}) was re-signed after the night recorded it")
        signers = (folder / SIGNERS_NAME).read_text("utf-8")
        history.choose_baseline(db, chosen, signers, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    finally:
        db.close()
    return (f"baseline: night {chosen.id} ({folder}), verified ({report.files_checked} files), "
            f"signer {report.signer} pinned")


def check(base: history.Baseline) -> None:
    """Raise `NightFailed` unless the baseline folder is still exactly what was chosen."""
    where = f"baseline night {base.night_id} ({base.folder})"
    again = f"bench nightly baseline --set {base.night_id}"
    if not base.folder.is_dir():
        raise NightFailed(f"{where} is gone; choose another baseline (bench nightly baseline --set N)")
    if base.signers is None:
        raise NightFailed(f"{where} was chosen before baselines pinned their signer; choose it again ({again})")
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        pinned = Path(tmp) / SIGNERS_NAME
        pinned.write_text(base.signers, "utf-8")
        report = verify_run(base.folder, pinned, check_numbers=False)
    if not report.ok:
        raise NightFailed(f"{where} fails verification: {_problems(report)}")
    if signature_sha256(base.folder) != base.signature_sha256:
        raise NightFailed(f"{where} was re-signed since it was chosen; check it (bench verify {base.folder}), "
                          f"then choose it again ({again})")


def signature_sha256(folder: Path) -> str | None:
    """The sha256 of a sealed folder's signature file (None if unsigned): what a night records of its folder."""
    sig = folder / SIG_NAME
    return sha256_file(sig) if sig.is_file() else None


def _problems(report: VerifyReport) -> str:
    lines = report.lines()
    more = f" (+{len(lines) - 1} more; bench verify {report.result_dir})" if len(lines) > 1 else ""
    return f"{lines[0]}{more}"


def _night_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NightFailed(f"--set {text!r}: expected a night id from `bench nightly history` or 'latest'") from None
