"""Mutual TLS 1.3 with pinned certificates, for a meter daemon on another machine.

Each side has a directory with its own key (``key.pem``, mode 0600) and self-signed certificate (``cert.pem``), and
a ``trusted/`` folder holding the certificates of the peers it accepts. There is no CA and no hostname check: a
peer is accepted only if it presents one of the pinned certificates, which is what a two-machine lab needs and
what cannot be tricked by a certificate some authority issued. Keys are ECDSA P-256 made with ``cryptography``.

Exchange: ``bench meter tls init`` on both machines, then ``bench meter tls export`` on one piped into
``bench meter tls trust -`` on the other (``ssh meter-host bench meter tls export | bench meter tls trust -``),
both ways. Serving needs only the standard library's ``ssl``; ``cryptography`` is imported to make keys.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from bench.errors import MeterError

KEY_FILE, CERT_FILE, TRUSTED_DIR = "key.pem", "cert.pem", "trusted"
VALID_DAYS = 3650


@dataclass(frozen=True)
class Identity:
    """This side's certificate fingerprint and the pinned peers' certificates, by fingerprint."""

    directory: Path
    fingerprint: str
    trusted: dict[str, Path]


def fingerprint(der: bytes) -> str:
    """``sha256:<hex>`` of the DER certificate: what both sides print and pin."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _der(source: Path | str, pem: bytes | None = None) -> bytes:
    """The DER bytes of one PEM certificate (a file, or bytes read elsewhere)."""
    try:
        text = (pem if pem is not None else Path(source).read_bytes()).decode("ascii")
        return ssl.PEM_cert_to_DER_cert(text.strip())
    except OSError as exc:
        raise MeterError(f"TLS certificate {source}: cannot read it: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise MeterError(f"TLS certificate {source}: not one PEM certificate") from None


def init(directory: str | Path, name: str, force: bool = False) -> Identity:
    """Create this side's key and self-signed certificate (refuses to replace them unless ``force``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory).expanduser()
    if (d / KEY_FILE).exists() and not force:
        raise MeterError(f"TLS identity already exists in {d} (fingerprint {load(d).fingerprint}); "
                         f"pass --force to replace it and re-pin it on every peer")
    (d / TRUSTED_DIR).mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .sign(key, hashes.SHA256()))
    key_path = d / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    (d / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return load(d)


def trust(directory: str | Path, pem: bytes, source: str = "-") -> str:
    """Pin a peer's certificate (PEM bytes); returns its fingerprint."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    d = Path(directory).expanduser()
    der = _der(source, pem)
    fp = fingerprint(der)
    if fp == load(d).fingerprint:
        raise MeterError(f"{source}: that is this machine's own certificate; pin the other machine's")
    name = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in (str(name[0].value) if name else "peer"))
    (d / TRUSTED_DIR).mkdir(exist_ok=True)
    (d / TRUSTED_DIR / f"{label}-{fp[7:19]}.pem").write_text(ssl.DER_cert_to_PEM_cert(der), "ascii")
    return fp


def load(directory: str | Path) -> Identity:
    """Check the directory (key present and private, certificate readable) and list the pinned peers."""
    d = Path(directory).expanduser()
    key_path = d / KEY_FILE
    if not key_path.exists():
        raise MeterError(f"no TLS identity in {d}: create one with `bench meter tls init --dir {d}`")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise MeterError(f"TLS key {key_path} is readable by others (mode {mode:04o}); run chmod 600 {key_path}")
    trusted = {fingerprint(_der(p)): p for p in sorted((d / TRUSTED_DIR).glob("*.pem"))}
    return Identity(d, fingerprint(_der(d / CERT_FILE)), trusted)


def _context(directory: str | Path, purpose: ssl.Purpose) -> tuple[ssl.SSLContext, Identity]:
    ident = load(directory)
    if not ident.trusted:
        peer = "client (the measured machine)" if purpose is ssl.Purpose.CLIENT_AUTH else "meter daemon"
        raise MeterError(f"no trusted {peer} certificate in {ident.directory / TRUSTED_DIR}: pin one with "
                         f"`bench meter tls trust FILE --dir {ident.directory}`")
    server = purpose is ssl.Purpose.CLIENT_AUTH
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # pinned certificates, not names: a meter host is often addressed by IP
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(ident.directory / CERT_FILE, ident.directory / KEY_FILE)
    ctx.load_verify_locations(cadata="".join(p.read_text("ascii") for p in ident.trusted.values()))
    return ctx, ident


def server_context(directory: str | Path) -> tuple[ssl.SSLContext, Identity]:
    return _context(directory, ssl.Purpose.CLIENT_AUTH)


def client_context(directory: str | Path) -> tuple[ssl.SSLContext, Identity]:
    return _context(directory, ssl.Purpose.SERVER_AUTH)


def check_peer(sock: ssl.SSLSocket, ident: Identity) -> str:
    """After the handshake: the peer's fingerprint, which must be one of the pinned ones."""
    der = sock.getpeercert(binary_form=True)
    fp = fingerprint(der) if der else "none"
    if fp not in ident.trusted:
        raise MeterError(f"TLS peer presented certificate {fp}, which is not pinned in {ident.directory / TRUSTED_DIR}")
    return fp


def explain(exc: ssl.SSLError | OSError, where: str, ident: Identity) -> str:
    """One line for a failed handshake, saying which side's pin is missing."""
    text = f"{getattr(exc, 'reason', '') or ''} {exc}".lower()
    if "certificate verify failed" in text:
        return (f"{where} presented a certificate that is not pinned in {ident.directory / TRUSTED_DIR} "
                f"(wrong meter host, or its key changed: pin it with `bench meter tls trust`)")
    if any(s in text for s in ("unknown ca", "bad certificate", "certificate required", "certificate unknown",
                               "decrypt error", "access denied")):
        return (f"{where} refused this machine's certificate {ident.fingerprint}: pin it on the meter host "
                f"with `bench meter tls trust` (wrong key?)")
    return f"TLS handshake with {where} failed: {exc}"
