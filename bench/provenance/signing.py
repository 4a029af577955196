"""Ed25519 signatures in OpenSSH's SSHSIG format, so a reviewer needs nothing but `ssh-keygen -Y verify`.

Encoding follows OpenSSH's PROTOCOL.sshsig: the blob is ``"SSHSIG" uint32(1) string(publickey) string(namespace)
string(reserved) string(hash_alg) string(signature)``; what Ed25519 signs is ``"SSHSIG" string(namespace)
string(reserved) string(hash_alg) string(H(message))``; the armor is base64 wrapped at 70 columns between
``-----BEGIN SSH SIGNATURE-----`` and ``-----END SSH SIGNATURE-----``. Ed25519 is deterministic, so our output is
byte-identical to ssh-keygen's for the same key, namespace and message.

Keys live outside result folders (default ``~/.config/edge-llm-bench/signing_key``, or ``$BENCH_SIGNING_KEY``), in
OpenSSH private key format, mode 0600. Next to the key we keep ``<key>.pub`` and ``<key>.allowed_signers``.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import logging
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bench.errors import ProvenanceError

log = logging.getLogger(__name__)

NAMESPACE = "edge-llm-bench@1"
DEFAULT_IDENTITY = "edge-llm-bench"
KEY_ENV = "BENCH_SIGNING_KEY"
KEY_TYPE = "ssh-ed25519"

_MAGIC = b"SSHSIG"
_VERSION = 1
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
_WRAP = 70
_HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
_PRINCIPAL = re.compile(r"[A-Za-z0-9._@+-]+")


# --- SSH wire encoding -------------------------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    """Reads SSH wire ``string`` and ``uint32`` fields, refusing truncation (a flipped length byte must fail)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProvenanceError("signature blob is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string(self) -> bytes:
        return self.take(self.uint32())

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProvenanceError("signature blob has trailing bytes")


def public_blob(key: Ed25519PublicKey) -> bytes:
    """The SSH wire form of an Ed25519 public key: ``string("ssh-ed25519") string(32 raw bytes)``."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _string(KEY_TYPE.encode()) + _string(raw)


def _public_from_blob(blob: bytes) -> Ed25519PublicKey:
    r = _Reader(blob)
    ktype = r.string()
    if ktype != KEY_TYPE.encode():
        raise ProvenanceError(f"key type {ktype.decode(errors='replace')!r} is not supported (only {KEY_TYPE})")
    raw = r.string()
    r.done()
    if len(raw) != 32:
        raise ProvenanceError("Ed25519 public key is not 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``SHA256:<base64>``, the fingerprint `ssh-keygen -l` prints, so reviewers can compare by eye."""
    digest = hashlib.sha256(public_blob(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def openssh_public(key: Ed25519PublicKey) -> str:
    """``ssh-ed25519 AAAA...`` (no comment)."""
    return f"{KEY_TYPE} {base64.b64encode(public_blob(key)).decode()}"


# --- SSHSIG sign / verify ----------------------------------------------------------------------------------------


def _signed_data(namespace: str, hash_alg: str, message: bytes) -> bytes:
    digest = _HASHES[hash_alg](message).digest()
    return _MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_alg.encode()) + _string(digest)


def sign(private_key: Ed25519PrivateKey, message: bytes, namespace: str = NAMESPACE) -> str:
    """An armored SSHSIG signature of ``message`` (hash sha512, as ssh-keygen uses)."""
    if not namespace:
        raise ProvenanceError("signature namespace must not be empty")
    sig = private_key.sign(_signed_data(namespace, "sha512", message))
    sig_blob = _string(KEY_TYPE.encode()) + _string(sig)
    blob = (
        _MAGIC
        + struct.pack(">I", _VERSION)
        + _string(public_blob(private_key.public_key()))
        + _string(namespace.encode())
        + _string(b"")
        + _string(b"sha512")
        + _string(sig_blob)
    )
    return _armor(blob)


def _armor(blob: bytes) -> str:
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i : i + _WRAP] for i in range(0, len(b64), _WRAP)]
    return "\n".join([_BEGIN, *lines, _END]) + "\n"


@dataclass(frozen=True)
class SshSig:
    """A decoded SSHSIG signature: who signed (public key), for which namespace, with which hash."""

    public_key: Ed25519PublicKey
    namespace: str
    hash_alg: str
    signature: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def parse_signature(text: str) -> SshSig:
    """Decode an armored SSHSIG. Only the canonical armor is accepted (70-column base64, LF line ends, one final
    newline): the signature file is not covered by SHA256SUMS, so any byte changed in it must be a failure."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[0] != _BEGIN or lines[-2] != _END or lines[-1] != "":
        raise ProvenanceError("not an armored SSH signature")
    b64 = "".join(lines[1:-2])
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ProvenanceError("signature is not valid base64") from None
    if _armor(blob) != text:
        raise ProvenanceError("signature armor is not canonical (altered whitespace or base64)")
    r = _Reader(blob)
    if r.take(6) != _MAGIC:
        raise ProvenanceError("signature does not start with SSHSIG")
    version = r.uint32()
    if version != _VERSION:
        raise ProvenanceError(f"SSHSIG version {version} is not supported")
    pub = _public_from_blob(r.string())
    namespace = r.string().decode("utf-8", errors="replace")
    r.string()  # reserved; ignored, as PROTOCOL.sshsig says
    hash_alg = r.string().decode("ascii", errors="replace")
    sr = _Reader(r.string())
    r.done()
    sig_type = sr.string()
    sig = sr.string()
    sr.done()
    if sig_type != KEY_TYPE.encode() or len(sig) != 64:
        raise ProvenanceError("signature is not an Ed25519 signature")
    if hash_alg not in _HASHES:
        raise ProvenanceError(f"signature hash {hash_alg!r} is not sha256 or sha512")
    return SshSig(pub, namespace, hash_alg, sig)


def verify_signature(sig: SshSig, message: bytes, namespace: str = NAMESPACE) -> None:
    """Raise ProvenanceError unless ``sig`` is a valid signature of ``message`` in ``namespace``."""
    if sig.namespace != namespace:
        raise ProvenanceError(f"signature namespace is {sig.namespace!r}, expected {namespace!r}")
    try:
        sig.public_key.verify(sig.signature, _signed_data(sig.namespace, sig.hash_alg, message))
    except InvalidSignature:
        raise ProvenanceError(f"signature by {sig.fingerprint} does not match the signed file") from None


# --- allowed_signers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """One allowed_signers line: principal patterns, the namespaces it may sign (None = any), validity window."""

    principals: tuple[str, ...]
    public_key: Ed25519PublicKey
    namespaces: tuple[str, ...] | None
    valid_after: datetime | None
    valid_before: datetime | None
    cert_authority: bool

    def same_key(self, other: Ed25519PublicKey) -> bool:
        return public_blob(self.public_key) == public_blob(other)

    def allows(self, namespace: str, now: datetime) -> str | None:
        """Why this line does not allow a signature now in ``namespace``, or None if it does."""
        if self.cert_authority:
            return "cert-authority lines are not supported"
        if self.namespaces is not None and not any(fnmatch.fnmatchcase(namespace, p) for p in self.namespaces):
            return f"namespace {namespace!r} not allowed (namespaces={','.join(self.namespaces)})"
        if self.valid_after and now < self.valid_after:
            return f"key not valid before {self.valid_after.isoformat()}"
        if self.valid_before and now > self.valid_before:
            return f"key expired {self.valid_before.isoformat()}"
        return None


def signers_line(identity: str, key: Ed25519PublicKey, namespace: str = NAMESPACE) -> str:
    """An allowed_signers line that lets ``identity`` sign only in our namespace."""
    if not _PRINCIPAL.fullmatch(identity):
        raise ProvenanceError(f"identity {identity!r} must be letters, digits and ._@+- only")
    return f'{identity} namespaces="{namespace}" {openssh_public(key)}\n'


def _tokens(line: str) -> list[str]:
    """Split on whitespace outside double quotes (options like namespaces="a,b" stay one token)."""
    out, cur, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch.isspace() and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ProvenanceError("unterminated quote")
    if cur:
        out.append("".join(cur))
    return out


def _split_options(opts: str) -> list[str]:
    out, cur, quoted = [], [], False
    for ch in opts:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _when(value: str) -> datetime:
    """allowed_signers times: YYYYMMDD[HHMM[SS]][Z]; without Z, local time (as ssh-keygen reads them)."""
    utc = value.endswith("Z")
    digits = value[:-1] if utc else value
    fmt = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}.get(len(digits))
    if not fmt or not digits.isdigit():
        raise ProvenanceError(f"bad time {value!r}")
    t = datetime.strptime(digits, fmt)
    return t.replace(tzinfo=timezone.utc) if utc else t.astimezone()


def parse_signers(text: str, source: str = "allowed_signers") -> list[Signer]:
    """Parse an allowed_signers file (ssh-keygen(1) ALLOWED SIGNERS). Non-Ed25519 keys are skipped with a log line;
    malformed lines raise ProvenanceError naming the file and line."""
    signers = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            toks = _tokens(line)
            if len(toks) < 3:
                raise ProvenanceError("expected 'principals [options] keytype key'")
            principals = tuple(p.strip('"') for p in toks[0].split(","))
            rest = toks[1:]
            options: list[str] = []
            if not (rest[0].startswith("ssh-") or rest[0].startswith("ecdsa-") or rest[0].startswith("sk-")):
                options = _split_options(rest[0])
                rest = rest[1:]
            if len(rest) < 2:
                raise ProvenanceError("missing key")
            ktype, kb64 = rest[0], rest[1]
            if ktype != KEY_TYPE:
                log.info("%s line %d: %s key skipped (only %s is supported)", source, n, ktype, KEY_TYPE)
                continue
            try:
                blob = base64.b64decode(kb64, validate=True)
            except (binascii.Error, ValueError):
                raise ProvenanceError("key is not valid base64") from None
            namespaces = valid_after = valid_before = None
            cert_authority = False
            for opt in options:
                name, _, value = opt.partition("=")
                name, value = name.lower(), value.strip('"')
                if name == "namespaces":
                    namespaces = tuple(v for v in value.split(",") if v)
                elif name == "valid-after":
                    valid_after = _when(value)
                elif name == "valid-before":
                    valid_before = _when(value)
                elif name == "cert-authority":
                    cert_authority = True
                else:
                    raise ProvenanceError(f"unknown option {name!r}")
            signers.append(
                Signer(principals, _public_from_blob(blob), namespaces, valid_after, valid_before, cert_authority)
            )
        except ProvenanceError as exc:
            raise ProvenanceError(f"{source} line {n}: {exc}") from None
    return signers


def find_signer(
    signers: list[Signer], sig: SshSig, namespace: str = NAMESPACE, identity: str | None = None
) -> Signer:
    """The allowed_signers line that vouches for ``sig``'s key (and ``identity``, if given), or ProvenanceError."""
    now = datetime.now(timezone.utc)
    reasons = []
    for s in signers:
        if not s.same_key(sig.public_key):
            continue
        if identity is not None and not any(fnmatch.fnmatchcase(identity, p) for p in s.principals):
            reasons.append(f"key listed for {','.join(s.principals)}, not {identity!r}")
            continue
        why = s.allows(namespace, now)
        if why is None:
            return s
        reasons.append(why)
    detail = "; ".join(reasons) if reasons else "key not listed"
    raise ProvenanceError(f"signing key {sig.fingerprint} is not an allowed signer ({detail})")


# --- keys on disk ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key with the identity (allowed_signers principal) it signs as."""

    path: Path
    private_key: Ed25519PrivateKey
    identity: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def signers_line(self, namespace: str = NAMESPACE) -> str:
        return signers_line(self.identity, self.public_key, namespace)


def default_key_path() -> Path:
    """``$BENCH_SIGNING_KEY`` or ``~/.config/edge-llm-bench/signing_key`` (XDG_CONFIG_HOME respected)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "edge-llm-bench" / "signing_key"


def refuse_inside(key_path: Path, result_dir: Path) -> None:
    """The private key must never be written into (or read from) the folder it signs."""
    key_abs = Path(os.path.realpath(key_path))
    dir_abs = Path(os.path.realpath(result_dir))
    if key_abs == dir_abs or key_abs.is_relative_to(dir_abs):
        raise ProvenanceError(f"{key_path}: signing key is inside the result folder {result_dir}; keep it outside")


def _companions(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".pub"), path.with_name(path.name + ".allowed_signers")


def create_key(path: Path, identity: str = DEFAULT_IDENTITY) -> SigningKey:
    """Generate a key at ``path`` (mode 0600, parent 0700 if created) plus ``.pub`` and ``.allowed_signers``."""
    path = Path(path)
    signers_line(identity, Ed25519PrivateKey.generate().public_key())  # validate identity before touching disk
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ProvenanceError(f"{path}: key file already exists; not overwriting") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path, signers_path = _companions(path)
    pub_path.write_text(f"{openssh_public(key.public_key())} {identity}\n", encoding="utf-8")
    signers_path.write_text(signers_line(identity, key.public_key()), encoding="utf-8")
    log.info("created signing key %s (%s)", path, fingerprint(key.public_key()))
    return SigningKey(path, key, identity)


def load_key(path: Path) -> SigningKey:
    """Load an unencrypted OpenSSH Ed25519 private key; refuse one that others can read (as ssh does)."""
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise ProvenanceError(f"{path}: no signing key (create one with `bench keygen`)") from None
    except OSError as exc:
        raise ProvenanceError(f"{path}: cannot read signing key: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise ProvenanceError(f"{path}: signing key is readable by others (mode {st.st_mode & 0o777:o}); chmod 600")
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:
        raise ProvenanceError(f"{path}: signing key is passphrase-protected; use an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ProvenanceError(f"{path}: not an OpenSSH private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvenanceError(f"{path}: signing key is not Ed25519")
    return SigningKey(path, key, _identity_for(path, key.public_key()))


def _identity_for(path: Path, pub: Ed25519PublicKey) -> str:
    """The principal from ``<key>.allowed_signers`` if it lists this key, else the default identity."""
    _, signers_path = _companions(path)
    try:
        for s in parse_signers(signers_path.read_text(encoding="utf-8"), str(signers_path)):
            if s.same_key(pub) and len(s.principals) == 1 and _PRINCIPAL.fullmatch(s.principals[0]):
                return s.principals[0]
    except (OSError, ProvenanceError) as exc:
        log.debug("no usable %s: %s", signers_path, exc)
    return DEFAULT_IDENTITY


def load_or_create_key(path: Path | None = None, identity: str = DEFAULT_IDENTITY) -> SigningKey:
    """The signing key at ``path`` (default :func:`default_key_path`), created on first use."""
    path = Path(path) if path is not None else default_key_path()
    if not path.exists():
        return create_key(path, identity)
    return load_key(path)
