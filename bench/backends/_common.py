"""Small helpers the backends share: the RAM-fit precheck, the file digest, digest comparison and verdicts."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from bench.backends.base import ModelCheck, ModelSkipped
from bench.catalog import ModelEntry
from bench.errors import DigestMismatch

log = logging.getLogger(__name__)

MiB = 1024**2

# Runtime memory beyond the weights (KV cache at the paper's 2048-token context, compute buffers, the server
# process). The paper's gemma2 q4_0 (1554 MB) did not run on the 4 GB Pi while 1479 MB files did, so file size
# alone is not the limit; this margin is a configurable estimate, not a measurement.
DEFAULT_RAM_OVERHEAD_BYTES = 512 * MiB


def mem_available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of this host (Linux), or None where it cannot be read."""
    try:
        with open(meminfo, encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def ram_fit(model: ModelEntry, available: int | None, overhead_bytes: int) -> dict:
    """Raise ModelSkipped when ``size + overhead`` exceeds ``available``; return the facts of the check."""
    needed = model.size_bytes + overhead_bytes
    facts = {"ram_needed_bytes": needed, "ram_available_bytes": available}
    if available is None:
        facts["ram_check"] = "unknown: MemAvailable not readable"
        return facts
    if needed > available:
        raise ModelSkipped(
            f"{model.tag}: skipped: needs more RAM ({needed / MiB:.0f} MiB incl. {overhead_bytes / MiB:.0f} MiB "
            f"overhead, {available / MiB:.0f} MiB available)",
            needed_bytes=needed,
            available_bytes=available,
        )
    facts["ram_check"] = "fits"
    return facts


def normalize_digest(digest: str | None) -> str | None:
    """Ollama writes digests as bare hex in /api/tags and as ``sha256:<hex>`` elsewhere; compare bare hex."""
    if digest is None:
        return None
    digest = digest.strip().lower()
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def check_digest(model: ModelEntry, got: str | None, where: str, allow_override: bool) -> dict:
    """Refuse (DigestMismatch, one line naming both digests) unless the override is on; return facts."""
    got_n = normalize_digest(got)
    want = normalize_digest(model.digest)
    facts = {"digest": got_n, "catalog_digest": want, "digest_ok": got_n == want, "digest_override": False}
    if got_n != want:
        if not allow_override:
            raise DigestMismatch(
                f"{model.tag}: digest {got_n} at {where} differs from the catalog's {want}; refusing to run "
                "(allow_digest_override=True runs it anyway and records the override)"
            )
        log.warning("%s: digest %s differs from catalog %s; running anyway (override)", model.tag, got_n, want)
        facts["digest_override"] = True
    return facts


def verdict(model: ModelEntry, got: str | None, where: str, allow_override: bool, note: str = "") -> ModelCheck:
    """``missing`` (nothing there), ``ok``, or ``mismatch`` (``override`` when the spec allows running it anyway)."""
    want = normalize_digest(model.digest) or ""
    got = normalize_digest(got)
    if got is None:
        return ModelCheck(model.tag, "missing", None, want, where, note)
    status = "ok" if got == want else ("override" if allow_override else "mismatch")
    return ModelCheck(model.tag, status, got, want, where, note)


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, cached per (path, size, mtime) so a session hashes the 98 MB demo GGUF once."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest
