"""Content-defined chunking with upstream's ``Xor32Detector`` cut points (spec 2.5).

The rolling state after byte ``p`` is ``x = XOR_k (b[p-k] << k)`` over the last 32 bytes
(older bytes are shifted out of the 32-bit word), so whether ``p`` is a cut candidate
depends only on the window ``b[p-31..p]``, not on where the chunk started. That makes the
candidate test vectorisable: numpy builds ``x`` for a whole block in five shift-and-xor
passes instead of a Python loop per byte, and the greedy min/max rules are applied on the
few candidates found. Boundaries equal upstream's, so versions of a file deduplicate
against objects made by ``cvmfs_server``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy takes a tenth of a second to import: loaded when first chunking
    import numpy as np

MAGIC = 0x7FFFFFFF
WINDOW = 32
SEARCH_BLOCK = 1 << 20
READ_BLOCK = 4 << 20


@dataclass(frozen=True)
class ChunkPolicy:
    """Upstream defaults: min 4 MiB, average 8 MiB, max 16 MiB."""

    min_size: int = 4 << 20
    avg_size: int = 8 << 20
    max_size: int = 16 << 20

    def __post_init__(self) -> None:
        if not WINDOW <= self.min_size < self.avg_size < self.max_size:
            raise ValueError("chunk sizes must satisfy 32 <= min < avg < max")

    @property
    def threshold(self) -> int:
        return 0xFFFFFFFF // self.avg_size


def _candidates(window: memoryview, threshold: int) -> np.ndarray:
    """Indices ``i >= 31`` of ``window`` whose 32-byte window ending at ``i`` is a cut mark."""
    import numpy as np

    x = np.frombuffer(window, dtype=np.uint8).astype(np.uint32)
    shift = 1
    while shift < WINDOW:
        x = x[shift:] ^ (x[:-shift] << np.uint32(shift))
        shift *= 2
    # x[j] now belongs to window index j + 31. |int32(x - MAGIC)| < threshold, including
    # upstream's abs(INT32_MIN) quirk that makes x == 0xFFFFFFFF a cut as well.
    low = np.uint32(MAGIC - threshold + 1)
    hits = ((x - low) < np.uint32(2 * threshold - 1)) | (x == np.uint32(0xFFFFFFFF))
    return np.flatnonzero(hits) + (WINDOW - 1)


def find_cut(buf: bytearray, start: int, stop: int, threshold: int) -> int | None:
    """First cut candidate ``p`` with ``start <= p < stop`` (``start >= 31``), or None."""
    view = memoryview(buf)
    for lo in range(start, stop, SEARCH_BLOCK):
        hi = min(lo + SEARCH_BLOCK, stop)
        found = _candidates(view[lo - (WINDOW - 1) : hi], threshold)
        if found.size:
            return lo - (WINDOW - 1) + int(found[0])
    return None


def split(read: Callable[[int], bytes], policy: ChunkPolicy) -> Iterator[bytes]:
    """Cut a stream into chunks; memory stays below ``max_size + READ_BLOCK``."""
    buf = bytearray()
    eof = False
    while True:
        while not eof and len(buf) < policy.max_size:
            data = read(READ_BLOCK)
            if not data:
                eof = True
            buf += data
        if len(buf) <= policy.min_size and eof:
            if buf:
                yield bytes(buf)
            return
        limit = min(len(buf), policy.max_size)
        cut = find_cut(buf, policy.min_size, limit, policy.threshold)
        if cut is None and len(buf) < policy.max_size:
            yield bytes(buf)  # end of stream before any cut mark
            return
        if cut is None:
            cut = policy.max_size
        yield bytes(buf[:cut])
        del buf[:cut]
