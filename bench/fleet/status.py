"""Progress of a fleet: a one-shot probe on each host, and the controller's table (done, ETA, last error).

The probe is the only toolkit process that runs on a Pi while it measures, once per `bench fleet status`: it reads
the shard DBs read-only (WAL readers never block the writer) and exits. The controller turns the probes into
answers done of planned, an ETA (the plan's predicted seconds for what is left, scaled by how fast the host has
really been so far) and the last error, per host.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import results
from bench.fleet.planfile import entries, read_plan

STATUS_DIR = "status"


def _runner_state(host_dir: Path) -> dict[str, Any]:
    rc_file, pid_file = host_dir / "runner.rc", host_dir / "runner.pid"
    if rc_file.is_file():
        rc = int(rc_file.read_text().strip() or -1)
        return {"state": "finished" if rc == 0 else "failed", "rc": rc}
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip() or 0)
        alive = pid > 0 and Path(f"/proc/{pid}").exists()
        return {"state": "running" if alive else "stopped (killed or rebooted; rerun the playbook)", "pid": pid}
    return {"state": "not started"}


def _last_log_error(log: Path) -> str | None:
    if not log.is_file():
        return None
    with open(log, "rb") as fh:
        fh.seek(max(0, os.path.getsize(log) - 65536))
        lines = fh.read().decode("utf-8", "replace").splitlines()
    errors = [ln for ln in lines if "error" in ln.lower() or "Traceback" in ln]
    return errors[-1].strip()[:300] if errors else None


def _shard(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"name": folder.name, "answers": 0, "blocks": [], "sealed": (folder / "SHA256SUMS.sig").is_file()}
    db_path = folder / "results.db"
    if not db_path.is_file():
        return out
    db = results.connect_readonly(db_path)
    try:
        blocks = results.block_progress(db)
        err = results.last_failure(db)
    except sqlite3.Error as exc:
        return {**out, "error": f"results.db unreadable: {exc}"}
    finally:
        db.close()
    out["blocks"] = [{"model": b.model, "dataset": b.dataset, "answers": b.answers} for b in blocks]
    out["answers"] = sum(b.answers for b in blocks)
    if blocks:
        out["first_utc"], out["last_utc"] = min(b.first_utc for b in blocks), max(b.last_utc for b in blocks)
    if err:
        out["last_error"] = f"{err[2]} {err[0]}: {err[1]}"
    return out


def probe(host_dir: Path) -> dict[str, Any]:
    """What one host's fleet folder says now (runs on the host)."""
    host_dir = Path(host_dir)
    shards_dir = host_dir / "shards"
    folders = sorted(p for p in shards_dir.iterdir() if p.is_dir()) if shards_dir.is_dir() else []
    return {"probed_utc": results.utc_now(), "runner": _runner_state(host_dir),
            "log_error": _last_log_error(host_dir / "runner.log"), "shards": [_shard(f) for f in folders]}


@dataclass(frozen=True)
class HostStatus:
    host: str
    state: str
    done: int
    planned: int
    eta_h: float | None
    last_error: str | None
    probed_utc: str | None


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def host_statuses(fleet_dir: Path, refreshed_utc: str | None = None) -> list[HostStatus]:
    """Plan + the hosts' last probes (``status/<host>.json``) -> one row per host. A probe older than
    ``refreshed_utc`` (when this refresh began) means the host did not answer it."""
    doc = read_plan(fleet_dir)
    out = []
    for host in [h["host"] for h in doc["hosts"]]:
        mine = [e for e in entries(doc) if e.host == host]
        path = Path(fleet_dir) / STATUS_DIR / f"{host}.json"
        report = json.loads(path.read_text("utf-8")) if path.is_file() else None
        probed = {s["name"]: s for s in (report or {}).get("shards", [])}
        planned = sum(e.answers for e in mine if e.role == "work")
        done = sum(min(probed.get(e.name, {}).get("answers", 0), e.answers) for e in mine if e.role == "work")
        predicted_done = predicted_left = 0.0
        elapsed = 0.0
        for e in mine:
            have = {(b["model"], b["dataset"]): b["answers"] for b in probed.get(e.name, {}).get("blocks", [])}
            for b in e.blocks:
                frac = min(have.get((b["model"], b["dataset"]), 0) / b["answers"], 1.0) if b["answers"] else 1.0
                predicted_done += frac * b["seconds"]
                predicted_left += (1 - frac) * b["seconds"]
            s = probed.get(e.name, {})
            if s.get("first_utc") and s.get("last_utc"):
                elapsed += (_utc(s["last_utc"]) - _utc(s["first_utc"])).total_seconds()
        pace = elapsed / predicted_done if predicted_done > 0 and elapsed > 0 else 1.0
        state = report["runner"]["state"] if report else "no report yet"
        if report and refreshed_utc and _utc(report["probed_utc"]) < _utc(refreshed_utc):
            state = f"did not answer the probe; last seen {state}"
        errors = [s.get("last_error") for s in probed.values() if s.get("last_error")]
        last_error = (report or {}).get("log_error") or (errors[-1] if errors else None)
        eta = None if state.startswith(("finished", "failed")) else predicted_left * pace / 3600
        out.append(HostStatus(host, state, done, planned, eta, last_error, (report or {}).get("probed_utc")))
    return out
