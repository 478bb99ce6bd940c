"""Object encoding: zlib streams whose stored bytes are what the hash covers (spec 2.2-2.4).

The object name is the hash of the *compressed* bytes, so encoding and naming are one step.
Which deflate implementation makes the stream is ours to choose: clients inflate any valid
zlib stream and check the hash of the stored bytes. ``PRESETS`` name the choices:

- ``zlib``: the stdlib's zlib at ``level`` (6 by default), byte-identical to upstream's
  objects (same zlib 1.2.x), so content deduplicates against ``cvmfs_server``'s;
- ``balanced``: libdeflate at ``level`` (``deflate`` wheel); at 6, 2-3x faster than zlib
  at 6 and a little smaller;
- ``fast``: ISA-L level 1 (``isal`` wheel), whatever ``level``: over 10x faster, objects
  about 7 % larger.

The empty content is always stdlib zlib, so it stays upstream's well-known empty object.
Reading inflates with the fastest inflater installed (ISA-L), still bounded (``inflate``).
The libraries are imported when first used, so commands that never compress load none.
"""

from __future__ import annotations

import enum
import functools
import importlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType

from ..errors import FormatError, UsageError
from .hashes import Algorithm, ContentHash

DEFAULT_LEVEL = 6  # upstream's deflateInit(Z_DEFAULT_COMPRESSION)
PIECE = 1 << 20
PRESETS = ("zlib", "balanced", "fast")
DEFAULT_PRESET = "balanced"
FAST_LEVEL = 1  # ISA-L: 0 to 3; 0 is 20 % larger than zlib-6 on small files

Deflater = Callable[[bytes | memoryview], bytes]


class Compression(enum.IntEnum):
    """Upstream's ``zlib::Algorithms``; stored in catalog flag bits 11-13."""

    ZLIB = 0
    NONE = 1


def deflater(preset: str = "zlib", level: int = DEFAULT_LEVEL) -> Deflater:
    """The function making an object's zlib stream (RFC 1950) under ``preset``.

    ``level`` (1-9) is the deflate level of ``zlib`` and ``balanced``; ``fast`` has its own.
    """
    if preset == "zlib":
        return functools.partial(zlib.compress, level=level)
    if preset == "balanced":
        deflate = _library("deflate", preset)
        return functools.partial(_nonempty, lambda data: bytes(
            deflate.zlib_compress(data, level)))
    if preset == "fast":
        isal_zlib = _library("isal.isal_zlib", preset)
        return functools.partial(_nonempty, functools.partial(isal_zlib.compress,
                                                              level=FAST_LEVEL))
    raise UsageError(f"unknown compression preset {preset!r}: use one of {', '.join(PRESETS)}")


def _nonempty(compress: Deflater, data: bytes | memoryview) -> bytes:
    return compress(data) if len(data) else zlib.compress(b"", DEFAULT_LEVEL)


def _library(name: str, preset: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.split(".")[0]
        raise UsageError(f"compression preset {preset!r} needs the {package!r} package "
                         "(pip install cvmfs-publisher installs it)") from None


@functools.cache
def inflater() -> ModuleType:
    """The fastest zlib-compatible module installed for inflating: ISA-L, else zlib.

    Same interface as ``zlib`` (``decompressobj(wbits)``, ``max_length``,
    ``unconsumed_tail``, ``eof``, ``unused_data``); ``inflate_errors()`` are its errors.
    """
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib
    return isal_zlib


def inflate_errors() -> tuple[type[Exception], ...]:
    return (zlib.error, inflater().error)


def encode(
    data: bytes | memoryview,
    algorithm: Algorithm = Algorithm.SHA1,
    level: int = DEFAULT_LEVEL,
    compression: Compression = Compression.ZLIB,
    deflate: Deflater | None = None,
) -> tuple[ContentHash, bytes]:
    """Encode one object: returns its content hash and the bytes to store.

    ``deflate`` (from ``deflater``) replaces stdlib zlib at ``level``.
    """
    if compression is Compression.NONE:
        stored = bytes(data)
    else:
        stored = deflate(data) if deflate is not None else zlib.compress(data, level)
    return ContentHash.of(stored, algorithm), stored


def decode(stored: bytes, compression: Compression = Compression.ZLIB) -> bytes:
    if compression is Compression.NONE:
        return stored
    try:
        return inflater().decompress(stored)
    except inflate_errors() as exc:
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
    stream = inflater().decompressobj()
    try:
        for block in stored:
            data = block
            while not stream.eof:
                piece = stream.decompress(data, PIECE)
                data = stream.unconsumed_tail
                if piece:
                    yield piece
                if not data and len(piece) < PIECE:
                    break
            if stream.eof:
                return
    except inflate_errors() as exc:
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

