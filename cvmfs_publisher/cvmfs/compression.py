"""Object encoding: zlib streams whose stored bytes are what the hash covers (spec 2.2-2.4).

The object name is the hash of the *compressed* bytes, so encoding and naming are one step.
"""

from __future__ import annotations

import enum
import zlib

from ..errors import FormatError
from .hashes import Algorithm, ContentHash

DEFAULT_LEVEL = 6  # upstream's deflateInit(Z_DEFAULT_COMPRESSION)
PIECE = 1 << 20


class Compression(enum.IntEnum):
    """Upstream's ``zlib::Algorithms``; stored in catalog flag bits 11-13."""

    ZLIB = 0
    NONE = 1


def encode(
    data: bytes | memoryview,
    algorithm: Algorithm = Algorithm.SHA1,
    level: int = DEFAULT_LEVEL,
    compression: Compression = Compression.ZLIB,
) -> tuple[ContentHash, bytes]:
    """Encode one object: returns its content hash and the bytes to store."""
    stored = zlib.compress(data, level) if compression is Compression.ZLIB else bytes(data)
    return ContentHash.of(stored, algorithm), stored


def decode(stored: bytes, compression: Compression = Compression.ZLIB) -> bytes:
    if compression is Compression.NONE:
        return stored
    try:
        return zlib.decompress(stored)
    except zlib.error as exc:
        raise FormatError(f"corrupt zlib stream: {exc}") from None


def check_and_decode(
    stored: bytes, expected: ContentHash, compression: Compression = Compression.ZLIB
) -> bytes:
    """What the client does on download: hash the stored bytes, then inflate."""
    actual = ContentHash.of(stored, expected.algorithm)
    if actual != expected:
        raise FormatError(f"object content hash is {actual}, expected {expected}")
    return decode(stored, compression)

