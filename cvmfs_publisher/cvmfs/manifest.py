"""The signed manifest ``.cvmfspublished`` (spec section 4)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import FormatError
from .hashes import ROOT_PATH_MD5, ContentHash
from .signatures import SignedDocument, hash_line, sign_sha1, verify_sha1

DEFAULT_TTL = 240
MAX_SIZE = 4096  # upstream's ParseKeyvalPath refuses larger manifests
KNOWN_KEYS = set("CBRDSGANXHTMYLZ")


@dataclass(frozen=True)
class Manifest:
    root_catalog: ContentHash
    catalog_size: int
    revision: int
    fqrn: str
    ttl: int = DEFAULT_TTL
    timestamp: int = 0
    certificate: ContentHash | None = None
    history: ContentHash | None = None
    metainfo: ContentHash | None = None
    reflog: ContentHash | None = None
    garbage_collectable: bool = False
    alt_catalog_path: bool = False
    root_path_hash: str = ROOT_PATH_MD5
    extra: tuple[tuple[str, str], ...] = field(default=())

    def letter(self) -> bytes:
        """Fields in the order of upstream's ``ExportString``."""
        lines = [
            f"C{self.root_catalog}",
            f"B{self.catalog_size}",
            f"R{self.root_path_hash}",
            f"D{self.ttl}",
            f"S{self.revision}",
            f"G{'yes' if self.garbage_collectable else 'no'}",
            f"A{'yes' if self.alt_catalog_path else 'no'}",
            f"N{self.fqrn}",
        ]
        if self.certificate is not None:
            lines.append(f"X{self.certificate}")
        if self.history is not None:
            lines.append(f"H{self.history}")
        if self.timestamp > 0:
            lines.append(f"T{self.timestamp}")
        if self.metainfo is not None:
            lines.append(f"M{self.metainfo}")
        if self.reflog is not None:
            lines.append(f"Y{self.reflog}")
        lines.extend(f"{key}{value}" for key, value in self.extra)
        return ("\n".join(lines) + "\n").encode("utf-8")

    def sign(self, key: rsa.RSAPrivateKey) -> bytes:
        letter = self.letter()
        line = hash_line(letter, self.root_catalog.algorithm)
        return SignedDocument(letter, line, sign_sha1(key, line)).serialize()

    def evolve(self, **changes: object) -> Manifest:
        return replace(self, **changes)  # type: ignore[arg-type]


def parse_manifest(data: bytes) -> tuple[Manifest, SignedDocument | None]:
    """Parse a manifest; the signed part is returned for separate verification."""
    if len(data) >= MAX_SIZE:
        raise FormatError(f"manifest is {len(data)} bytes, upstream refuses >= {MAX_SIZE}")
    doc: SignedDocument | None = None
    letter = data
    if b"\n--\n" in data:
        doc = SignedDocument.split(data, "manifest")
        letter = doc.letter
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    try:
        text = letter.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("manifest letter is not UTF-8 text") from None
    for line in text.split("\n"):
        if not line:
            continue
        key, value = line[0], line[1:]
        if key in KNOWN_KEYS and key not in "LZ":
            values[key] = value
        else:
            extra.append((key, value))
    for required in "CRDS":
        if required not in values:
            raise FormatError(f"manifest lacks the required field {required}")

    def optional_hash(key: str) -> ContentHash | None:
        return ContentHash.parse(values[key]) if key in values else None

    try:
        manifest = Manifest(
            root_catalog=ContentHash.parse(values["C"]),
            catalog_size=int(values.get("B", "0")),
            revision=int(values["S"]),
            fqrn=values.get("N", ""),
            ttl=int(values["D"]),
            timestamp=int(values.get("T", "0")),
            certificate=optional_hash("X"),
            history=optional_hash("H"),
            metainfo=optional_hash("M"),
            reflog=optional_hash("Y"),
            garbage_collectable=values.get("G", "no") == "yes",
            alt_catalog_path=values.get("A", "no") == "yes",
            root_path_hash=values["R"],
            extra=tuple(extra),
        )
    except ValueError as exc:
        raise FormatError(f"manifest field is malformed: {exc}") from None
    return manifest, doc


def verify_manifest_signature(doc: SignedDocument, certificate_key: rsa.RSAPublicKey) -> bool:
    """Client order (``VerifyLetter``): the letter hash, then the signature over the hash line."""
    return doc.letter_hash_matches() and verify_sha1(certificate_key, doc.hash_line, doc.signature)
