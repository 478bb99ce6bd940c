"""A layer blob as its uncompressed tar stream, decoded ahead in a thread and hashed.

The compression is sniffed from magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``, else a
plain tar), not trusted from the media type. The diff_id is the sha256 of the whole
uncompressed stream, so ``drain()`` reads on past the tar end marker to EOF (``tarfile``
stops at the marker). Download, blob hashing, inflating and diff_id hashing run in one
worker thread (the inflater and ``hashlib`` release the GIL), so they overlap with parsing
the tar and storing files on the caller's side. gzip is inflated with the fastest
zlib-compatible inflater installed (ISA-L, about twice zlib's speed).
"""

from __future__ import annotations

import collections
import hashlib
import io
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO

import zstandard

from cvmfs_publisher.cvmfs.compression import inflate_errors, inflater

from .errors import UnsafeLayer

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BLOCK = 1 << 20
QUEUE_BLOCKS = 8
PREFETCH_BYTES = 64 << 20  # compressed bytes one layer downloads ahead of its reader


def _decoded_blocks(source: BinaryIO, where: str):
    """Yield uncompressed blocks of ``source`` whatever its compression."""
    head = source.read(BLOCK)
    if head.startswith(GZIP_MAGIC):
        yield from _gunzip(head, source, where)
    elif head.startswith(ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(
            _Prepend(head, source), read_across_frames=True, closefd=False)
        try:
            while block := reader.read(BLOCK):
                yield block
        except zstandard.ZstdError as exc:
            raise UnsafeLayer(f"{where}: broken zstd stream ({exc})") from None
    else:
        while head:
            yield head
            head = source.read(BLOCK)


def _gunzip(head: bytes, source: BinaryIO, where: str):
    """Inflate concatenated gzip members, as ``gzip`` and Go's reader do, in pieces of at
    most ``BLOCK`` bytes (``max_length``), so a small bomb costs no memory."""
    stream = inflater().decompressobj(wbits=31)
    data = head
    try:
        while True:
            out = stream.decompress(data, BLOCK)
            data = stream.unconsumed_tail
            if out:
                yield out
            if stream.eof:
                rest = stream.unused_data
                if not rest:
                    rest = source.read(BLOCK)
                if not rest:
                    return
                if not rest.startswith(GZIP_MAGIC):
                    if rest.strip(b"\0") or source.read(BLOCK).strip(b"\0"):
                        raise UnsafeLayer(f"{where}: data after the end of the gzip stream")
                    _drain_zeros(source, where)
                    return
                stream = inflater().decompressobj(wbits=31)
                data = rest
            elif not data and len(out) < BLOCK:  # all output taken: more input
                data = source.read(BLOCK)
                if not data:
                    raise UnsafeLayer(f"{where}: gzip stream ends early")
    except inflate_errors() as exc:
        raise UnsafeLayer(f"{where}: broken gzip stream ({exc})") from None


def _drain_zeros(source: BinaryIO, where: str) -> None:
    while block := source.read(BLOCK):
        if block.strip(b"\0"):
            raise UnsafeLayer(f"{where}: data after the end of the gzip stream")


class _Prepend(io.RawIOBase):
    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self.head, self.source = head, source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


_END = object()


class LayerStream(io.RawIOBase):
    """Uncompressed layer bytes; ``drain()`` finishes the blob and returns the diff_id.

    ``source`` is read to EOF by the worker, so a ``BlobReader`` gets to check its digest;
    any error there (digest mismatch, broken stream) surfaces on the next read or drain.
    """

    def __init__(self, source: BinaryIO, where: str) -> None:
        super().__init__()
        self.where = where
        self.diff_hash = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue = queue.Queue(QUEUE_BLOCKS)
        self._pending = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(source,), daemon=True,
                                        name="unpack-layer")
        self._thread.start()

    def _work(self, source: BinaryIO) -> None:
        try:
            for block in _decoded_blocks(source, self.where):
                self.diff_hash.update(block)
                self.size += len(block)
                if not self._put(block):
                    return
            source.read(1)  # a BlobReader checks its digest at EOF
            self._put(_END)
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while not self._pending:
            if self._done:
                return False
            item = self._queue.get()
            if item is _END:
                self._done = True
                return False
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._pending = memoryview(item)
        return True

    def read(self, size: int = -1) -> bytes:
        """Slices of the decoded blocks without an extra copy into a caller's buffer."""
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._pending))
                self._pending = memoryview(b"")
            return b"".join(parts)
        if not self._fill():
            return b""
        piece = bytes(self._pending[:size])
        self._pending = self._pending[size:]
        return piece

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if not self._fill():
            return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> str:
        """Read to EOF; the diff_id of everything the layer held."""
        while self.read(BLOCK):
            pass
        return "sha256:" + self.diff_hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()


class Prefetch(io.RawIOBase):
    """A blob downloading in its own thread into at most ``limit`` bytes of memory, so the
    layers of an image download side by side while the first is being applied.

    ``opener`` opens the blob (in the thread); reads take what has arrived, and an error of
    the download (a digest mismatch at its end) surfaces on the read that reaches it.
    Nothing goes to disk.
    """

    def __init__(self, opener: Callable[[], BinaryIO], limit: int = PREFETCH_BYTES) -> None:
        super().__init__()
        self.limit = limit
        self._blocks: collections.deque[memoryview] = collections.deque()
        self._held = 0
        self._error: BaseException | None = None
        self._done = self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, args=(opener,), daemon=True,
                                        name="unpack-download")
        self._thread.start()

    def _work(self, opener: Callable[[], BinaryIO]) -> None:
        try:
            with opener() as source:
                while block := source.read(BLOCK):
                    with self._cond:
                        while self._held >= self.limit and not self._stop:
                            self._cond.wait()
                        if self._stop:
                            return
                        self._blocks.append(memoryview(block))
                        self._held += len(block)
                        self._cond.notify_all()
        except BaseException as exc:  # handed to the reading thread
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        with self._cond:
            while not self._blocks and not self._done:
                self._cond.wait()
            if not self._blocks:
                if self._error is not None:
                    raise self._error
                return 0
            block = self._blocks[0]
            n = min(len(buffer), len(block))
            buffer[:n] = block[:n]
            if n == len(block):
                self._blocks.popleft()
            else:
                self._blocks[0] = block[n:]
            self._held -= n
            self._cond.notify_all()
            return n

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        super().close()
