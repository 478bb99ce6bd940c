"""Object encoding: zlib streams whose stored bytes are what the hash covers (spec 2.2-2.4).

The object name is the hash of the *compressed* bytes, so encoding and naming are one step.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterable, Iterator

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


def stored_bound(size: int, compression: Compression = Compression.ZLIB) -> int:
    """The most stored bytes an object whose content is ``size`` bytes can take.

    For zlib: the conservative ``deflateBound`` (any level, window or strategy: about 14 %
    over, as for incompressible data in fixed-Huffman blocks) plus the 6 header and trailer
    bytes. Deflate implementations stay within it, so a longer download is refused unread.
    """
    if compression is Compression.NONE:
        return size
    return size + ((size + 7) >> 3) + ((size + 63) >> 6) + 5 + 6


def inflate(stored: Iterable[bytes], limit: int,
            compression: Compression = Compression.ZLIB) -> Iterator[bytes]:
    """An object's content from its stored bytes, in pieces of at most ``PIECE`` bytes.

    Stops with ``FormatError`` before handing out the piece that takes the content past
    ``limit`` bytes, so a small stream that inflates to gigabytes costs O(PIECE) memory
    and the time to inflate ``limit`` bytes; and at the end of a truncated stream.
    """
    total = 0
    pieces = stored if compression is Compression.NONE else _inflate(stored)
    for piece in pieces:
        total += len(piece)
        if total > limit:
            raise FormatError(f"content inflates to more than {limit} bytes")
        yield piece


def _inflate(stored: Iterable[bytes]) -> Iterator[bytes]:
    """zlib in steps of at most PIECE output bytes (``max_length``): input not taken yet
    waits in ``unconsumed_tail``, and after a full piece more output may be pending."""
    inflater = zlib.decompressobj()
    try:
        for block in stored:
            data = block
            while not inflater.eof:
                piece = inflater.decompress(data, PIECE)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
                if not data and len(piece) < PIECE:
                    break
            if inflater.eof:
                return
    except zlib.error as exc:
        raise FormatError(f"corrupt zlib stream: {exc}") from None
    raise FormatError("corrupt zlib stream: incomplete or truncated stream")


def check_and_decode(
    stored: bytes, expected: ContentHash, compression: Compression = Compression.ZLIB
) -> bytes:
    """What the client does on download: hash the stored bytes, then inflate."""
    actual = ContentHash.of(stored, expected.algorithm)
    if actual != expected:
        raise FormatError(f"object content hash is {actual}, expected {expected}")
    return decode(stored, compression)

