"""Provenance of a result folder: manifest (in-toto Statement), SHA256SUMS, and an SSHSIG Ed25519 signature.

``seal`` is the one call the runner makes at the end of a run; ``verify`` is what reviewers run offline. The order
matters: allowed_signers and manifest.json are written first so SHA256SUMS covers them, and the signature covers
SHA256SUMS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bench.errors import ProvenanceError
from bench.provenance import checksums, manifest, signing
from bench.provenance.checksums import MANIFEST_NAME, SIG_NAME, SIGNERS_NAME, SUMS_NAME
from bench.provenance.verify import Problem, VerifyReport, verify

log = logging.getLogger(__name__)

__all__ = ["SealResult", "seal", "verify", "VerifyReport", "Problem"]

_PRIVATE_KEY_MARKERS = (b"-----BEGIN OPENSSH PRIVATE KEY-----", b"-----BEGIN PRIVATE KEY-----")


@dataclass(frozen=True)
class SealResult:
    """What sealing produced: how many files SHA256SUMS lists and which key signed them."""

    result_dir: Path
    files: int
    identity: str
    fingerprint: str
    key_path: Path


def seal(
    result_dir: Path,
    facts: Mapping[str, Any] | None = None,
    key_path: Path | None = None,
    *,
    host: Mapping[str, Any] | None = None,
) -> SealResult:
    """Write allowed_signers, manifest.json, SHA256SUMS and SHA256SUMS.sig into ``result_dir``.

    ``facts=None`` re-seals: the predicate of an existing manifest.json is kept (so the host facts stay those of
    the machine that measured), or, with no manifest, only host facts are recorded. The key (default
    ``$BENCH_SIGNING_KEY`` or ``~/.config/edge-llm-bench/signing_key``) is created on first use and must live
    outside the folder.
    """
    root = Path(result_dir)
    if not root.is_dir():
        raise ProvenanceError(f"{root}: not a directory")
    key_file = Path(key_path) if key_path is not None else signing.default_key_path()
    signing.refuse_inside(key_file, root)
    # Check the folder before creating a key or writing anything, so a refusal leaves no trace.
    _refuse_private_keys(root, checksums.list_files(root))
    if facts is None:
        facts = _previous_predicate(root)
    key = signing.load_or_create_key(key_file)

    checksums._atomic_write(root / SIGNERS_NAME, key.signers_line().encode("utf-8"))
    signer = {
        "identity": key.identity,
        "fingerprint": key.fingerprint,
        "public_key": signing.openssh_public(key.public_key),
        "namespace": signing.NAMESPACE,
        "format": "SSHSIG (OpenSSH ssh-keygen -Y), Ed25519, sha512",
    }
    manifest.write_manifest(root, {**facts, "signer": signer}, host)
    sums = checksums.write_sums(root)
    checksums._atomic_write(root / SIG_NAME, signing.sign(key.private_key, sums).encode("ascii"))
    count = sums.count(b"\n")
    log.info("sealed %s: %d files signed by %s (%s)", root, count, key.identity, key.fingerprint)
    return SealResult(root, count, key.identity, key.fingerprint, key.path)


def _previous_predicate(root: Path) -> dict[str, Any]:
    if not (root / MANIFEST_NAME).exists():
        return {}
    predicate = dict(manifest.read_manifest(root)["predicate"])
    predicate.pop("manifest_version", None)
    return predicate


def _refuse_private_keys(root: Path, files: list[str]) -> None:
    """A private key must never be published with results, wherever it came from."""
    for rel in files:
        if rel in (SUMS_NAME, SIG_NAME):
            continue
        with open(root / rel, "rb") as fh:
            head = fh.read(64)
        if any(head.lstrip().startswith(m) for m in _PRIVATE_KEY_MARKERS):
            raise ProvenanceError(f"{rel}: looks like a private key; refusing to seal it into the result folder")
