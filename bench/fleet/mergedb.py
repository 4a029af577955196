"""Rows of verified shard DBs copied into one results DB, every answer tagged with the device that ran it.

The copy is column-generic (whatever columns this toolkit's schema has, shards written by the same toolkit have
too) and exact: answers keep their stamps, energy windows, scores and traces byte for byte, so the merged folder
holds the very numbers each device signed. Answer ids are offset per shard; every table keyed by ``answer_id``
follows, so tables other stages add come along without changes here.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bench import results
from bench.fleet.shardfolder import ShardFolder

RUN_TABLES = {"runs", "run_events", "models", "idle_baselines", "answers", "devices", "device_calibration"}


def _columns(db: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA {schema}.table_info({table})")]


def _answer_tables(db: sqlite3.Connection) -> list[str]:
    names = [r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    return [t for t in names if t not in RUN_TABLES and "answer_id" in _columns(db, t)]


def _run_tables(db: sqlite3.Connection) -> list[str]:
    """Tables other stages add for a run's own facts (keyed by run_id, or by nothing of ours, like scorer
    versions): one shard's rows stand for the merged run (every shard ran the same spec with the same toolkit)."""
    names = [r[0] for r in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    return [t for t in names if t not in RUN_TABLES and not t.startswith(("_", "sqlite_"))
            and "answer_id" not in _columns(db, t)]


def copy_shard(db: sqlite3.Connection, run_id: str, shard: ShardFolder, blocks: list[tuple[str, str]]) -> int:
    """Copy the answers of ``blocks`` (and everything keyed by them) from one shard; returns answers copied."""
    src = shard.path / "results.db"
    device = shard.shard.host
    db.execute("ATTACH DATABASE ? AS s", (str(src),))  # sealed (rollback journal): reading writes nothing
    try:
        with results.transaction(db):
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
            _copy_run_facts(db, run_id, shard)
            db.execute("DROP TABLE temp.keep")
    finally:
        db.execute("DETACH DATABASE s")
    return copied


def _copy_run_facts(db: sqlite3.Connection, run_id: str, shard: ShardFolder) -> None:
    device = shard.shard.host
    # One row per model (the merge checked that every shard has the same digest for it).
    db.execute("INSERT OR IGNORE INTO main.models (run_id, model, digest, facts_json, prepared_utc) "
               "SELECT ?, model, digest, facts_json, prepared_utc FROM s.models", (run_id,))
    db.execute("INSERT INTO main.idle_baselines (run_id, source, start_ns, end_ns, mean_w, sd_w, n_samples, "
               "measured_utc) SELECT ?, source || ' on ' || ?, start_ns, end_ns, mean_w, sd_w, n_samples, "
               "measured_utc FROM s.idle_baselines ORDER BY id", (run_id, device))
    # Events verbatim (other stages parse their details back), after one saying whose they are.
    db.execute("INSERT INTO main.run_events (run_id, t_utc, kind, detail) VALUES (?, ?, 'shard', ?)",
               (run_id, results.utc_now(), json.dumps({"shard": shard.shard.name, "device": device})))
    db.execute("INSERT INTO main.run_events (run_id, t_utc, kind, detail) SELECT ?, t_utc, kind, detail "
               "FROM s.run_events ORDER BY id", (run_id,))
    for table in _run_tables(db):
        cols = [c for c in _columns(db, table) if c in _columns(db, table, "s")]
        if db.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0] == 0:
            values = ", ".join("?" if c == "run_id" else c for c in cols)
            db.execute(f"INSERT INTO main.{table} ({', '.join(cols)}) SELECT {values} FROM s.{table}",
                       (run_id,) if "run_id" in cols else ())


def record_device(db: sqlite3.Connection, device: str, signer: str, facts: dict[str, Any]) -> None:
    with results.transaction(db):
        db.execute("INSERT INTO devices VALUES (?, ?, ?)", (device, signer, json.dumps(facts, sort_keys=True)))


def record_calibration(db: sqlite3.Connection, device: str, rows: list[dict[str, Any]]) -> None:
    with results.transaction(db):
        db.executemany("INSERT INTO device_calibration VALUES (:device, :model, :n_answers, :idle_w, :j_per_token, "
                       ":tokens_per_s)", [{**r, "device": device} for r in rows])


def answer_digest(db_path: Path, device: str | None, blocks: list[tuple[str, str]] | None = None) -> str:
    """A hash of every answer's content (all columns but ids and device) and its energy windows and scores:
    equal for a shard's kept blocks and the same device's answers in the merged DB."""
    import hashlib

    from bench.fleet.shardfolder import read_only

    db = read_only(db_path)
    try:
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
    finally:
        db.close()
