"""The client's trust chain on mount (spec section 9), as one function with precise errors.

Publishing starts from it too: a transaction only builds on a head it can verify, so a
tampered or foreign repository is never extended.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.hashes import ROOT_PATH_MD5, Suffix
from ..cvmfs.key_material import certificate_fingerprint, load_certificate
from ..cvmfs.manifest import Manifest, parse_manifest, verify_manifest_signature
from ..cvmfs.signatures import SignedDocument
from ..cvmfs.whitelist import Whitelist, parse_whitelist, verify_whitelist_signature
from ..errors import FormatError, ObjectNotFound, RepositoryNotFound, SignatureError
from ..storage.base import MANIFEST, WHITELIST, Storage
from .reader import CheckedObject, bounded

# A manifest is about 600 bytes (upstream refuses 4 KiB, see ``parse_manifest``), a
# whitelist 200 plus 60 per certificate, a certificate PEM about 1.3 KB: anything past
# 64 KiB is refused before more of it is read.
SIGNED_FILE_LIMIT = 64 << 10


@dataclass(frozen=True)
class TrustedHead:
    """A manifest whose whole signature chain checked out at ``checked_at``."""

    manifest: Manifest
    whitelist: Whitelist
    certificate: bytes
    checked_at: dt.datetime
    raw: bytes  # the manifest as stored: what the next manifest switch is conditional on


def read_manifest(storage: Storage) -> tuple[Manifest, SignedDocument | None]:
    return parse_manifest(_read_raw_manifest(storage))


def _read_signed_file(storage: Storage, key: str) -> bytes:
    """The manifest or whitelist, never more than ``SIGNED_FILE_LIMIT`` bytes of it."""
    with storage.open(key) as stream:
        return b"".join(bounded(stream, SIGNED_FILE_LIMIT, f"{key} at {storage.location}"))


def _read_raw_manifest(storage: Storage) -> bytes:
    try:
        return _read_signed_file(storage, MANIFEST)
    except ObjectNotFound:
        raise RepositoryNotFound(f"no repository at {storage.location} (no {MANIFEST})") from None


def verify_head(
    storage: Storage,
    master_keys: list[rsa.RSAPublicKey],
    *,
    fqrn: str | None = None,
    at: dt.datetime | None = None,
) -> TrustedHead:
    """Run every check of the client, in its order; raise on the first failure."""
    at = at or dt.datetime.now(dt.UTC)
    raw = _read_raw_manifest(storage)
    manifest, doc = parse_manifest(raw)
    if doc is None:
        raise SignatureError("manifest is not signed (no '--' separator)")
    name = fqrn or manifest.fqrn
    if manifest.fqrn != name:
        raise SignatureError(f"repository name mismatch: manifest is for {manifest.fqrn!r}, "
                             f"expected {name!r}")
    if manifest.root_path_hash != ROOT_PATH_MD5:
        raise SignatureError(f"manifest root path hash R is {manifest.root_path_hash}, "
                             f"must be {ROOT_PATH_MD5}")
    if manifest.certificate is None:
        raise SignatureError("manifest names no certificate (X)")
    certificate = load_certificate_object(storage, manifest)
    cert_key = load_certificate(certificate).public_key()
    if not isinstance(cert_key, rsa.RSAPublicKey):
        raise SignatureError("repository certificate does not hold an RSA key")
    if not verify_manifest_signature(doc, cert_key):
        raise SignatureError("manifest signature does not verify with the repository "
                             f"certificate {manifest.certificate} (manifest altered?)")
    whitelist = check_whitelist(storage, master_keys, name, at)
    fingerprint = certificate_fingerprint(certificate, manifest.root_catalog.algorithm)
    if not whitelist.allows(fingerprint):
        raise SignatureError(f"certificate {fingerprint.fingerprint()} is not in the whitelist")
    return TrustedHead(manifest, whitelist, certificate, at, raw)


def load_certificate_object(storage: Storage, manifest: Manifest) -> bytes:
    assert manifest.certificate is not None
    key = manifest.certificate.object_key(Suffix.CERTIFICATE)
    try:
        with CheckedObject.fetch(storage, manifest.certificate, Suffix.CERTIFICATE,
                                 SIGNED_FILE_LIMIT) as stored:
            return b"".join(stored.content(SIGNED_FILE_LIMIT))
    except ObjectNotFound:
        raise SignatureError(f"certificate object {key} is missing") from None
    except FormatError as exc:
        raise SignatureError(f"certificate object {key} is corrupt: {exc}") from None


def check_whitelist(
    storage: Storage, master_keys: list[rsa.RSAPublicKey], fqrn: str, at: dt.datetime
) -> Whitelist:
    try:
        raw = _read_signed_file(storage, WHITELIST)
    except ObjectNotFound:
        raise SignatureError(f"no {WHITELIST} at {storage.location}") from None
    try:
        whitelist, doc = parse_whitelist(raw)
    except FormatError as exc:
        raise SignatureError(f"bad whitelist: {exc}") from None
    if whitelist.fqrn != fqrn:
        raise SignatureError(f"repository name mismatch: whitelist is for {whitelist.fqrn!r}, "
                             f"expected {fqrn!r}")
    if whitelist.pkcs7:
        raise SignatureError("PKCS#7 whitelists are not supported")
    if not verify_whitelist_signature(doc, master_keys):
        raise SignatureError("bad whitelist: its signature does not verify with the trusted "
                             "master public key (wrong key, or whitelist altered)")
    if not whitelist.valid_at(at):
        raise SignatureError(
            f"whitelist expired on {whitelist.expires:%Y-%m-%d %H:%M:%S} UTC "
            f"(checked as of {at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC); run 'resign'"
        )
    return whitelist
