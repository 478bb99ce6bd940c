"""Repository key material as ``cvmfs_server mkfs`` makes it (spec 5.1, 5.2).

Four files per repository in a key directory: ``<fqrn>.masterkey`` (signs the whitelist),
``<fqrn>.pub`` (its public half, what clients trust), ``<fqrn>.key`` (signs manifests) and
``<fqrn>.crt`` (self-signed certificate of ``.key``, published as the ``X`` object).
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..errors import KeyMaterialError
from .hashes import Algorithm, ContentHash

KEY_BITS = 2048
CERT_DAYS = 365
SUFFIXES = {"masterkey": ".masterkey", "pub": ".pub", "key": ".key", "crt": ".crt"}


def certificate_common_name(fqrn: str) -> str:
    """Upstream truncates the name to 30 characters in the subject."""
    short = fqrn if len(fqrn) <= 30 else fqrn[:30] + "[...]"
    return f"{short} CernVM-FS Release Managers"


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def make_certificate(fqrn: str, key: rsa.RSAPrivateKey, now: dt.datetime) -> bytes:
    """Self-signed certificate for the repository key; clients ignore its dates."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, certificate_common_name(fqrn))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(63) | 1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes, what: str) -> rsa.RSAPrivateKey:
    try:
        key = _parse_private_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{what} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyMaterialError(f"{what} is not an RSA key")
    return key


@functools.lru_cache(maxsize=8)
def _parse_private_key(pem: bytes) -> Any:
    """Without OpenSSL's check of the RSA arithmetic: it costs about 35 ms per 2048-bit key,
    and a publish parses two (the pairing check). A damaged key is caught where it matters
    instead: every signature made is verified against the key's public half before use
    (``signatures``), and ``check_pairing`` compares that half with the certificate."""
    return serialization.load_pem_private_key(pem, password=None,
                                              unsafe_skip_rsa_key_validation=True)


def load_public_key(pem: bytes, what: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{what} is not a PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyMaterialError(f"{what} is not an RSA public key")
    return key


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise KeyMaterialError(f"{what} is not a PEM certificate ({exc})") from None


def certificate_fingerprint(cert_pem: bytes, algorithm: Algorithm = Algorithm.SHA1) -> ContentHash:
    """Whitelist fingerprint: the hash of the DER encoding, not of the PEM object."""
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return ContentHash.of(der, algorithm)


@dataclass
class KeySet:
    """The four files of a repository; private parts may be absent for read-only use."""

    fqrn: str
    certificate: bytes
    public_master: bytes
    master_key: bytes | None = None
    signing_key: bytes | None = None

    def master(self) -> rsa.RSAPrivateKey:
        if self.master_key is None:
            raise KeyMaterialError(f"no master key for {self.fqrn} ({self.fqrn}.masterkey)")
        return load_private_key(self.master_key, f"{self.fqrn}.masterkey")

    def signer(self) -> rsa.RSAPrivateKey:
        if self.signing_key is None:
            raise KeyMaterialError(f"no signing key for {self.fqrn} ({self.fqrn}.key)")
        return load_private_key(self.signing_key, f"{self.fqrn}.key")

    def check_pairing(self) -> None:
        """Refuse a signing key that does not match the certificate we would publish."""
        cert_key = load_certificate(self.certificate, f"{self.fqrn}.crt").public_key()
        if self.signing_key is not None and public_pem(self.signer().public_key()) != public_pem(
            cert_key  # type: ignore[arg-type]
        ):
            raise KeyMaterialError(f"{self.fqrn}.key does not match {self.fqrn}.crt")
        if self.master_key is not None and public_pem(self.master().public_key()) != (
            public_pem(load_public_key(self.public_master, f"{self.fqrn}.pub"))
        ):
            raise KeyMaterialError(f"{self.fqrn}.masterkey does not match {self.fqrn}.pub")
