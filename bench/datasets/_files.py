"""Read upstream-format data files through the HF `datasets` library, with one-line errors for corrupt files.

`datasets` reports a bad JSON line as a pyarrow error without a line number, so on failure the file is re-read
line by line to name the first bad line. Imports of `datasets` stay inside functions so the CLI starts fast.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from bench.errors import DatasetError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


def _format(path: Path) -> str:
    return "parquet" if path.name.endswith(".parquet") else "json"


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _diagnose(path: Path, field: str | None, exc: Exception) -> str:
    """Find the first bad line (JSON Lines) or the parse position (JSON) to name in the error."""
    if _format(path) == "parquet":
        return f"{path}: not a readable parquet file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as err:
        return f"{path}: not UTF-8 text (byte {err.start})"
    except OSError as err:
        return f"{path}: cannot read ({err.strerror or err})"
    if field is not None or path.name.endswith((".json", ".json.gz")) and text.lstrip()[:1] in ("{", "["):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            if field is None and "\n" in text.strip():
                pass  # maybe JSON Lines in a .json file: fall through to the line scan
            else:
                return f"{path}: line {err.lineno}: bad JSON ({err.msg})"
        else:
            if field is not None and (not isinstance(doc, dict) or not isinstance(doc.get(field), list)):
                return f"{path}: expected a JSON object with a list under {field!r}"
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return f"{path}: line {lineno}: bad JSON ({err.msg})"
        if not isinstance(value, dict):
            return f"{path}: line {lineno}: expected a JSON object, got {type(value).__name__}"
    first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return f"{path}: unreadable ({first})"


def read_records(path: Path, field: str | None = None) -> list[dict[str, Any]]:
    """All records of one file as plain dicts, in file order."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    import datasets  # lazy: 1-2 s import

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its ERROR lines would precede our one-line message
    kwargs: dict[str, Any] = {"data_files": str(path), "split": "train"}
    if field is not None:
        kwargs["field"] = field
    try:
        records = datasets.load_dataset(_format(path), **kwargs).to_list()
    except Exception as exc:  # datasets/pyarrow raise many types; all mean "this file is unreadable"
        raise DatasetError(_diagnose(path, field, exc)) from None
    log.debug("read %d records from %s", len(records), path)
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Canonical JSON Lines (sorted keys, UTF-8), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    tmp.replace(path)
