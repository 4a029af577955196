"""The nightly history DB: every night with its exit code and reason, its metric means, the judgement of each
metric, the machine's conditions, and the baselines chosen. All SQL on it lives here, behind small helpers.

Numbered migrations through `bench.results` (same mechanism, own list): m001 is the schema toolkits before the
migrations created, so their history files are adopted as they are; later steps only add.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

from bench import results
from bench.nightly.drift import Judgement
from bench.nightly.machine import NightConditions

MIGRATIONS: list[tuple[str, results.Migration]] = []
migration = results.migration_registry(MIGRATIONS)


def _statements(db: sqlite3.Connection, *statements: str) -> None:
    for sql in statements:
        db.execute(sql)


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """CREATE TABLE IF NOT EXISTS nights (
            id INTEGER PRIMARY KEY, started_utc TEXT NOT NULL, folder TEXT NOT NULL, spec_sha256 TEXT,
            signature_sha256 TEXT, exit_code INTEGER NOT NULL, summary TEXT NOT NULL) STRICT""",
        """CREATE TABLE IF NOT EXISTS night_metrics (
            night_id INTEGER NOT NULL REFERENCES nights(id), metric TEXT NOT NULL, value REAL,
            n INTEGER NOT NULL, PRIMARY KEY (night_id, metric)) STRICT""",
        """CREATE TABLE IF NOT EXISTS baseline (
            id INTEGER PRIMARY KEY CHECK (id = 1), night_id INTEGER NOT NULL REFERENCES nights(id),
            folder TEXT NOT NULL, signature_sha256 TEXT NOT NULL, chosen_utc TEXT NOT NULL) STRICT""",
    )


@migration
def m002_reasons_judgements_conditions(db: sqlite3.Connection) -> None:
    """Why each night ended as it did, each metric's judgement, the machine's conditions, pinned baselines."""
    _statements(
        db,
        "ALTER TABLE nights ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE nights ADD COLUMN finished_utc TEXT",
        "ALTER TABLE nights ADD COLUMN baseline_night_id INTEGER",
        "ALTER TABLE nights ADD COLUMN subset_sha256 TEXT",
        """CREATE TABLE judgements (
            night_id INTEGER NOT NULL REFERENCES nights(id), metric TEXT NOT NULL, baseline REAL, tonight REAL,
            change REAL, ci_low REAL, ci_high REAL, spread REAL NOT NULL, spread_nights INTEGER NOT NULL,
            tolerance REAL NOT NULL, n INTEGER NOT NULL, drifted INTEGER NOT NULL,
            PRIMARY KEY (night_id, metric)) STRICT""",
        """CREATE TABLE night_conditions (
            night_id INTEGER PRIMARY KEY REFERENCES nights(id), cpus INTEGER NOT NULL, load1_before REAL,
            load1_after REAL, temp_before_c REAL, temp_after_c REAL, throttled_before TEXT, throttled_after TEXT,
            quiet_other_share REAL, quiet_waited_s REAL NOT NULL, answers INTEGER NOT NULL, answers_other_share REAL, answers_max_temp_c REAL,
            answers_throttled INTEGER NOT NULL) STRICT""",
        # signers: the allowed_signers line pinned when the baseline was chosen (NULL: chosen before pinning).
        """CREATE TABLE baselines (
            id INTEGER PRIMARY KEY, night_id INTEGER NOT NULL REFERENCES nights(id), folder TEXT NOT NULL,
            signature_sha256 TEXT NOT NULL, signers TEXT, chosen_utc TEXT NOT NULL) STRICT""",
        "INSERT INTO baselines (night_id, folder, signature_sha256, signers, chosen_utc) "
        "SELECT night_id, folder, signature_sha256, NULL, chosen_utc FROM baseline",
        "DROP TABLE baseline",
    )


@migration
def m003_disturbed_answers(db: sqlite3.Connection) -> None:
    """How many of a night's answers other processes disturbed (they are left out of its comparison)."""
    db.execute("ALTER TABLE night_conditions ADD COLUMN answers_disturbed INTEGER NOT NULL DEFAULT 0")


@migration
def m004_judgement_detectable(db: sqlite3.Connection) -> None:
    """The smallest change each judgement could have flagged (NULL for nights judged before it was stated)."""
    db.execute("ALTER TABLE judgements ADD COLUMN detectable REAL")


def connect(path: Path) -> sqlite3.Connection:
    return results.connect(path, steps=MIGRATIONS)


def stored_path(folder: Path, root: Path) -> str:
    """A night folder as the history stores it: relative to the history's root when inside it, so the whole root
    can be moved or copied (backups, another disk) and still resolve."""
    try:
        return str(folder.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(folder.resolve())


def resolve(stored: str, root: Path) -> Path:
    return root / stored  # an absolute stored path stays absolute


@dataclass(frozen=True)
class Night:
    id: int
    started_utc: str
    folder: str
    spec_sha256: str | None
    signature_sha256: str | None
    exit_code: int
    summary: str
    reason: str
    finished_utc: str | None
    baseline_night_id: int | None
    subset_sha256: str | None

    def path(self, root: Path) -> Path:
        return resolve(self.folder, root)


@dataclass(frozen=True)
class NightRecord:
    """Everything one night adds to the history, written in one transaction."""

    started_utc: str
    finished_utc: str
    folder: str
    exit_code: int
    summary: str
    reason: str
    spec_sha256: str | None = None
    signature_sha256: str | None = None
    subset_sha256: str | None = None
    baseline_night_id: int | None = None
    means: Mapping[str, tuple[float, int]] | None = None
    judgements: Sequence[Judgement] = ()
    conditions: NightConditions | None = None


@dataclass(frozen=True)
class Baseline:
    night_id: int
    folder: Path
    signature_sha256: str
    signers: str | None
    chosen_utc: str


_NIGHT_COLUMNS = ", ".join(f.name for f in fields(Night))
_JUDGEMENT_COLUMNS = [f.name for f in fields(Judgement)]
_CONDITION_COLUMNS = [f.name for f in fields(NightConditions)]


def record(db: sqlite3.Connection, rec: NightRecord) -> int:
    with results.transaction(db):
        night_id = db.execute(
            "INSERT INTO nights (started_utc, folder, spec_sha256, signature_sha256, exit_code, summary, reason, "
            "finished_utc, baseline_night_id, subset_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.started_utc, rec.folder, rec.spec_sha256, rec.signature_sha256, rec.exit_code, rec.summary,
             rec.reason, rec.finished_utc, rec.baseline_night_id, rec.subset_sha256)).lastrowid
        db.executemany("INSERT INTO night_metrics VALUES (?, ?, ?, ?)",
                       [(night_id, metric, value, n) for metric, (value, n) in (rec.means or {}).items()])
        db.executemany(f"INSERT INTO judgements (night_id, {', '.join(_JUDGEMENT_COLUMNS)}) "
                       f"VALUES (?{', ?' * len(_JUDGEMENT_COLUMNS)})",
                       [(night_id, *_values(j, _JUDGEMENT_COLUMNS)) for j in rec.judgements])
        if rec.conditions is not None:
            db.execute(f"INSERT INTO night_conditions (night_id, {', '.join(_CONDITION_COLUMNS)}) "
                       f"VALUES (?{', ?' * len(_CONDITION_COLUMNS)})",
                       (night_id, *_values(rec.conditions, _CONDITION_COLUMNS)))
    return night_id


def _values(obj, names: list[str]) -> tuple:
    values = asdict(obj)
    return tuple(values[n] for n in names)


def nights(db: sqlite3.Connection, last: int | None = None) -> list[Night]:
    """Nights oldest first (the newest ``last`` of them)."""
    rows = db.execute(f"SELECT {_NIGHT_COLUMNS} FROM nights ORDER BY id DESC LIMIT ?", (last or -1,)).fetchall()
    return [Night(*r) for r in reversed(rows)]


def night(db: sqlite3.Connection, night_id: int) -> Night | None:
    row = db.execute(f"SELECT {_NIGHT_COLUMNS} FROM nights WHERE id = ?", (night_id,)).fetchone()
    return Night(*row) if row else None


def latest_compared(db: sqlite3.Connection) -> Night | None:
    """The newest night that made a valid comparison (exit 0 or 1): the only kind that can be a baseline."""
    row = db.execute(f"SELECT {_NIGHT_COLUMNS} FROM nights WHERE exit_code IN (0, 1) ORDER BY id DESC LIMIT 1"
                     ).fetchone()
    return Night(*row) if row else None


def choose_baseline(db: sqlite3.Connection, chosen: Night, signers: str, chosen_utc: str) -> None:
    with results.transaction(db):
        db.execute("INSERT INTO baselines (night_id, folder, signature_sha256, signers, chosen_utc) "
                   "VALUES (?, ?, ?, ?, ?)", (chosen.id, chosen.folder, chosen.signature_sha256, signers, chosen_utc))


def baseline(db: sqlite3.Connection, root: Path) -> Baseline | None:
    """The baseline chosen last (earlier choices stay in the table, so the history says what each night met)."""
    row = db.execute("SELECT night_id, folder, signature_sha256, signers, chosen_utc FROM baselines "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    return Baseline(row[0], resolve(row[1], root), row[2], row[3], row[4]) if row else None


def accepted_changes(db: sqlite3.Connection, baseline_night_id: int, metric: str) -> list[float]:
    """The metric's judged change on accepted (exit 0) nights compared with this baseline: what the night-to-night
    spread is learned from."""
    return [r[0] for r in db.execute(
        "SELECT j.change FROM judgements j JOIN nights n ON n.id = j.night_id "
        "WHERE n.exit_code = 0 AND n.baseline_night_id = ? AND j.metric = ? AND j.change IS NOT NULL ORDER BY n.id",
        (baseline_night_id, metric))]


def conditions(db: sqlite3.Connection, night_id: int) -> NightConditions | None:
    row = db.execute(f"SELECT {', '.join(_CONDITION_COLUMNS)} FROM night_conditions WHERE night_id = ?",
                     (night_id,)).fetchone()
    return NightConditions(*row) if row else None


@dataclass(frozen=True)
class Judged:
    """One metric of one night as the trend plot shows it."""

    night_id: int
    baseline_night_id: int
    metric: str
    change: float
    tolerance: float
    drifted: bool


def judged(db: sqlite3.Connection) -> list[Judged]:
    return [Judged(*r[:5], bool(r[5])) for r in db.execute(
        "SELECT j.night_id, n.baseline_night_id, j.metric, j.change, j.tolerance, j.drifted FROM judgements j "
        "JOIN nights n ON n.id = j.night_id WHERE j.change IS NOT NULL ORDER BY j.night_id")]
