"""Content hashes, hash strings, object names and path keys (format spec sections 2.1, 1.2, 3.3).

A CVMFS content hash is always 20 bytes; the algorithm travels separately: as a textual
suffix (``-rmd160``/``-shake128``) in hash strings, and as flag bits in catalog rows.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

from ..errors import FormatError

DIGEST_SIZE = 20


class Algorithm(enum.IntEnum):
    """Values of upstream's ``shash::Algorithms`` enum; catalog flags store ``value - 1``."""

    MD5 = 0
    SHA1 = 1
    RMD160 = 2
    SHAKE128 = 3


ALGORITHM_IDS = {Algorithm.SHA1: "", Algorithm.RMD160: "-rmd160", Algorithm.SHAKE128: "-shake128"}
_HEX_LENGTHS = {40: Algorithm.SHA1, 47: Algorithm.RMD160, 49: Algorithm.SHAKE128}


class Suffix(enum.StrEnum):
    """The letter appended to an object name that says what the object is."""

    NONE = ""
    CATALOG = "C"
    HISTORY = "H"
    CERTIFICATE = "X"
    METAINFO = "M"
    PARTIAL = "P"
    MICRO_CATALOG = "L"


class Hasher:
    """One interface over hashlib's fixed and extendable-output digests."""

    __slots__ = ("_algorithm", "_h")

    def __init__(self, algorithm: Algorithm = Algorithm.SHA1) -> None:
        self._algorithm = algorithm
        if algorithm is Algorithm.SHA1:
            self._h = hashlib.sha1()
        elif algorithm is Algorithm.SHAKE128:
            self._h = hashlib.shake_128()
        elif algorithm is Algorithm.RMD160:
            self._h = hashlib.new("ripemd160")
        else:
            raise FormatError(f"{algorithm.name} is not a content hash algorithm")

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def result(self) -> ContentHash:
        if self._algorithm is Algorithm.SHAKE128:
            digest = self._h.digest(DIGEST_SIZE)  # type: ignore[call-arg]
        else:
            digest = self._h.digest()
        return ContentHash(digest, self._algorithm)


@dataclass(frozen=True, slots=True)
class ContentHash:
    """A content hash; ``str()`` gives the hash string used in manifests and tags."""

    digest: bytes
    algorithm: Algorithm = Algorithm.SHA1

    def __post_init__(self) -> None:
        if len(self.digest) != DIGEST_SIZE:
            raise FormatError(f"content hash must be {DIGEST_SIZE} bytes, got {len(self.digest)}")

    @classmethod
    def of(cls, data: bytes, algorithm: Algorithm = Algorithm.SHA1) -> ContentHash:
        hasher = Hasher(algorithm)
        hasher.update(data)
        return hasher.result()

    @classmethod
    def parse(cls, text: str) -> ContentHash:
        """Parse a hash string; like upstream, the length decides the algorithm."""
        algorithm = _HEX_LENGTHS.get(len(text))
        if algorithm is None:
            raise FormatError(f"not a content hash string: {text!r}")
        hex_part = text[:40]
        if text[40:] != ALGORITHM_IDS[algorithm]:
            raise FormatError(f"not a content hash string: {text!r}")
        try:
            digest = bytes.fromhex(hex_part)
        except ValueError:
            raise FormatError(f"not a content hash string: {text!r}") from None
        if hex_part != hex_part.lower():
            raise FormatError(f"hash strings are lowercase: {text!r}")
        return cls(digest, algorithm)

    @classmethod
    def zero(cls, algorithm: Algorithm = Algorithm.SHA1) -> ContentHash:
        return cls(bytes(DIGEST_SIZE), algorithm)

    @property
    def hex(self) -> str:
        return self.digest.hex()

    def __str__(self) -> str:
        return self.digest.hex() + ALGORITHM_IDS[self.algorithm]

    def object_key(self, suffix: Suffix = Suffix.NONE) -> str:
        """Storage key of the object, relative to the repository root."""
        h = self.digest.hex()
        return f"data/{h[:2]}/{h[2:]}{ALGORITHM_IDS[self.algorithm]}{suffix.value}"

    def fingerprint(self) -> str:
        """Whitelist form: ``AA:BB:...`` plus the uppercased algorithm id."""
        pairs = ":".join(f"{b:02X}" for b in self.digest)
        return pairs + ALGORITHM_IDS[self.algorithm].upper()

    @classmethod
    def from_fingerprint(cls, text: str) -> ContentHash | None:
        """Parse a whitelist fingerprint line; None for lines upstream would ignore."""
        for stop in (" ", "\t", "#"):
            text = text.split(stop, 1)[0]
        try:
            return cls.parse(text.replace(":", "").lower())
        except FormatError:
            return None


def parse_object_key(key: str) -> tuple[ContentHash, Suffix]:
    """Inverse of ``ContentHash.object_key``; raises FormatError for anything else."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "data" or len(parts[1]) != 2:
        raise FormatError(f"not an object key: {key!r}")
    name = parts[1] + parts[2]
    suffix = Suffix.NONE
    if name and name[-1] in "CHXMPL":
        suffix = Suffix(name[-1])
        name = name[:-1]
    return ContentHash.parse(name), suffix


ROOT_PATH_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def path_key(path: str) -> tuple[int, int]:
    """MD5 of a repository path as the two signed little-endian int64 catalog columns."""
    return struct.unpack("<qq", hashlib.md5(path.encode("utf-8", "surrogateescape")).digest())


def parent_path(path: str) -> str:
    """Parent of a catalog path; the parent of ``/x`` is the root ``""``."""
    return path.rsplit("/", 1)[0]
