"""Nightly reruns: one small signed run per night, kept in a history DB, judged against a chosen baseline.

Drift rule (stated, not tuned per night): the smoke subset asks the same items every night, so each metric is
compared on matched answers. For a per-answer metric the ratio of tonight's mean to the baseline's mean gets a
paired bootstrap 95% interval (2,000 resamples of the matched items, fixed seed); the metric has drifted when the
interval excludes 1 *and* the point ratio is off by more than the metric's tolerance. Accuracy is compared the same
way on the difference of proportions, against an absolute tolerance. Idle power (one value per night) is judged
by its relative change alone. So a single noisy answer cannot raise an alarm, and a tiny but consistent shift
below the tolerance does not either.

Exit codes: 0 within tolerance (or no baseline yet), 1 drift, 2 the run could not be made.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from bench import results
from bench.errors import BenchError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_DRIFT, EXIT_FAILED = 0, 1, 2
MIN_FREE_BYTES = 1 << 30  # a night's folder is small, but SQLite and the meter log need room to commit

# metric -> (frame column or derived, tolerance, kind). Relative tolerances for ratios, absolute for accuracy.
METRICS = {
    "accuracy": ("correct", 0.10, "absolute"),
    "energy_per_answer_j": ("energy_j", 0.05, "relative"),
    "j_per_token": ("j_per_token", 0.05, "relative"),
    "latency_s": ("total_s", 0.10, "relative"),
    "tokens_per_s": ("tokens_per_s", 0.10, "relative"),
}
IDLE_TOLERANCE = 0.05


class NightlyBusy(BenchError):
    exit_code = EXIT_FAILED


class NightlyFailed(BenchError):
    """The run itself could not be made (Ollama down, meter absent, disk full ...)."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Drift:
    metric: str
    baseline: float
    tonight: float
    change: float          # relative (ratio - 1) or absolute difference, per the metric's kind
    ci_low: float
    ci_high: float
    tolerance: float
    kind: str
    drifted: bool

    def describe(self) -> str:
        unit = "%" if self.kind == "relative" else " (abs)"
        scale = 100 if self.kind == "relative" else 1
        return (f"{self.metric} {self.baseline:.4g} -> {self.tonight:.4g} ({self.change * scale:+.2f}{unit}, "
                f"95% CI [{self.ci_low * scale:+.2f}, {self.ci_high * scale:+.2f}], tolerance "
                f"{self.tolerance * scale:.2f})")


@dataclass(frozen=True)
class NightOutcome:
    exit_code: int
    folder: Path | None
    summary: str
    drifts: list[Drift] = field(default_factory=list)


@contextmanager
def single_instance(lock_path: Path) -> Iterator[None]:
    """One nightly at a time: a second one fails at once instead of queueing behind the first."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise NightlyBusy(f"a nightly run is in progress (pid {holder}, lock {lock_path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# -- history DB -----------------------------------------------------------------------------------------------

def history_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        """
        CREATE TABLE IF NOT EXISTS nights (
            id INTEGER PRIMARY KEY, started_utc TEXT NOT NULL, folder TEXT NOT NULL, spec_sha256 TEXT,
            signature_sha256 TEXT, exit_code INTEGER NOT NULL, summary TEXT NOT NULL) STRICT;
        CREATE TABLE IF NOT EXISTS night_metrics (
            night_id INTEGER NOT NULL REFERENCES nights(id), metric TEXT NOT NULL, value REAL,
            n INTEGER NOT NULL, PRIMARY KEY (night_id, metric)) STRICT;
        CREATE TABLE IF NOT EXISTS baseline (
            id INTEGER PRIMARY KEY CHECK (id = 1), night_id INTEGER NOT NULL REFERENCES nights(id),
            folder TEXT NOT NULL, signature_sha256 TEXT NOT NULL, chosen_utc TEXT NOT NULL) STRICT;
        """
    )
    return db


def _sha256_file(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def set_baseline(history: Path, night: str = "latest") -> str:
    """Choose the baseline: a night id, or ``latest`` (the newest night that completed with a signed folder)."""
    db = history_connect(history)
    try:
        if night == "latest":
            row = db.execute("SELECT * FROM nights WHERE exit_code != 2 ORDER BY id DESC LIMIT 1").fetchone()
        else:
            row = db.execute("SELECT * FROM nights WHERE id = ?", (int(night),)).fetchone()
        if row is None:
            raise NightlyFailed(f"{history}: no completed night {night!r} to use as the baseline")
        folder = Path(row["folder"])
        sig = _sha256_file(folder / "SHA256SUMS.sig")
        if sig is None or sig != row["signature_sha256"]:
            raise NightlyFailed(f"{folder}: its signature is missing or changed since the night was recorded; "
                                f"verify it with `bench verify {folder}`")
        db.execute("INSERT OR REPLACE INTO baseline VALUES (1, ?, ?, ?, ?)",
                   (row["id"], str(folder), sig, datetime.now(timezone.utc).isoformat(timespec="seconds")))
        return f"baseline: night {row['id']} ({folder}), signature sha256 {sig[:12]}"
    finally:
        db.close()


# -- metrics and the drift rule -------------------------------------------------------------------------------

def per_answer_values(folder: Path):
    """Matched per-answer values keyed by (model, dataset, item), plus the night's idle power."""
    frame = results.answers_frame(folder / "results.db", "paper")
    ok = frame[frame["status"] == "ok"].copy()
    ok["j_per_token"] = ok["energy_j"] / ok["eval_count"].where(ok["eval_count"] > 0)
    ok["tokens_per_s"] = ok["eval_count"] / ok["eval_s"].where(ok["eval_s"] > 0)
    ok = ok.set_index(["model", "dataset", "item_id"])
    idle = ok["idle_w"].iloc[0] if len(ok) else float("nan")
    return ok, float(idle)


def paired_bootstrap(base: np.ndarray, new: np.ndarray, kind: str, *, resamples: int = 2000,
                     seed: int = 20250403) -> tuple[float, float, float]:
    """Point change and 95% interval of mean(new)/mean(base) - 1 (relative) or mean(new) - mean(base)."""
    def change(b: np.ndarray, n: np.ndarray) -> np.ndarray:
        mb, mn = b.mean(axis=-1), n.mean(axis=-1)
        if kind == "relative":
            with np.errstate(divide="ignore", invalid="ignore"):
                return mn / mb - 1.0
        return mn - mb

    point = float(change(base, new))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(resamples, len(base)))
    dist = change(base[idx], new[idx])
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.percentile(dist, [2.5, 97.5])
    return point, float(low), float(high)


def judge(baseline: Path, tonight: Path, tolerances: dict[str, float] | None = None) -> list[Drift]:
    tolerances = tolerances or {}
    base, base_idle = per_answer_values(baseline)
    new, new_idle = per_answer_values(tonight)
    common = base.index.intersection(new.index)
    if len(common) == 0:
        raise NightlyFailed(f"{tonight}: no answers in common with the baseline {baseline}; same spec?")
    drifts = []
    for metric, (column, default_tol, kind) in METRICS.items():
        tol = tolerances.get(metric, default_tol)
        pair = base.loc[common, column].to_frame("b").join(new.loc[common, column].to_frame("n")).dropna()
        if pair.empty:
            continue
        b, n = pair["b"].to_numpy(float), pair["n"].to_numpy(float)
        point, low, high = paired_bootstrap(b, n, kind)
        excludes_zero = (low > 0 or high < 0) if np.isfinite(low) else False
        drifted = bool(excludes_zero and abs(point) > tol)
        drifts.append(Drift(metric, float(b.mean()), float(n.mean()), point, low, high, tol, kind, drifted))
    tol = tolerances.get("idle_w", IDLE_TOLERANCE)
    change = new_idle / base_idle - 1.0 if base_idle else float("nan")
    drifts.append(Drift("idle_w", base_idle, new_idle, change, change, change, tol, "relative",
                        bool(np.isfinite(change) and abs(change) > tol)))
    return drifts


# -- one night ------------------------------------------------------------------------------------------------

def preflight(spec, out_root: Path) -> None:
    """Fail fast, with exit 2, on what would make the night's numbers meaningless or the run impossible."""
    free = shutil.disk_usage(out_root).free
    if free < MIN_FREE_BYTES:
        raise NightlyFailed(f"disk nearly full: {free / 2**20:.0f} MiB free under {out_root} (need 1 GiB)")
    if spec.meter.driver is None:
        from bench.meter.address import resolve
        from bench.meter.client import connect

        try:
            connect(resolve(spec.meter.socket)).close()
        except BenchError as exc:
            raise NightlyFailed(f"meter absent: {exc} (start it: systemctl start edge-llm-bench-meter)") from None
    if spec.backend.kind == "ollama":
        from bench.runner import backend_for

        try:
            backend_for(spec).describe()
        except BenchError as exc:
            raise NightlyFailed(f"Ollama unreachable: {exc}") from None


def nightly(spec, out_root: Path, *, tolerances: dict[str, float] | None = None, key_path: Path | None = None,
            progress: bool = False) -> NightOutcome:
    from bench.pipeline import pipeline

    out_root.mkdir(parents=True, exist_ok=True)
    history = out_root / "history.db"
    with single_instance(out_root / ".nightly.lock"):
        started = datetime.now(timezone.utc)
        folder = out_root / started.strftime("%Y%m%dT%H%M%SZ")
        try:
            preflight(spec, out_root)
            done = pipeline(spec, folder, progress=progress, key_path=key_path)
            if not done.sealed:
                raise NightlyFailed(f"{folder}: interrupted before it was sealed")
            errors = done.run.counts.get("error", 0)
            if errors and errors == sum(done.run.counts.values()):
                raise NightlyFailed(f"{folder}: every answer failed ({errors} errors); see the reasons in results.db")
        except BenchError as exc:
            message = str(exc) if isinstance(exc, NightlyFailed) else f"run failed: {exc}"
            _record_night(history, started, folder, spec, EXIT_FAILED, message, [])
            return NightOutcome(EXIT_FAILED, folder, message)
        db = history_connect(history)
        try:
            base = db.execute("SELECT * FROM baseline WHERE id = 1").fetchone()
        finally:
            db.close()
        if base is None:
            summary = f"{folder.name}: ok, no baseline yet (choose one: bench nightly baseline --set latest)"
            drifts: list[Drift] = []
            code = EXIT_OK
        else:
            drifts = judge(Path(base["folder"]), folder, tolerances)
            moved = [d for d in drifts if d.drifted]
            code = EXIT_DRIFT if moved else EXIT_OK
            summary = (f"{folder.name}: DRIFT vs night {base['night_id']}: " + "; ".join(d.describe() for d in moved)
                       if moved else f"{folder.name}: ok, within tolerance of night {base['night_id']}")
        _record_night(history, started, folder, spec, code, summary, drifts)
        write_trend_plot(history, out_root / "trend.png")
        return NightOutcome(code, folder, summary, drifts)


def _record_night(history: Path, started: datetime, folder: Path, spec, code: int, summary: str,
                  drifts: list[Drift]) -> None:
    db = history_connect(history)
    try:
        db.execute("BEGIN")
        cur = db.execute("INSERT INTO nights (started_utc, folder, spec_sha256, signature_sha256, exit_code, summary) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (started.isoformat(timespec="seconds"), str(folder), spec.sha256,
                          _sha256_file(folder / "SHA256SUMS.sig"), code, summary))
        if code != EXIT_FAILED:
            for metric, value, n in _night_metrics(folder):
                db.execute("INSERT INTO night_metrics VALUES (?, ?, ?, ?)", (cur.lastrowid, metric, value, n))
        db.execute("COMMIT")
    finally:
        db.close()
    log.info("night recorded: %s", json.dumps({"folder": str(folder), "exit": code}))


def _night_metrics(folder: Path) -> list[tuple[str, float, int]]:
    values, idle = per_answer_values(folder)
    rows = [(m, float(values[col].mean()), int(values[col].notna().sum())) for m, (col, _, _) in METRICS.items()]
    return rows + [("idle_w", idle, 1)]


def write_trend_plot(history: Path, out: Path) -> Path | None:
    """One panel per metric over the nights, the baseline night marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    db = history_connect(history)
    try:
        rows = db.execute("SELECT n.id, n.started_utc, m.metric, m.value FROM night_metrics m "
                          "JOIN nights n ON n.id = m.night_id ORDER BY n.id").fetchall()
        base = db.execute("SELECT night_id FROM baseline WHERE id = 1").fetchone()
    finally:
        db.close()
    if not rows:
        return None
    metrics = list(METRICS) + ["idle_w"]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8, 1.8 * len(metrics)), sharex=True)
    for ax, metric in zip(axes, metrics):
        pts = [(r["id"], r["value"]) for r in rows if r["metric"] == metric]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        if base is not None:
            ax.axvline(base["night_id"], color="grey", linestyle="--", linewidth=1)
        ax.set_ylabel(metric, fontsize=8)
    axes[-1].set_xlabel("night (dashed: baseline)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
