"""Turn whatever stopped a night into one line that names the cause a cron user can act on.

A full disk shows up in many disguises (``OSError(ENOSPC)``, SQLite's "database or disk is full", a meter daemon
that died writing its log, a report that could not be written), so after any failure the output disk is looked
at too: nearly no free space there means the night failed because the disk filled.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from bench.errors import BenchError

FULL_BELOW_BYTES = 1 << 20  # under 1 MiB free after a failure: the disk filling is the cause
MAX_REASON = 1200  # a drift line names every metric that moved; cron logs keep it whole


def one_line(text: str) -> str:
    """Collapse whitespace (a multi-line message would break a cron log's one-line contract) and bound the length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 3] + "..."


def free_bytes(path: Path) -> int | None:
    """Free space of the filesystem holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def reason_for(exc: BaseException, out: Path) -> str:
    """The one-line reason for a night that ``exc`` stopped, ``out`` being where its folder was written."""
    free = free_bytes(out)
    base = _describe(exc)
    if free is not None and free < FULL_BELOW_BYTES:
        return one_line(f"disk full under {out} ({free // 1024} KiB free): {base.removeprefix('disk full: ')}")
    return one_line(base)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full: {where}{exc.strerror}"
        if exc.errno == errno.EROFS:
            return f"disk read-only: {where}{exc.strerror}"
        return f"I/O error: {where}{exc.strerror or exc}"
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "disk is full" in text:
            return f"disk full: SQLite: {text}"
        if "readonly" in text or "read-only" in text:
            return f"disk read-only: SQLite: {text}"
        return f"database error: {type(exc).__name__}: {text}"
    if isinstance(exc, BenchError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"
