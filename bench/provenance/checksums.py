"""`SHA256SUMS` for a result folder, in the exact format `sha256sum -c` accepts.

Reviewers can check a folder with coreutils alone, so the file is plain ``<64 hex>  <relative path>`` lines, sorted
by path (UTF-8 byte order), covering every regular file except the checksum file and its signature. Names that
`sha256sum` would escape or mis-split (newline, carriage return, backslash, other control characters) are refused,
as are symlinks and special files: their content could change without the folder's bytes changing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ProvenanceError

log = logging.getLogger(__name__)

SUMS_NAME = "SHA256SUMS"
SIG_NAME = "SHA256SUMS.sig"
MANIFEST_NAME = "manifest.json"
SIGNERS_NAME = "allowed_signers"
# Never listed in SHA256SUMS: the file cannot contain its own hash, and the signature is made after it.
UNSUMMED = frozenset({SUMS_NAME, SIG_NAME})

_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_CHUNK = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SumEntry:
    """One line of SHA256SUMS: the file's relative POSIX path and its sha256 in lowercase hex."""

    path: str
    sha256: str


def sha256_file(path: Path) -> str:
    """Stream a file through sha256 (result databases can be large; never read them whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def name_problem(rel: str) -> str | None:
    """Why a relative path cannot go into SHA256SUMS unescaped, or None if it can."""
    if "\n" in rel or "\r" in rel:
        return "file name contains a newline or carriage return, which sha256sum cannot list"
    if "\\" in rel:
        return "file name contains a backslash, which sha256sum would escape"
    if _CONTROL.search(rel):
        return "file name contains a control character"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    return None


def walk(result_dir: Path, exclude: frozenset[str] = UNSUMMED) -> tuple[list[str], list[tuple[str, str]]]:
    """Every regular file under ``result_dir`` as sorted relative POSIX paths, plus (path, problem) pairs for
    entries that cannot be checksummed. Top-level names in ``exclude`` are skipped."""
    root = os.fspath(result_dir)
    if not os.path.isdir(root):
        raise ProvenanceError(f"{root}: not a directory")
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        prefix = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                problems.append((_shown(prefix + name), "symlink (not allowed in a result folder)"))
        for name in filenames:
            rel = prefix + name
            if rel in exclude:
                continue
            why = name_problem(rel)
            if why is None:
                mode = os.lstat(os.path.join(dirpath, name)).st_mode
                if stat.S_ISLNK(mode):
                    why = "symlink (not allowed in a result folder)"
                elif not stat.S_ISREG(mode):
                    why = "not a regular file"
            if why:
                problems.append((_shown(rel), why))
            else:
                files.append(rel)
    files.sort(key=lambda p: p.encode("utf-8"))
    problems.sort()
    return files, problems


def list_files(result_dir: Path, exclude: frozenset[str] = UNSUMMED) -> list[str]:
    """Like :func:`walk`, but the first unlistable entry raises (sealing must not silently skip a file)."""
    files, problems = walk(result_dir, exclude)
    if problems:
        path, why = problems[0]
        raise ProvenanceError(f"{path}: {why}")
    return files


def compute(result_dir: Path, exclude: frozenset[str] = UNSUMMED) -> list[SumEntry]:
    """Hash every listable file of the folder, in SHA256SUMS order."""
    root = Path(result_dir)
    return [SumEntry(rel, sha256_file(root / rel)) for rel in list_files(root, exclude)]


def render(entries: list[SumEntry]) -> bytes:
    """The SHA256SUMS bytes: one ``<hex>  <path>`` line per entry, LF line ends (what sha256sum writes)."""
    lines = []
    for e in entries:
        why = name_problem(e.path)
        if why:
            raise ProvenanceError(f"{_shown(e.path)}: {why}")
        lines.append(f"{e.sha256}  {e.path}\n")
    return "".join(lines).encode("utf-8")


def write_sums(result_dir: Path) -> bytes:
    """Compute and write ``SHA256SUMS``; returns the bytes written, which the signature covers."""
    root = Path(result_dir)
    data = render(compute(root))
    _atomic_write(root / SUMS_NAME, data)
    log.info("wrote %s (%d files)", root / SUMS_NAME, data.count(b"\n"))
    return data


def parse(data: bytes) -> tuple[list[SumEntry], list[tuple[str, str]]]:
    """Strictly parse SHA256SUMS bytes: entries, and (where, problem) pairs for malformed or unsafe lines."""
    entries: list[SumEntry] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [(SUMS_NAME, "not valid UTF-8")]
    if text and not text.endswith("\n"):
        problems.append((SUMS_NAME, "last line has no newline"))
    # Split on LF only: str.splitlines() also splits on VT, FF, NEL..., which sha256sum does not.
    lines = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")
    for n, line in enumerate(lines, start=1):
        m = _LINE.fullmatch(line)
        if not m:
            problems.append((f"{SUMS_NAME} line {n}", "not '<64 hex>  <path>'"))
            continue
        digest, rel = m.groups()
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            problems.append((f"{SUMS_NAME} line {n}", f"path {rel!r} is not a plain relative path"))
            continue
        why = name_problem(rel)
        if why:
            problems.append((f"{SUMS_NAME} line {n}", why))
            continue
        if rel in seen:
            problems.append((f"{SUMS_NAME} line {n}", f"{rel} listed twice"))
            continue
        seen.add(rel)
        entries.append(SumEntry(rel, digest))
    return entries, problems


def _shown(rel: str) -> str:
    """A path safe to print on one line (newlines and control characters escaped)."""
    return rel.encode("unicode_escape", errors="backslashreplace").decode("ascii") if name_problem(rel) else rel


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary sibling and rename, so a crash never leaves a half-written provenance file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
