"""The results store: one SQLite file per result folder, WAL mode, STRICT tables, numbered migrations.

One folder holds one run (one spec hash). Answers are append-only and each is committed, with its energy windows,
in one transaction before the next request goes out, so a SIGKILL loses at most the answer in flight and a restart
asks only what is missing. Scores are derived data: re-scoring a mode replaces that mode's rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from bench import __version__
from bench.errors import ResultsError
from bench.catalog import ModelEntry
from bench.conditions import AnswerConditions
from bench.energy import MeterUncertainty, store as store_window
from bench.identity import DatasetIdentity, RunIdentity
from bench.records import Completion, EnergyReading, IdleBaseline, Score
from bench.spec import Spec, parse_spec

log = logging.getLogger(__name__)

STATUSES = ("ok", "timeout", "error", "skipped")
PHASES = ("answer", "prefill", "decode")

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration_registry(steps: list[tuple[str, Migration]]) -> Callable[[Migration], Migration]:
    """A decorator appending numbered migrations to ``steps``: one list per kind of database (results, history)."""
    def register(fn: Migration) -> Migration:
        name = fn.__name__
        if any(existing == name for existing, _ in steps):
            raise ValueError(f"duplicate migration {name}")
        steps.append((name, fn))
        return fn
    return register


migration = migration_registry(MIGRATIONS)
"""Register a results-DB migration; names are numbered (m001_...) and never reused or edited once applied."""


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _run_ddl(
        db,
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            spec_name TEXT NOT NULL,
            spec_sha256 TEXT NOT NULL,
            spec_toml TEXT NOT NULL,
            toolkit_version TEXT NOT NULL,
            created_utc TEXT NOT NULL
        ) STRICT;
        CREATE TABLE run_events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            t_utc TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        ) STRICT;
        CREATE TABLE models (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            model TEXT NOT NULL,
            digest TEXT,
            facts_json TEXT NOT NULL,
            prepared_utc TEXT NOT NULL,
            PRIMARY KEY (run_id, model)
        ) STRICT;
        CREATE TABLE idle_baselines (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            source TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            mean_w REAL NOT NULL,
            sd_w REAL NOT NULL,
            n_samples INTEGER NOT NULL,
            measured_utc TEXT NOT NULL
        ) STRICT;
        CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            model TEXT NOT NULL,
            dataset TEXT NOT NULL,
            item_id TEXT NOT NULL,
            item_sha256 TEXT NOT NULL,
            prompt_sha256 TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'timeout', 'error', 'skipped')),
            reason TEXT NOT NULL DEFAULT '',
            response TEXT,
            t_send_ns INTEGER,
            t_first_token_ns INTEGER,
            t_last_token_ns INTEGER,
            prompt_eval_count INTEGER,
            prompt_eval_duration_ns INTEGER,
            eval_count INTEGER,
            eval_duration_ns INTEGER,
            load_duration_ns INTEGER,
            total_duration_ns INTEGER,
            done_reason TEXT,
            idle_w REAL,
            temp_before_c REAL,
            temp_after_c REAL,
            throttled_before TEXT,
            throttled_after TEXT,
            created_utc TEXT NOT NULL,
            UNIQUE (run_id, model, dataset, item_id)
        ) STRICT;
        CREATE TABLE energy_windows (
            answer_id INTEGER NOT NULL REFERENCES answers(id),
            phase TEXT NOT NULL CHECK (phase IN ('answer', 'prefill', 'decode')),
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            energy_raw_j REAL NOT NULL,
            energy_j REAL NOT NULL,
            mean_w REAL NOT NULL,
            n_samples INTEGER NOT NULL,
            coverage REAL NOT NULL,
            PRIMARY KEY (answer_id, phase)
        ) STRICT;
        CREATE TABLE scores (
            answer_id INTEGER NOT NULL REFERENCES answers(id),
            mode TEXT NOT NULL,
            correct INTEGER NOT NULL,
            extracted TEXT,
            reason TEXT NOT NULL,
            details_json TEXT NOT NULL,
            scored_utc TEXT NOT NULL,
            PRIMARY KEY (answer_id, mode)
        ) STRICT;
        CREATE TABLE traces (
            answer_id INTEGER PRIMARY KEY REFERENCES answers(id),
            samples_json TEXT NOT NULL
        ) STRICT;
        """
    )


@migration
def m002_run_identity(db: sqlite3.Connection) -> None:
    """What a run's numbers mean, snapshotted at run time: models (catalog facts), datasets (task version, exact
    items), prompt version; and the scorer version behind each mode's stored scores."""
    _run_ddl(
        db,
        """
        CREATE TABLE run_identity (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
            prompt_version TEXT NOT NULL,
            recorded_utc TEXT NOT NULL
        ) STRICT;
        CREATE TABLE run_models (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            base TEXT NOT NULL,
            family TEXT NOT NULL,
            parameter_size TEXT NOT NULL,
            quant TEXT NOT NULL,
            precision_group TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            digest TEXT NOT NULL,
            in_paper INTEGER NOT NULL,
            gguf_package TEXT,
            gguf_file TEXT,
            PRIMARY KEY (run_id, model)
        ) STRICT;
        CREATE TABLE run_datasets (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            dataset TEXT NOT NULL,
            task_version TEXT NOT NULL,
            source TEXT NOT NULL,
            selection TEXT NOT NULL,
            item_limit INTEGER,
            item_ids_json TEXT NOT NULL,
            items_sha256 TEXT NOT NULL,
            PRIMARY KEY (run_id, dataset)
        ) STRICT;
        CREATE TABLE score_versions (
            mode TEXT PRIMARY KEY,
            scoring_version TEXT NOT NULL,
            scored_utc TEXT NOT NULL
        ) STRICT;
        """
    )


@migration
def m003_energy_window_bounds(db: sqlite3.Connection) -> None:
    """Energy windows may hold no energy (nothing measured: NULL with a reason) and carry their error bound.

    SQLite cannot drop a NOT NULL in place, so the table is rebuilt; rows of older runs keep their values and get
    NULL (unknown) edge terms and bounds."""
    _run_ddl(
        db,
        """
        CREATE TABLE energy_windows_v2 (
            answer_id INTEGER NOT NULL REFERENCES answers(id),
            phase TEXT NOT NULL CHECK (phase IN ('answer', 'prefill', 'decode')),
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            energy_raw_j REAL,
            energy_j REAL,
            mean_w REAL,
            n_samples INTEGER NOT NULL,
            coverage REAL NOT NULL CHECK (coverage BETWEEN 0 AND 1),
            edge_j REAL,
            edge_w REAL,
            bound_j REAL,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (answer_id, phase)
        ) STRICT;
        INSERT INTO energy_windows_v2 (answer_id, phase, start_ns, end_ns, energy_raw_j, energy_j, mean_w, n_samples,
                                       coverage)
            SELECT answer_id, phase, start_ns, end_ns, energy_raw_j, energy_j, mean_w, n_samples, coverage
            FROM energy_windows;
        DROP TABLE energy_windows;
        ALTER TABLE energy_windows_v2 RENAME TO energy_windows
        """
    )


@migration
def m004_answer_conditions(db: sqlite3.Connection) -> None:
    """What else the machine did during each answer (`bench.conditions`), so a night can be judged comparable."""
    _run_ddl(
        db,
        """
        CREATE TABLE answer_conditions (
            answer_id INTEGER PRIMARY KEY REFERENCES answers(id),
            span_s REAL NOT NULL,
            machine_cpu_s REAL NOT NULL,
            own_cpu_s REAL NOT NULL,
            cpus INTEGER NOT NULL,
            load1 REAL
        ) STRICT;
        """
    )


@migration
def m005_answer_context(db: sqlite3.Connection) -> None:
    """How an answer ended and what the server did with its prompt: ``complete`` (0 when the stream ended without a
    done chunk, the text kept), ``num_ctx`` (the context it ran with; ``prompt_eval_count >= num_ctx`` means the
    prompt was cut), ``prompt_cached_tokens`` (prompt tokens the server reused from its cache; NULL unknown)."""
    _run_ddl(
        db,
        """
        ALTER TABLE answers ADD COLUMN complete INTEGER;
        ALTER TABLE answers ADD COLUMN num_ctx INTEGER;
        ALTER TABLE answers ADD COLUMN prompt_cached_tokens INTEGER
        """,
    )


@migration
def m006_energy_window_clock(db: sqlite3.Connection) -> None:
    """For a meter on another machine: the clock offset each window was converted with, the bound on its error,
    and whether that bound exceeded the spec's tolerance (NULL for a meter sharing this machine's clock)."""
    _run_ddl(
        db,
        """
        ALTER TABLE energy_windows ADD COLUMN clock_offset_ns INTEGER;
        ALTER TABLE energy_windows ADD COLUMN clock_bound_ns INTEGER;
        ALTER TABLE energy_windows ADD COLUMN clock_flag INTEGER CHECK (clock_flag IN (0, 1))
        """
    )


@migration
def m007_answer_device(db: sqlite3.Connection) -> None:
    """Which device ran each answer (``bench merge``): NULL in a single-machine run, where the manifest's host is
    the device; a fleet host's name in a merged folder, with that device's facts and calibration beside it."""
    _run_ddl(
        db,
        """
        ALTER TABLE answers ADD COLUMN device TEXT;
        CREATE TABLE devices (
            device TEXT PRIMARY KEY,
            signer TEXT NOT NULL,
            facts_json TEXT NOT NULL
        ) STRICT;
        CREATE TABLE device_calibration (
            device TEXT NOT NULL REFERENCES devices(device),
            model TEXT NOT NULL,
            n_answers INTEGER NOT NULL,
            idle_w REAL,
            j_per_token REAL,
            tokens_per_s REAL,
            PRIMARY KEY (device, model)
        ) STRICT;
        """
    )


@migration
def m008_completion_windows(db: sqlite3.Connection) -> None:
    """The window the paper integrated, ``[last byte, last byte + total_duration]`` (Ollama's ``created_at`` is the
    completion time), metered beside the answer's own window so every run measures what that choice changes. Its
    columns mean what ``energy_windows``' do (``bench.energy.StoredWindow``)."""
    _run_ddl(
        db,
        """
        CREATE TABLE completion_windows (
            answer_id INTEGER PRIMARY KEY REFERENCES answers(id),
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            energy_raw_j REAL,
            energy_j REAL,
            mean_w REAL,
            n_samples INTEGER NOT NULL,
            coverage REAL NOT NULL CHECK (coverage BETWEEN 0 AND 1),
            bound_j REAL,
            reason TEXT NOT NULL DEFAULT ''
        ) STRICT;
        """
    )


def _run_ddl(db: sqlite3.Connection, script: str) -> None:
    """Statement by statement: `executescript` would COMMIT first and break the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: Path, *, trace_sql: bool = False,
            steps: list[tuple[str, Migration]] = MIGRATIONS) -> sqlite3.Connection:
    """Open (creating if needed) and migrate a results DB (or, with other ``steps``, another of the toolkit's DBs).
    Autocommit mode; writes go through `transaction`.

    An existing results DB is checked read-only first (`connect_readonly`): a file that is not one of ours is
    refused before anything, even the journal mode, is written to it."""
    if steps is MIGRATIONS and Path(path).exists() and Path(path).stat().st_size:
        connect_readonly(path, allow_fresh=True).close()
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.row_factory = sqlite3.Row
    if trace_sql:
        db.set_trace_callback(lambda sql: log.debug("sql: %s", sql))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # an answer that was committed survives a power cut
    db.execute("PRAGMA foreign_keys=ON")
    migrate(db, steps)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _known_migrations(db: sqlite3.Connection, steps: list[tuple[str, Migration]] = MIGRATIONS,
                      label: object = "database") -> set[str]:
    """The migrations applied to ``db``; refuses a DB written by a newer toolkit (migrations we do not know)."""
    applied = {row[0] for row in db.execute("SELECT name FROM _bench_migrations")}
    unknown = applied - {name for name, _ in steps}
    if unknown:
        raise ResultsError(f"{label} has migrations this toolkit does not know ({', '.join(sorted(unknown))}); "
                           f"it was written by a newer version than {__version__}")
    return applied


def migrate(db: sqlite3.Connection, steps: list[tuple[str, Migration]] = MIGRATIONS) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS _bench_migrations (name TEXT PRIMARY KEY, applied_utc TEXT NOT NULL) STRICT")
    applied = _known_migrations(db, steps)
    for name, fn in steps:
        if name in applied:
            continue
        with transaction(db):
            fn(db)
            db.execute("INSERT INTO _bench_migrations VALUES (?, ?)", (name, utc_now()))
        log.info("applied migration %s", name)


_OUR_TABLES = ("_bench_migrations", "runs", "answers", "scores")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def connect_readonly(path: Path | str, *, allow_fresh: bool = False) -> sqlite3.Connection:
    """An existing results DB, read-only, after checking that it is one; ResultsError naming the file otherwise.

    Nothing is written, not even a ``-shm`` file: without a live ``-wal`` beside it the file is opened immutable.
    ``allow_fresh`` also accepts a DB that holds nothing yet (a first run killed before its first migration).
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no results DB here; run `bench run` first")
    _check_header(path)
    live_wal = path.with_name(path.name + "-wal").exists()
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if live_wal else '&immutable=1'}", uri=True)
    db.row_factory = sqlite3.Row
    try:
        try:
            tables = _tables(db)
            damage = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise ResultsError(f"{path}: not a readable SQLite database ({exc})") from None
        if damage != "ok":
            raise ResultsError(f"{path}: damaged SQLite database ({damage[:120]})")
        missing = [t for t in _OUR_TABLES if t not in tables]
        if allow_fresh and tables <= {"_bench_migrations"} and not _applied(db, tables):
            return db
        if missing:
            raise ResultsError(f"{path}: not a results DB of edge-llm-bench (no table {', '.join(missing)})")
        _known_migrations(db, label=f"{path}:")
    except BaseException:
        db.close()
        raise
    return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _applied(db: sqlite3.Connection, tables: set[str]) -> int:
    return db.execute("SELECT count(*) FROM _bench_migrations").fetchone()[0] if "_bench_migrations" in tables else 0


def _check_header(path: Path) -> None:
    """The SQLite header: magic string, and a file at least as long as the page count it records."""
    with path.open("rb") as fh:
        header = fh.read(100)
    if not header:
        raise ResultsError(f"{path}: empty file, not a SQLite database")
    if not header.startswith(_SQLITE_MAGIC):
        raise ResultsError(f"{path}: not a SQLite database (results.db must be written by `bench run`)")
    if len(header) < 100:
        raise ResultsError(f"{path}: truncated SQLite database ({len(header)} bytes)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages_valid = header[92:96] == header[24:28]  # "version-valid-for" matches the change counter
    pages = int.from_bytes(header[28:32], "big") if pages_valid else 0
    if path.stat().st_size < pages * page_size:
        raise ResultsError(f"{path}: truncated SQLite database ({path.stat().st_size} bytes, "
                           f"header says {pages} pages of {page_size})")


def finalize(path: Path) -> None:
    """Fold the WAL into the main file and leave rollback-journal mode, so a sealed folder holds one DB file.

    Opening the DB again with `connect` (resume) switches back to WAL; that is a change to a sealed folder anyway.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("SELECT count(*) FROM _bench_migrations").fetchone()[0]


@dataclass(frozen=True)
class RunRow:
    run_id: str
    spec_name: str
    spec_sha256: str
    spec_toml: str
    toolkit_version: str
    created_utc: str


def get_run(db: sqlite3.Connection) -> RunRow | None:
    rows = db.execute("SELECT * FROM runs").fetchall()
    if len(rows) > 1:
        raise ResultsError(f"results DB holds {len(rows)} runs; a result folder holds exactly one")
    return RunRow(**dict(rows[0])) if rows else None


def open_run(db: sqlite3.Connection, spec_name: str, spec_sha256: str, spec_toml: str) -> tuple[RunRow, bool]:
    """The folder's run, created on first use. Returns (run, resumed). A different spec hash is refused."""
    run = get_run(db)
    if run is not None:
        _refuse_other_spec(run, spec_name, spec_sha256)
        add_event(db, run.run_id, "resume")
        return run, True
    run = RunRow(run_id=uuid.uuid4().hex, spec_name=spec_name, spec_sha256=spec_sha256, spec_toml=spec_toml,
                 toolkit_version=__version__, created_utc=utc_now())
    with transaction(db):
        db.execute("INSERT INTO runs VALUES (:run_id, :spec_name, :spec_sha256, :spec_toml, :toolkit_version, "
                   ":created_utc)", run.__dict__)
        db.execute("INSERT INTO run_events (run_id, t_utc, kind) VALUES (?, ?, 'start')", (run.run_id, utc_now()))
    return run, False


def _refuse_other_spec(run: RunRow, spec_name: str, spec_sha256: str) -> None:
    if run.spec_sha256 != spec_sha256:
        raise ResultsError(f"this result folder holds a run of spec {run.spec_name!r} (sha256 {run.spec_sha256[:12]}), "
                           f"not {spec_name!r} (sha256 {spec_sha256[:12]}); choose another --out folder")


def check_folder_for(path: Path, spec_name: str, spec_sha256: str) -> None:
    """Before a run writes anything: refuse a DB that is not ours or that holds another spec's run."""
    if not path.exists() or not path.stat().st_size:
        return
    db = connect_readonly(path, allow_fresh=True)
    try:
        run = get_run(db) if "runs" in _tables(db) else None
    finally:
        db.close()
    if run is not None:
        _refuse_other_spec(run, spec_name, spec_sha256)


def add_event(db: sqlite3.Connection, run_id: str, kind: str, detail: str = "") -> None:
    with transaction(db):
        db.execute("INSERT INTO run_events (run_id, t_utc, kind, detail) VALUES (?, ?, ?, ?)",
                   (run_id, utc_now(), kind, detail))


def run_events(db: sqlite3.Connection) -> list[dict[str, str]]:
    """Every run event (t_utc, kind, detail) in the order it happened."""
    return [dict(r) for r in db.execute("SELECT t_utc, kind, detail FROM run_events ORDER BY id")]


def event_details(db: sqlite3.Connection, kind: str) -> list[Any]:
    """The JSON details of the events of one kind (``meter``, ``meter_uncertainty``: one per meter session)."""
    return [json.loads(r[0]) for r in db.execute("SELECT detail FROM run_events WHERE kind = ? ORDER BY id", (kind,))]


def record_model(db: sqlite3.Connection, run_id: str, model: str, facts: dict[str, Any]) -> None:
    """Store what `prepare` learned about a model; a later session must see the same digest."""
    digest = facts.get("digest")
    row = db.execute("SELECT digest FROM models WHERE run_id = ? AND model = ?", (run_id, model)).fetchone()
    if row is not None:
        if row["digest"] != digest:
            raise ResultsError(f"model {model} now has digest {digest}, but this run started with {row['digest']}; "
                               f"a run must not mix model versions")
        return
    with transaction(db):
        db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?)",
                   (run_id, model, digest, json.dumps(facts, sort_keys=True, default=str), utc_now()))


def model_digests(db: sqlite3.Connection) -> dict[str, str | None]:
    """The digest each model ran with, by tag."""
    return {r[0]: r[1] for r in db.execute("SELECT model, digest FROM models ORDER BY model")}


def model_facts(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """What `prepare` learned about each model (digest and backend facts), by tag."""
    return {r[0]: json.loads(r[1]) for r in db.execute("SELECT model, facts_json FROM models ORDER BY model")}


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def record_identity(db: sqlite3.Connection, run_id: str, identity: RunIdentity) -> None:
    """Store the run's identity once. A resumed run must ask the same prompts and items, so a different prompt
    version or item set is refused; model facts keep their first snapshot (a catalog edit is logged, not used)."""
    stored = run_identity(db)
    if stored is not None:
        if stored.prompt_version != identity.prompt_version:
            raise ResultsError(f"this run was asked with prompt version {stored.prompt_version}, this toolkit renders "
                               f"{identity.prompt_version}; finish it with the toolkit that started it or use another --out")
        before = {d.name: d for d in stored.datasets}
        for d in identity.datasets:
            old = before.get(d.name)
            if old is not None and (old.items_sha256, old.task_version) != (d.items_sha256, d.task_version):
                raise ResultsError(f"dataset {d.name}: items or task version changed since this run started "
                                   f"(task {old.task_version} -> {d.task_version}); a run must not mix item sets")
        first = {m.tag: m for m in stored.models}
        changed = sorted(m.tag for m in identity.models if first.get(m.tag, m) != m)
        if changed:
            log.warning("catalog facts changed since this run started for %s; the run keeps its snapshot",
                        ", ".join(changed))
    known = {m.tag for m in stored.models} if stored else set()
    with transaction(db):
        if stored is None:
            db.execute("INSERT INTO run_identity VALUES (?, ?, ?)", (run_id, identity.prompt_version, utc_now()))
            db.executemany("INSERT INTO run_datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                (run_id, d.name, d.task_version, d.source, d.selection, d.limit, json.dumps(list(d.item_ids)),
                 d.items_sha256) for d in identity.datasets])
        db.executemany("INSERT INTO run_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (run_id, m.tag, m.backend, m.base, m.family, m.parameter_size, m.quant, m.precision_group, m.size_bytes,
             m.digest, int(m.in_paper), m.gguf_package, m.gguf_file) for m in identity.models if m.tag not in known])


def run_identity(db: sqlite3.Connection) -> RunIdentity | None:
    """The stored identity (None for a run written before it was recorded), with each scored mode's version."""
    if not _table_exists(db, "run_identity"):
        return None
    row = db.execute("SELECT prompt_version FROM run_identity").fetchone()
    if row is None:
        return None
    models = tuple(ModelEntry(tag=r["model"], backend=r["backend"], base=r["base"], family=r["family"],
                              parameter_size=r["parameter_size"], quant=r["quant"], size_bytes=r["size_bytes"],
                              digest=r["digest"], in_paper=bool(r["in_paper"]), gguf_package=r["gguf_package"],
                              gguf_file=r["gguf_file"])
                   for r in db.execute("SELECT * FROM run_models ORDER BY rowid"))
    datasets = tuple(DatasetIdentity(name=r["dataset"], task_version=r["task_version"], source=r["source"],
                                     selection=r["selection"], limit=r["item_limit"],
                                     item_ids=tuple(json.loads(r["item_ids_json"])), items_sha256=r["items_sha256"])
                     for r in db.execute("SELECT * FROM run_datasets ORDER BY rowid"))
    scoring = {r["mode"]: r["scoring_version"] for r in db.execute("SELECT * FROM score_versions ORDER BY mode")}
    return RunIdentity(prompt_version=row["prompt_version"], models=models, datasets=datasets, scoring=scoring)


def stored_spec(db: sqlite3.Connection) -> Spec:
    """The run's spec as stored, its tags resolved in the run's own model snapshot (a run stored before snapshots
    existed resolves them in today's catalog: nothing else is known about its models)."""
    run = get_run(db)
    if run is None:
        raise ResultsError("results DB holds no run")
    stored = run_identity(db)
    catalog = {m.tag: m for m in stored.models} if stored is not None else None
    return parse_spec(run.spec_toml, f"{run.spec_name} (stored spec)", catalog)


def scoring_version(db: sqlite3.Connection, mode: str) -> str | None:
    """The scorer version behind the stored scores of ``mode`` (None if unscored or not recorded)."""
    if not _table_exists(db, "score_versions"):
        return None
    row = db.execute("SELECT scoring_version FROM score_versions WHERE mode = ?", (mode,)).fetchone()
    return row[0] if row else None


def record_idle(db: sqlite3.Connection, run_id: str, idle: IdleBaseline) -> None:
    with transaction(db):
        db.execute("INSERT INTO idle_baselines (run_id, source, start_ns, end_ns, mean_w, sd_w, n_samples, measured_utc) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, idle.source, idle.start_ns, idle.end_ns, idle.mean_w, idle.sd_w, idle.n_samples, utc_now()))


def latest_idle(db: sqlite3.Connection) -> IdleBaseline | None:
    row = db.execute("SELECT * FROM idle_baselines ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return IdleBaseline(mean_w=row["mean_w"], sd_w=row["sd_w"], n_samples=row["n_samples"], start_ns=row["start_ns"],
                        end_ns=row["end_ns"], source=row["source"])


def asked(db: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    """(model, dataset, item_id, prompt_sha256) of every answer, sorted: which prompts a run put to which models."""
    return [tuple(r) for r in db.execute(
        "SELECT model, dataset, item_id, prompt_sha256 FROM answers ORDER BY model, dataset, item_id")]


def asked_items(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(dataset, item_id, item_sha256) of every item some answer asked, each once: what scoring must re-load."""
    return [tuple(r) for r in db.execute("SELECT DISTINCT dataset, item_id, item_sha256 FROM answers ORDER BY 1, 2")]


def done_keys(db: sqlite3.Connection, run_id: str) -> set[tuple[str, str, str]]:
    """(model, dataset, item_id) of every answer already recorded: what a resumed run must not ask again."""
    return {(r[0], r[1], r[2]) for r in db.execute(
        "SELECT model, dataset, item_id FROM answers WHERE run_id = ?", (run_id,))}


@dataclass(frozen=True)
class AnswerRecord:
    """Everything the runner knows about one answer; the single write path stores it atomically."""

    run_id: str
    model: str
    dataset: str
    item_id: str
    item_sha256: str
    prompt_sha256: str
    status: str
    reason: str = ""
    completion: Completion | None = None
    idle_w: float | None = None
    windows: dict[str, EnergyReading] | None = None
    temp_before_c: float | None = None
    temp_after_c: float | None = None
    throttled_before: str | None = None
    throttled_after: str | None = None
    trace: list[tuple[int, float]] | None = None
    meter_uncertainty: MeterUncertainty | None = None  # None: the meter declared none (zeros, said so in the report)
    conditions: AnswerConditions | None = None
    clock_tolerance_ns: int = 1_000_000  # a remote meter's window whose clock bound exceeds this is flagged


def record_answer(db: sqlite3.Connection, rec: AnswerRecord) -> int:
    """The one write path for answers: the answer row, its energy windows and trace in one transaction."""
    if rec.status not in STATUSES:
        raise ResultsError(f"status must be one of {', '.join(STATUSES)}, got {rec.status!r}")
    c = rec.completion
    with transaction(db):
        cur = db.execute(
            "INSERT INTO answers (run_id, model, dataset, item_id, item_sha256, prompt_sha256, status, reason, response, "
            "t_send_ns, t_first_token_ns, t_last_token_ns, prompt_eval_count, prompt_eval_duration_ns, eval_count, "
            "eval_duration_ns, load_duration_ns, total_duration_ns, done_reason, idle_w, temp_before_c, temp_after_c, "
            "throttled_before, throttled_after, created_utc, complete, num_ctx, prompt_cached_tokens) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.run_id, rec.model, rec.dataset, rec.item_id, rec.item_sha256, rec.prompt_sha256, rec.status,
             rec.reason, c.text if c else None, c.t_send_ns if c else None, c.t_first_token_ns if c else None,
             c.t_last_token_ns if c else None, c.prompt_eval_count if c else None,
             c.prompt_eval_duration_ns if c else None, c.eval_count if c else None, c.eval_duration_ns if c else None,
             c.load_duration_ns if c else None, c.total_duration_ns if c else None, c.done_reason if c else None,
             rec.idle_w, rec.temp_before_c, rec.temp_after_c, rec.throttled_before, rec.throttled_after, utc_now(),
             int(c.complete) if c else None, c.num_ctx if c else None, c.prompt_cached_tokens if c else None))
        answer_id = cur.lastrowid
        unknown = sorted(set(rec.windows or {}) - set(PHASES))
        if unknown:
            raise ResultsError(f"energy window phase must be one of {', '.join(PHASES)}, got {unknown[0]!r}")
        unc = rec.meter_uncertainty or MeterUncertainty()
        for phase, reading in (rec.windows or {}).items():
            w = store_window(reading, rec.idle_w or 0.0, unc)
            bound = reading.clock_bound_ns
            db.execute("INSERT INTO energy_windows (answer_id, phase, start_ns, end_ns, energy_raw_j, energy_j, mean_w, "
                       "n_samples, coverage, edge_j, edge_w, bound_j, reason, clock_offset_ns, clock_bound_ns, "
                       "clock_flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (answer_id, phase, w.start_ns, w.end_ns, w.energy_raw_j, w.energy_j, w.mean_w, w.n_samples,
                        w.coverage, w.edge_j, w.edge_w, w.bound_j, w.reason, reading.clock_offset_ns, bound,
                        None if bound is None else int(bound > rec.clock_tolerance_ns)))
        if rec.trace:
            db.execute("INSERT INTO traces VALUES (?, ?)", (answer_id, json.dumps(rec.trace)))
        if rec.conditions is not None:
            k = rec.conditions
            db.execute("INSERT INTO answer_conditions VALUES (?, ?, ?, ?, ?, ?)",
                       (answer_id, k.span_s, k.machine_cpu_s, k.own_cpu_s, k.cpus, k.load1))
    return answer_id


def completion_window(answer_id: int, c: Completion | None) -> tuple[int, int, int] | None:
    """(answer id, start, end) of the paper's window for an answer: from its last byte for ``total_duration``."""
    if c is None or not c.total_duration_ns:
        return None
    return answer_id, c.t_last_token_ns, c.t_last_token_ns + c.total_duration_ns


def record_completion_window(db: sqlite3.Connection, answer_id: int, reading: EnergyReading, idle_w: float,
                             unc: MeterUncertainty | None = None) -> None:
    """Store an answer's completion-stamped window, with the meaning of an energy window (``store_window``)."""
    w = store_window(reading, idle_w, unc or MeterUncertainty())
    with transaction(db):
        db.execute("INSERT OR REPLACE INTO completion_windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (answer_id, w.start_ns, w.end_ns, w.energy_raw_j, w.energy_j, w.mean_w, w.n_samples, w.coverage,
                    w.bound_j, w.reason))


def answers_to_score(db: sqlite3.Connection, mode: str, *, rescore: bool = False) -> list[sqlite3.Row]:
    """Answers that have a response and no score in this mode (all of them with ``rescore``)."""
    sql = ("SELECT a.id, a.dataset, a.item_id, a.response FROM answers a WHERE a.status = 'ok'"
           + ("" if rescore else " AND NOT EXISTS (SELECT 1 FROM scores s WHERE s.answer_id = a.id AND s.mode = ?)")
           + " ORDER BY a.id")
    return db.execute(sql, () if rescore else (mode,)).fetchall()


def record_scores(db: sqlite3.Connection, mode: str, scored: list[tuple[int, Score]], version: str) -> None:
    """Store one batch of scores for a mode, replacing earlier scores of the same answers in that mode; ``version``
    is the scorer's, recorded per mode (a mode's stored scores all come from one version)."""
    now = utc_now()
    with transaction(db):
        db.execute("INSERT OR REPLACE INTO score_versions VALUES (?, ?, ?)", (mode, version, now))
        db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(answer_id, mode, int(s.correct), s.extracted, s.reason,
                         json.dumps(dict(s.details), sort_keys=True, default=str), now) for answer_id, s in scored])


@dataclass(frozen=True)
class BlockProgress:
    """One (model, dataset) block of a run as far as it got: answers recorded, first and last commit times."""

    model: str
    dataset: str
    answers: int
    first_utc: str
    last_utc: str


def block_progress(db: sqlite3.Connection) -> list[BlockProgress]:
    return [BlockProgress(*r) for r in db.execute(
        "SELECT model, dataset, count(*), min(created_utc), max(created_utc) FROM answers GROUP BY model, dataset "
        "ORDER BY model, dataset")]


def answers_per_block(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """(model, dataset) -> answers recorded."""
    return {(b.model, b.dataset): b.answers for b in block_progress(db)}


def last_failure(db: sqlite3.Connection) -> tuple[str, str, str] | None:
    """(status, reason, created_utc) of the newest answer that timed out or failed."""
    row = db.execute("SELECT status, reason, created_utc FROM answers WHERE status IN ('error', 'timeout') "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    return tuple(row) if row else None


def correct_by_dataset(db: sqlite3.Connection, mode: str) -> dict[str, tuple[int, int]]:
    """dataset -> (correct, scored) over every stored score of ``mode``."""
    return {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT a.dataset, sum(s.correct), count(*) FROM scores s JOIN answers a ON a.id = s.answer_id "
        "WHERE s.mode = ? GROUP BY a.dataset ORDER BY a.dataset", (mode,))}


def status_counts(db: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: r[1] for r in db.execute("SELECT status, count(*) FROM answers GROUP BY status ORDER BY status")}


CONDITIONS_SQL = """
SELECT a.model, a.dataset, a.item_id, a.status, {conditions},
       a.temp_before_c, a.temp_after_c, a.throttled_before, a.throttled_after
FROM answers a {join}
ORDER BY a.id
"""
CONDITION_COLUMNS = ("span_s", "machine_cpu_s", "own_cpu_s", "cpus", "load1")


def conditions_frame(db_path: Path | str):
    """One row per answer: the machine around it (CPU of the machine and of the runner, load, SoC temperature,
    throttling); NaN where an answer has no reading (a skipped model, a run older than m004). Read-only."""
    import pandas as pd

    db = connect_readonly(db_path)
    try:
        if _table_exists(db, "answer_conditions"):
            sql = CONDITIONS_SQL.format(conditions=", ".join(f"c.{c}" for c in CONDITION_COLUMNS),
                                        join="LEFT JOIN answer_conditions c ON c.answer_id = a.id")
        else:
            sql = CONDITIONS_SQL.format(conditions=", ".join(f"NULL AS {c}" for c in CONDITION_COLUMNS), join="")
        return pd.read_sql_query(sql, db)
    finally:
        db.close()


def device_tables(db_path: Path | str):
    """A merged fleet DB's ``devices`` and ``device_calibration`` tables as frames; None for a DB without them
    (written before the devices migration). Read-only."""
    import pandas as pd

    db = connect_readonly(db_path)
    try:
        if not _table_exists(db, "devices"):
            return None
        return (pd.read_sql_query("SELECT * FROM devices ORDER BY device", db),
                pd.read_sql_query("SELECT * FROM device_calibration ORDER BY device, model", db))
    finally:
        db.close()


# -- bench merge: shard DBs copied into one ----------------------------------------------------------------------
# Column-generic (whatever columns this toolkit's schema has, shards written by the same toolkit have too) and exact:
# answers keep their stamps, energy windows, scores and traces byte for byte, so the merged folder holds the very
# numbers each device signed. Answer ids are offset per shard; every table keyed by ``answer_id`` follows, so tables
# other stages add come along without changes here.

MERGE_RUN_TABLES = {"runs", "run_events", "models", "idle_baselines", "answers", "devices", "device_calibration"}


def _columns(db: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA {schema}.table_info({table})")]


def _answer_tables(db: sqlite3.Connection) -> list[str]:
    names = [r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    return [t for t in names if t not in MERGE_RUN_TABLES and "answer_id" in _columns(db, t)]


def _run_tables(db: sqlite3.Connection) -> list[str]:
    """Tables other stages add for a run's own facts (keyed by run_id, or by nothing of ours, like scorer
    versions): one shard's rows stand for the merged run (every shard ran the same spec with the same toolkit)."""
    names = [r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    return [t for t in names if t not in MERGE_RUN_TABLES and not t.startswith(("_", "sqlite_"))
            and "answer_id" not in _columns(db, t)]


def copy_shard(db: sqlite3.Connection, run_id: str, src: Path, device: str, shard_name: str,
               blocks: list[tuple[str, str]]) -> int:
    """Copy the answers of ``blocks`` (and everything keyed by them) from the shard DB ``src``, every answer tagged
    with ``device``; returns answers copied."""
    db.execute("ATTACH DATABASE ? AS s", (str(src),))  # sealed (rollback journal): reading writes nothing
    try:
        with transaction(db):
            db.execute("CREATE TEMP TABLE keep (model TEXT, dataset TEXT)")
            db.executemany("INSERT INTO keep VALUES (?, ?)", blocks)
            offset = db.execute("SELECT coalesce(max(id), 0) FROM main.answers").fetchone()[0]
            cols = [c for c in _columns(db, "answers") if c in _columns(db, "answers", "s")
                    and c not in ("id", "run_id", "device")]
            chosen = "FROM s.answers WHERE (model, dataset) IN (SELECT model, dataset FROM keep)"
            cur = db.execute(f"INSERT INTO main.answers (id, run_id, device, {', '.join(cols)}) "
                             f"SELECT id + ?, ?, ?, {', '.join(cols)} {chosen}", (offset, run_id, device))
            copied = cur.rowcount
            for table in _answer_tables(db):
                tcols = [c for c in _columns(db, table) if c in _columns(db, table, "s") and c != "answer_id"]
                db.execute(f"INSERT INTO main.{table} (answer_id, {', '.join(tcols)}) SELECT answer_id + ?, "
                           f"{', '.join(tcols)} FROM s.{table} WHERE answer_id IN (SELECT id {chosen})", (offset,))
            _copy_run_facts(db, run_id, device, shard_name)
            db.execute("DROP TABLE temp.keep")
    finally:
        db.execute("DETACH DATABASE s")
    return copied


def _copy_run_facts(db: sqlite3.Connection, run_id: str, device: str, shard_name: str) -> None:
    # One row per model (the merge checked that every shard has the same digest for it).
    db.execute("INSERT OR IGNORE INTO main.models (run_id, model, digest, facts_json, prepared_utc) "
               "SELECT ?, model, digest, facts_json, prepared_utc FROM s.models", (run_id,))
    db.execute("INSERT INTO main.idle_baselines (run_id, source, start_ns, end_ns, mean_w, sd_w, n_samples, "
               "measured_utc) SELECT ?, source || ' on ' || ?, start_ns, end_ns, mean_w, sd_w, n_samples, "
               "measured_utc FROM s.idle_baselines ORDER BY id", (run_id, device))
    # Events verbatim (other stages parse their details back), after one saying whose they are.
    db.execute("INSERT INTO main.run_events (run_id, t_utc, kind, detail) VALUES (?, ?, 'shard', ?)",
               (run_id, utc_now(), json.dumps({"shard": shard_name, "device": device})))
    db.execute("INSERT INTO main.run_events (run_id, t_utc, kind, detail) SELECT ?, t_utc, kind, detail "
               "FROM s.run_events ORDER BY id", (run_id,))
    for table in _run_tables(db):
        cols = [c for c in _columns(db, table) if c in _columns(db, table, "s")]
        if db.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0] == 0:
            values = ", ".join("?" if c == "run_id" else c for c in cols)
            db.execute(f"INSERT INTO main.{table} ({', '.join(cols)}) SELECT {values} FROM s.{table}",
                       (run_id,) if "run_id" in cols else ())


def record_device(db: sqlite3.Connection, device: str, signer: str, facts: dict[str, Any]) -> None:
    with transaction(db):
        db.execute("INSERT INTO devices VALUES (?, ?, ?)", (device, signer, json.dumps(facts, sort_keys=True)))


def record_calibration(db: sqlite3.Connection, device: str, rows: list[dict[str, Any]]) -> None:
    with transaction(db):
        db.executemany("INSERT INTO device_calibration VALUES (:device, :model, :n_answers, :idle_w, :j_per_token, "
                       ":tokens_per_s)", [{**r, "device": device} for r in rows])


def answer_digest(db: sqlite3.Connection, device: str | None, blocks: list[tuple[str, str]] | None = None) -> str:
    """A hash of every answer's content (all columns but ids and device) and its energy windows and scores:
    equal for a shard's kept blocks and the same device's answers in the merged DB. ``db`` has the Row factory."""
    import hashlib

    cols = [c for c in _columns(db, "answers") if c not in ("id", "run_id", "device")]
    where, args = ("WHERE device = ?", [device]) if device is not None else ("", [])
    rows = db.execute(f"SELECT id, {', '.join(cols)} FROM answers {where} ORDER BY model, dataset, item_id",
                      args).fetchall()
    h = hashlib.sha256()
    keep = set(blocks) if blocks is not None else None
    for r in rows:
        if keep is not None and (r["model"], r["dataset"]) not in keep:
            continue
        h.update(json.dumps([r[c] for c in cols]).encode())
        for table in ("energy_windows", "scores"):
            tcols = [c for c in _columns(db, table) if c not in ("answer_id", "scored_utc")]
            for w in db.execute(f"SELECT {', '.join(tcols)} FROM {table} WHERE answer_id = ? "
                                f"ORDER BY {tcols[0]}", (r["id"],)):
                h.update(json.dumps(list(w)).encode())
    return h.hexdigest()


def traces(db: sqlite3.Connection, limit: int = 1) -> list[dict[str, Any]]:
    """Stored power traces with their answer's window stamps, for the report's trace plot."""
    rows = db.execute(
        "SELECT a.model, a.dataset, a.item_id, a.t_send_ns, a.t_first_token_ns, a.t_last_token_ns, t.samples_json "
        "FROM traces t JOIN answers a ON a.id = t.answer_id ORDER BY a.id LIMIT ?", (limit,)).fetchall()
    return [{**{k: r[k] for k in r.keys() if k != "samples_json"}, "samples": json.loads(r["samples_json"])}
            for r in rows]


FRAME_SQL = """
SELECT r.run_id, a.model, {identity}, a.dataset, a.item_id, a.status, a.reason,
       s.correct AS correct, ? AS score_mode, sp.correct AS correct_paper, ss.correct AS correct_strict,
       w.energy_j, w.energy_raw_j, a.idle_w, w.mean_w, w.coverage, w.n_samples,
       w.bound_j AS energy_bound_j, w.reason AS energy_reason,
       w.clock_bound_ns / 1e6 AS clock_bound_ms, w.clock_flag AS clock_flag,
       p.energy_j AS prefill_energy_j, p.energy_raw_j AS prefill_energy_raw_j, p.coverage AS prefill_coverage,
       p.n_samples AS prefill_n_samples, p.bound_j AS prefill_energy_bound_j, p.reason AS prefill_energy_reason,
       d.energy_j AS decode_energy_j, d.energy_raw_j AS decode_energy_raw_j, d.coverage AS decode_coverage,
       d.n_samples AS decode_n_samples, d.bound_j AS decode_energy_bound_j, d.reason AS decode_energy_reason,
       a.eval_count, a.prompt_eval_count, a.prompt_cached_tokens AS prompt_cached_tokens, a.num_ctx AS num_ctx,
       CASE WHEN a.prompt_eval_count IS NULL OR a.num_ctx IS NULL THEN NULL
            ELSE a.prompt_eval_count >= a.num_ctx END AS prompt_truncated,
       a.complete AS complete,
       a.total_duration_ns / 1e9 AS total_s, a.load_duration_ns / 1e9 AS load_s,
       a.prompt_eval_duration_ns / 1e9 AS prompt_eval_s, a.eval_duration_ns / 1e9 AS eval_s,
       (a.t_last_token_ns - a.t_send_ns) / 1e9 AS host_total_s,
       (a.t_first_token_ns - a.t_send_ns) / 1e9 AS ttft_s,
       (a.t_last_token_ns - a.t_first_token_ns) / 1e9 AS decode_s,
       a.t_send_ns, a.t_last_token_ns AS t_last_ns, a.device, {completion}
FROM answers a
JOIN runs r ON r.run_id = a.run_id
{identity_join}
LEFT JOIN scores s ON s.answer_id = a.id AND s.mode = ?
LEFT JOIN scores sp ON sp.answer_id = a.id AND sp.mode = 'paper'
LEFT JOIN scores ss ON ss.answer_id = a.id AND ss.mode = 'strict'{completion_join}
LEFT JOIN energy_windows w ON w.answer_id = a.id AND w.phase = 'answer'
LEFT JOIN energy_windows p ON p.answer_id = a.id AND p.phase = 'prefill'
LEFT JOIN energy_windows d ON d.answer_id = a.id AND d.phase = 'decode'
ORDER BY a.id
"""
FRAME_COLUMNS: tuple[str, ...] = (
    "run_id", "model", "base", "quant", "precision_group", "family", "parameter_size", "size_bytes", "dataset",
    "item_id", "status", "reason", "correct", "score_mode", "correct_paper", "correct_strict", "energy_j",
    "energy_raw_j", "idle_w", "mean_w", "coverage", "n_samples", "energy_bound_j", "energy_reason", "clock_bound_ms",
    "clock_flag", "prefill_energy_j", "prefill_energy_raw_j", "prefill_coverage", "prefill_n_samples",
    "prefill_energy_bound_j", "prefill_energy_reason", "decode_energy_j", "decode_energy_raw_j", "decode_coverage",
    "decode_n_samples", "decode_energy_bound_j", "decode_energy_reason", "eval_count", "prompt_eval_count",
    "prompt_cached_tokens", "num_ctx", "prompt_truncated", "complete", "total_s", "load_s", "prompt_eval_s", "eval_s",
    "host_total_s", "ttft_s", "decode_s", "t_send_ns", "t_last_ns", "device", "completion_energy_j",
    "completion_coverage",
)
"""The answers frame's columns, in order (``answers_frame`` gives exactly these; docs/internals.md lists them, and
the authors' and synthetic frames follow them)."""
IDENTITY_COLUMNS = ("base", "quant", "precision_group", "family", "parameter_size", "size_bytes")
"""The model facts the frame takes from the run's own snapshot (``run_models``), never from today's catalog."""


WINDOW_BOUND_COLUMNS = ("bound_j", "reason")
"""Energy-window columns added by m003; a DB sealed before it reads them as NULL."""
ANSWER_CONTEXT_COLUMNS = ("prompt_cached_tokens", "num_ctx", "complete")
"""Answer columns added by m005; a DB sealed before it reads them as NULL."""


def _frame_sql(db: sqlite3.Connection) -> str:
    """The frame query for this DB's schema: a run stored before a table or column existed gets NULL for it."""
    parts = {}
    if _table_exists(db, "run_models"):
        parts["identity"] = ", ".join(f"m.{c}" for c in IDENTITY_COLUMNS)
        parts["identity_join"] = "LEFT JOIN run_models m ON m.run_id = a.run_id AND m.model = a.model"
    else:
        log.warning("results DB predates the run-identity snapshot: models are identified by tag only")
        parts["identity"] = ", ".join(f"NULL AS {c}" for c in IDENTITY_COLUMNS)
        parts["identity_join"] = ""
    known = _table_exists(db, "completion_windows")
    parts["completion"] = ("cw.energy_j AS completion_energy_j, cw.coverage AS completion_coverage" if known
                           else "NULL AS completion_energy_j, NULL AS completion_coverage")
    parts["completion_join"] = "\nLEFT JOIN completion_windows cw ON cw.answer_id = a.id" if known else ""
    sql = FRAME_SQL.format(**parts)
    columns = set(_columns(db, "energy_windows"))
    if "bound_j" not in columns:
        log.warning("results DB predates energy-window bounds: its energies carry no error bound")
        for alias in "wpd":
            for col in WINDOW_BOUND_COLUMNS:
                sql = sql.replace(f" {alias}.{col} AS", " NULL AS")
    if "num_ctx" not in _columns(db, "answers"):
        for col in ANSWER_CONTEXT_COLUMNS:
            sql = sql.replace(f"a.{col}", "NULL")
    if "clock_bound_ns" not in columns:  # before m006: one clock, nothing converted
        sql = sql.replace(" w.clock_bound_ns / 1e6 AS", " NULL AS").replace(" w.clock_flag AS", " NULL AS")
    if "device" not in _columns(db, "answers"):
        sql = sql.replace(" a.device,", " NULL AS device,")  # sealed before m007: one machine, the manifest's
    return sql


def answers_frame(db_path: Path | str, mode: str = "paper"):
    """One row per answer with the columns ``FRAME_COLUMNS`` (the report's input); model facts come from the run's
    identity snapshot, so the frame of a stored run does not change when the catalog does."""
    import pandas as pd

    db = connect_readonly(db_path)
    try:
        frame = pd.read_sql_query(_frame_sql(db), db, params=(mode, mode))
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise ResultsError(f"{db_path}: cannot read its answers ({str(exc).rsplit(': ', 1)[-1][:120]})") from None
    finally:
        db.close()
    for col in ("correct", "correct_paper", "correct_strict"):
        frame[col] = frame[col].astype("float64")
    return frame
