"""`manifest.json`: an in-toto Statement v1 whose subjects are the folder's files and whose predicate is the run.

The runner's facts are merged as given (a plain dict merge; unknown keys pass through), with the host facts added
under ``host`` unless the caller already supplied them. The manifest is itself listed in SHA256SUMS, so the signature
covers it; it cannot list itself, nor SHA256SUMS and its signature, which are written after it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any, Mapping

from bench.errors import ProvenanceError
from bench.provenance import checksums
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SUMS_NAME

log = logging.getLogger(__name__)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "urn:edge-llm-bench:provenance:run:v1"  # a URI of ours; no domain implied
MANIFEST_VERSION = 1
NOT_SUBJECTS = frozenset({MANIFEST_NAME, SUMS_NAME, SIG_NAME})


def build_manifest(result_dir: Path, facts: Mapping[str, Any], host: Mapping[str, Any] | None = None) -> dict:
    """The Statement for ``result_dir`` as it is now. ``host`` defaults to a fresh :func:`capture_host`; a ``host``
    key in ``facts`` wins (re-signing keeps the facts of the machine that measured)."""
    if not isinstance(facts, Mapping):
        raise ProvenanceError(f"facts must be a mapping, got {type(facts).__name__}")
    subjects = [
        {"name": e.path, "digest": {"sha256": e.sha256}} for e in checksums.compute(result_dir, NOT_SUBJECTS)
    ]
    predicate: dict[str, Any] = {"manifest_version": MANIFEST_VERSION}
    if "host" not in facts:
        if host is None:
            from bench.provenance.host import capture_host

            host = capture_host()
        predicate["host"] = host
    predicate.update(facts)
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": jsonable(predicate, "predicate"),
    }


def render_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Stable bytes: sorted keys, 2-space indent, UTF-8, final newline (diffs between runs stay readable)."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_manifest(result_dir: Path, facts: Mapping[str, Any], host: Mapping[str, Any] | None = None) -> dict:
    """Build and write ``manifest.json``; returns the manifest."""
    manifest = build_manifest(result_dir, facts, host)
    checksums._atomic_write(Path(result_dir) / MANIFEST_NAME, render_manifest(manifest))
    log.info("wrote %s (%d subjects)", Path(result_dir) / MANIFEST_NAME, len(manifest["subject"]))
    return manifest


def read_manifest(result_dir: Path) -> dict:
    """Parse ``manifest.json``; ProvenanceError if absent or not a Statement."""
    path = Path(result_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProvenanceError(f"{MANIFEST_NAME}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvenanceError(f"{MANIFEST_NAME}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        raise ProvenanceError(f"{MANIFEST_NAME}: not an in-toto Statement v1 (_type {STATEMENT_TYPE})")
    if data.get("predicateType") != PREDICATE_TYPE:
        raise ProvenanceError(f"{MANIFEST_NAME}: predicateType is {data.get('predicateType')!r}, "
                              f"expected {PREDICATE_TYPE}")
    if not isinstance(data.get("subject"), list) or not isinstance(data.get("predicate"), dict):
        raise ProvenanceError(f"{MANIFEST_NAME}: subject must be a list and predicate an object")
    return data


def subject_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{name: sha256}`` from the subjects; ProvenanceError naming a malformed or duplicated subject."""
    out: dict[str, str] = {}
    for i, s in enumerate(manifest["subject"]):
        name = s.get("name") if isinstance(s, dict) else None
        digests = s.get("digest") if isinstance(s, dict) else None
        digest = digests.get("sha256") if isinstance(digests, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str):
            raise ProvenanceError(f"{MANIFEST_NAME}: subject #{i} has no name or sha256 digest")
        if name in out:
            raise ProvenanceError(f"{MANIFEST_NAME}: subject {name} listed twice")
        out[name] = digest
    return out


def jsonable(value: Any, where: str) -> Any:
    """A JSON-ready copy of ``value``. Paths and dates become strings, dataclasses dicts, numpy scalars Python
    numbers; NaN/inf become null (JSON has no NaN). Anything else raises ProvenanceError naming the key."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            log.warning("%s is %s; recorded as null", where, f)
            return None
        return f
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProvenanceError(f"{where}: key {k!r} is not a string")
            out[k] = jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), where)
    raise ProvenanceError(f"{where}: {type(value).__name__} cannot go into the manifest")
