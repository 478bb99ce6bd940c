"""The whitelist ``.cvmfswhitelist``: which certificates may sign, until when (spec 5.3)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import FormatError
from .hashes import Algorithm, ContentHash
from .signatures import SignedDocument, hash_line, sign_raw, verify_raw

DEFAULT_DAYS = 30
TIME_FORMAT = "%Y%m%d%H%M%S"


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


def parse_time(text: str, what: str) -> dt.datetime:
    if len(text) != 14 or not text.isdigit():
        raise FormatError(f"whitelist {what} {text!r} is not YYYYMMDDhhmmss")
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise FormatError(f"whitelist {what} {text!r} is not a valid time") from None


@dataclass(frozen=True)
class Whitelist:
    created: dt.datetime
    expires: dt.datetime
    fqrn: str
    fingerprints: tuple[ContentHash, ...]
    pkcs7: bool = False
    ca_chain: bool = False

    @classmethod
    def new(
        cls,
        fqrn: str,
        fingerprints: tuple[ContentHash, ...],
        now: dt.datetime,
        days: int = DEFAULT_DAYS,
    ) -> Whitelist:
        now = now.astimezone(dt.UTC).replace(microsecond=0)
        return cls(now, now + dt.timedelta(days=days), fqrn, fingerprints)

    def letter(self) -> bytes:
        lines = [format_time(self.created), "E" + format_time(self.expires), "N" + self.fqrn]
        lines.extend(fp.fingerprint() for fp in self.fingerprints)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def sign(self, master_key: rsa.RSAPrivateKey, algorithm: Algorithm = Algorithm.SHA1) -> bytes:
        letter = self.letter()
        line = hash_line(letter, algorithm)
        return SignedDocument(letter, line, sign_raw(master_key, line)).serialize()

    def valid_at(self, moment: dt.datetime) -> bool:
        """Upstream compares year, month, day and hour only: valid while ``now < expiry``."""
        hour = moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        return hour < self.expires.replace(minute=0, second=0, microsecond=0)

    def allows(self, fingerprint: ContentHash) -> bool:
        return fingerprint in self.fingerprints


def parse_whitelist(data: bytes) -> tuple[Whitelist, SignedDocument]:
    doc = SignedDocument.split(data, "whitelist")
    try:
        lines = doc.letter.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise FormatError("whitelist letter is not UTF-8 text") from None
    lines = [line for line in lines if line]
    if len(lines) < 3 or not lines[1].startswith("E") or not lines[2].startswith("N"):
        raise FormatError("whitelist does not start with timestamp, E<expiry>, N<name> lines")
    created = parse_time(lines[0], "timestamp")
    expires = parse_time(lines[1][1:], "expiry")
    fingerprints: list[ContentHash] = []
    pkcs7 = ca_chain = False
    for line in lines[3:]:
        if line == "Vpkcs7":
            pkcs7 = True
        elif line == "Wcachain":
            ca_chain = True
        else:
            fp = ContentHash.from_fingerprint(line)
            if fp is not None:
                fingerprints.append(fp)
    wl = Whitelist(created, expires, lines[2][1:], tuple(fingerprints), pkcs7, ca_chain)
    return wl, doc


def verify_whitelist_signature(doc: SignedDocument, master_keys: list[rsa.RSAPublicKey]) -> bool:
    """Any of the trusted master keys may have signed it (``VerifyRsa``)."""
    if not doc.letter_hash_matches():
        return False
    return any(verify_raw(key, doc.hash_line, doc.signature) for key in master_keys)
