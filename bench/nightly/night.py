"""One night, start to end: checks, the run, the machine's conditions, the comparison, the record.

Every way a night can end leaves one line and a row in the history DB: `run_night` catches everything that
stops a night (a bug included: its traceback goes to the log), turns it into exit 2 with a one-line reason
(`failures`), and records what was known by then (`_Progress`). Only a history DB that cannot be written loses
the record, and the line then says so.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

from bench import results
from bench.backends import Backend, in_process
from bench.errors import BenchError
from bench.nightly import baseline, history, machine, preflight, trend
from bench.nightly.drift import METRICS, NightValues, judge, learn_spread, night_values
from bench.nightly.failures import one_line, reason_for
from bench.nightly.outcome import EXIT_DRIFT, EXIT_FAILED, EXIT_OK, NightFailed, NightOutcome
from bench.spec import Spec, load_spec

log = logging.getLogger(__name__)

HISTORY_NAME, LOCK_NAME, TREND_NAME = "history.db", ".nightly.lock", "trend.png"


@dataclass(frozen=True)
class NightOptions:
    spec: str                                   # a shipped spec name or a path
    root: Path                                  # history.db, the lock and trend.png live here
    out: Path | None = None                     # where the night folders go (default: root)
    tolerances: Mapping[str, float] = field(default_factory=dict)
    key_path: Path | None = None
    busy_share: float = machine.DEFAULT_BUSY_SHARE
    quiet_s: float = 3.0                        # the quiet check before the run
    wait_quiet_s: float = 0.0                   # how long to wait for a busy machine to become quiet
    min_free_mb: float = 1024.0                 # SQLite, the meter log and the report need room to commit

    @property
    def folders(self) -> Path:
        return self.out or self.root


@dataclass
class _Progress:
    """What is known so far, so that a night failing at any step is recorded with all of it."""

    started: datetime
    folder: Path
    spec: Spec | None = None
    base: history.Baseline | None = None
    conditions: machine.NightConditions | None = None
    sealed: bool = False
    signature_sha256: str | None = None
    subset_sha256: str | None = None
    values: NightValues | None = None


def run_night(opts: NightOptions, *, backend: Backend | None = None) -> NightOutcome:
    """Run, judge and record one night. ``backend`` replaces the spec's (benchmarks inject a slowed one)."""
    started = datetime.now(timezone.utc)
    progress = _Progress(started, opts.folders / started.strftime("%Y%m%dT%H%M%SZ"))
    try:
        outcome = _attempt(opts, progress, backend)
    except Exception as exc:  # noqa: BLE001 - every failure is exit 2 with one line, never a traceback
        if not isinstance(exc, (BenchError, OSError, sqlite3.Error)):
            log.exception("nightly: unexpected error")
        reason = reason_for(exc, opts.folders)
        outcome = NightOutcome(EXIT_FAILED, f"{progress.folder.name}: FAILED: {reason}", reason, progress.folder,
                               conditions=progress.conditions)
    return _record(opts, progress, outcome)


def _attempt(opts: NightOptions, p: _Progress, backend: Backend | None) -> NightOutcome:
    opts.root.mkdir(parents=True, exist_ok=True)
    preflight.output_disk(opts.folders, opts.min_free_mb)
    with single_instance(opts.root / LOCK_NAME):
        db = history.connect(opts.root / HISTORY_NAME)
        try:
            p.base = history.baseline(db, opts.root)
        finally:
            db.close()
        p.spec = load_spec(opts.spec)
        if p.base is not None:
            baseline.check(p.base)  # before spending the night on a comparison that cannot be valid
        preflight.services(p.spec)
        p.conditions = machine.wait_until_quiet(machine.at_start(), opts.quiet_s, opts.busy_share, opts.wait_quiet_s)
        _refuse_busy(machine.busy_before(p.conditions, opts.busy_share, opts.quiet_s))
        from bench.pipeline import pipeline

        done = pipeline(p.spec, p.folder, progress=False, key_path=opts.key_path, backend=backend)
        if not done.sealed:
            raise NightFailed(f"{p.folder}: interrupted before it was sealed")
        p.sealed = True
        p.signature_sha256, p.subset_sha256 = baseline.signature_sha256(p.folder), _subset_sha256(p.folder)
        errors = done.run.counts.get("error", 0)
        if errors and errors == sum(done.run.counts.values()):
            raise NightFailed(f"{p.folder}: every answer failed ({errors} errors); see the reasons in results.db")
        p.conditions = machine.with_answers(p.conditions, p.folder / "results.db", opts.busy_share)
        _refuse_busy(machine.busy_during(p.conditions, opts.busy_share, p.spec.backend.kind))
        return _compare(opts, p)


def _refuse_busy(reason: str | None) -> None:
    if reason is not None:
        raise NightFailed(reason)


def _compare(opts: NightOptions, p: _Progress) -> NightOutcome:
    name = p.folder.name
    mode = p.spec.scoring_modes[0]
    busy = opts.busy_share if in_process(p.spec.backend.kind) else None  # only then do readings separate the SUT
    p.values = night_values(p.folder, mode, busy)
    if p.base is None:
        return NightOutcome(EXIT_OK, f"{name}: ok, no baseline yet (choose one: bench nightly baseline --set latest); "
                                     f"{p.conditions.describe()}", "no baseline yet", p.folder,
                            conditions=p.conditions)
    baseline.check(p.base)  # again: it must be the chosen baseline right when it is compared
    db = history.connect(opts.root / HISTORY_NAME)
    try:
        spreads = {m.name: learn_spread(m, history.accepted_changes(db, p.base.night_id, m.name)) for m in METRICS}
        then = history.conditions(db, p.base.night_id)
    finally:
        db.close()
    judgements = judge(night_values(p.base.folder, mode, busy), p.values, spreads, opts.tolerances)
    moved = [j for j in judgements if j.drifted]
    where = f"night {p.base.night_id}"
    machine_now = p.conditions.describe() + (f" (at the baseline: {then.describe().removeprefix('machine: ')})"
                                             if then else "")
    if moved:
        reason = "; ".join(j.describe() for j in moved)
        return NightOutcome(EXIT_DRIFT, f"{name}: DRIFT vs {where}: {reason}; {machine_now}", reason, p.folder,
                            tuple(judgements), p.conditions)
    return NightOutcome(EXIT_OK, f"{name}: ok, within tolerance of {where}; {machine_now}", "within tolerance",
                        p.folder, tuple(judgements), p.conditions)


def _record(opts: NightOptions, p: _Progress, outcome: NightOutcome) -> NightOutcome:
    """Write the night to the history DB and redraw the trend plot; a history that cannot be written is exit 2."""
    summary = one_line(outcome.summary)
    rec = history.NightRecord(
        started_utc=p.started.isoformat(timespec="seconds"),
        finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        folder=history.stored_path(p.folder, opts.root) if p.folder.exists() else "",
        exit_code=outcome.exit_code, summary=summary, reason=one_line(outcome.reason),
        spec_sha256=p.spec.sha256 if p.spec else None, signature_sha256=p.signature_sha256,
        subset_sha256=p.subset_sha256, baseline_night_id=p.base.night_id if p.base else None, means=_means(p),
        judgements=outcome.judgements, conditions=outcome.conditions)
    try:
        opts.root.mkdir(parents=True, exist_ok=True)
        db = history.connect(opts.root / HISTORY_NAME)
        try:
            history.record(db, rec)
        finally:
            db.close()
    except (BenchError, OSError, sqlite3.Error) as exc:
        why = reason_for(exc, opts.root)
        return replace(outcome, exit_code=EXIT_FAILED, summary=one_line(f"{summary} [night NOT recorded: {why}]"))
    _redraw(opts.root)
    return replace(outcome, summary=summary, recorded=True)


def _means(p: _Progress) -> dict[str, tuple[float, int]] | None:
    """Night-level means for the history: a sealed night's, even one that failed later (its record keeps them)."""
    if not p.sealed:
        return None
    try:
        values = p.values or night_values(p.folder, p.spec.scoring_modes[0])
    except (BenchError, OSError, sqlite3.Error, KeyError, ValueError) as exc:
        log.warning("night %s: metrics not recorded: %s", p.folder, exc)
        return None
    return values.means()


def _redraw(root: Path) -> None:
    try:
        db = history.connect(root / HISTORY_NAME)
        try:
            trend.write(db, root / TREND_NAME)
        finally:
            db.close()
    except (OSError, sqlite3.Error, BenchError) as exc:
        log.warning("trend plot not redrawn: %s", exc)


def _subset_sha256(folder: Path) -> str:
    """Which prompts were put to which models (recorded per night: nights of different subsets do not compare)."""
    with closing(results.connect_readonly(folder / "results.db")) as db:
        keys = results.asked(db)
    return hashlib.sha256("\n".join("\t".join(k) for k in keys).encode("utf-8")).hexdigest()


@contextmanager
def single_instance(lock_path: Path) -> Iterator[None]:
    """One nightly at a time: a second one fails at once instead of queueing behind the first."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise NightFailed(f"a nightly run is in progress (pid {holder}, lock {lock_path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
