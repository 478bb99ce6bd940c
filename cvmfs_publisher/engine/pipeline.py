"""Turning file contents into stored objects: chunk, compress, hash, upload, in parallel.

The caller's thread reads (streams must be consumed in order); worker threads compress,
hash and store, since ``zlib`` and ``hashlib`` release the GIL. A byte budget bounds the
data in flight, so memory does not grow with file size or with the number of files.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..cvmfs.catalog import Chunk
from ..cvmfs.compression import DEFAULT_LEVEL, Compression, encode
from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..errors import SourceError, StorageError
from ..storage.base import Storage
from .chunking import READ_BLOCK, ChunkPolicy, split
from .content_index import ContentIndex

DEFAULT_CHUNKING = ChunkPolicy()


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where a regular file's content went: one object, or a list of chunks."""

    size: int
    content_hash: ContentHash | None
    chunks: tuple[Chunk, ...] = ()
    compression: Compression = Compression.ZLIB


@dataclass
class PipelineStats:
    files: int = 0
    bytes_in: int = 0
    objects_written: int = 0
    objects_skipped: int = 0  # already in the storage (compressed, then not uploaded)
    objects_reused: int = 0  # known from the content index (not even compressed)
    bytes_written: int = 0


@dataclass
class PendingFile:
    """A file whose objects are still being written; ``result()`` waits for them."""

    size: int  # as far as known when staged; the stored size is in the result
    whole: Future[tuple[ContentHash, int]] | None = None
    pieces: list[tuple[int, int, Future[tuple[ContentHash, int]]]] = field(default_factory=list)
    compression: Compression = Compression.ZLIB

    def result(self) -> StoredFile:
        if self.whole is not None:
            content_hash, size = self.whole.result()
            return StoredFile(size, content_hash, (), self.compression)
        chunks = tuple(Chunk(off, n, fut.result()[0]) for off, n, fut in self.pieces)
        return StoredFile(self.size, None, chunks, self.compression)


def completed(content_hash: ContentHash, size: int) -> PendingFile:
    """A file whose single object is already stored (markers, index hits)."""
    future: Future[tuple[ContentHash, int]] = Future()
    future.set_result((content_hash, size))
    return PendingFile(size, future)


class _ByteBudget:
    """Blocks producers while too many bytes wait for workers (always admits one item)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self.cond:
            while self.used and self.used + n > self.limit:
                self.cond.wait()
            self.used += n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            self.cond.notify_all()


class ObjectPipeline:
    def __init__(
        self,
        storage: Storage,
        *,
        algorithm: Algorithm = Algorithm.SHA1,
        level: int = DEFAULT_LEVEL,
        chunking: ChunkPolicy | None = DEFAULT_CHUNKING,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        index: ContentIndex | None = None,
    ) -> None:
        self.storage = storage
        self.algorithm = algorithm
        self.level = level
        self.chunking = chunking
        self.workers = workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cvmfs-obj")
        max_chunk = chunking.max_size if chunking else READ_BLOCK
        self.budget = _ByteBudget((self.workers + 2) * max(max_chunk, 8 << 20))
        self.progress = progress
        self.index = index
        self.stats = PipelineStats()
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._futures: list[Future[tuple[ContentHash, int]]] = []

    # -- storing single objects -----------------------------------------------------------

    def _store(self, stored: bytes, content_hash: ContentHash, suffix: Suffix) -> None:
        """Upload unless already there: content addressing makes the check race-free."""
        key = content_hash.object_key(suffix)
        if self._present(key):
            with self._lock:
                self.stats.objects_skipped += 1
            return
        self.storage.put(key, stored)
        with self._lock:
            self._known.add(key)
            self.stats.objects_written += 1
            self.stats.bytes_written += len(stored)

    def _encode_and_store(self, data: bytes, suffix: Suffix,
                          compression: Compression) -> ContentHash:
        """Compress and upload, unless the content index knows a stored object for it."""
        index = self.index
        if index is not None:
            raw = ContentIndex.key(data)
            known = index.lookup(raw, compression)
            if known is not None and self._present(known.object_key(suffix)):
                with self._lock:
                    self.stats.objects_reused += 1
                return known
        content_hash, stored = encode(data, self.algorithm, self.level, compression)
        self._store(stored, content_hash, suffix)
        if index is not None:
            index.remember(raw, compression, content_hash)
        return content_hash

    def _present(self, key: str) -> bool:
        with self._lock:
            if key in self._known:
                return True
        if self.storage.exists(key):
            with self._lock:
                self._known.add(key)
            return True
        return False

    def store_now(self, data: bytes, suffix: Suffix) -> ContentHash:
        """Encode and store one object in the calling thread (catalogs, history, ...)."""
        content_hash, stored = encode(data, self.algorithm, self.level)
        self._store(stored, content_hash, suffix)
        return content_hash

    def _submit(self, data: bytes, suffix: Suffix, compression: Compression) -> Future:
        return self._submit_producer(lambda: data, len(data), suffix, compression)

    def _submit_producer(self, produce: Callable[[], bytes], size: int, suffix: Suffix,
                         compression: Compression, account: bool = False) -> Future:
        """Run produce -> encode -> store in a worker; ``size`` reserves the byte budget."""
        self.budget.acquire(size)

        def task() -> tuple[ContentHash, int]:
            try:
                data = produce()
                content_hash = self._encode_and_store(data, suffix, compression)
                if account:
                    self._account(len(data))
                return content_hash, len(data)
            finally:
                self.budget.release(size)

        future = self.pool.submit(task)
        with self._lock:
            self._futures.append(future)
        return future

    # -- files ------------------------------------------------------------------------------

    def add_path(self, path: Path, size_hint: int,
                 compression: Compression = Compression.ZLIB) -> PendingFile:
        """A file on disk: small ones are read by the worker that compresses them, so
        opening and reading thousands of files runs in parallel too."""
        if self.chunking is not None and size_hint > self.chunking.min_size:
            try:
                with open(path, "rb") as stream:
                    return self.add_file(stream, size_hint, compression)
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror}") from None

        def read() -> bytes:
            try:
                return path.read_bytes()
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror}") from None

        future = self._submit_producer(read, size_hint, Suffix.NONE, compression, account=True)
        return PendingFile(size_hint, future, compression=compression)

    def add_file(
        self, stream: BinaryIO, size_hint: int, compression: Compression = Compression.ZLIB
    ) -> PendingFile:
        """Consume ``stream`` now; its objects are written in the background."""
        policy = self.chunking
        try:
            if policy is None or size_hint <= policy.min_size:
                # Without chunking a file is one object and must be held whole (documented).
                data = stream.read()
                pending = PendingFile(len(data), self._submit(data, Suffix.NONE, compression),
                                      compression=compression)
                self._account(len(data))
                return pending
            return self._add_chunked(stream, policy, compression)
        except OSError as exc:
            raise SourceError(f"cannot read file content: {exc.strerror or exc}") from None

    def _add_chunked(
        self, stream: BinaryIO, policy: ChunkPolicy, compression: Compression
    ) -> PendingFile:
        pending = PendingFile(0, compression=compression)
        first: bytes | None = None
        offset = 0
        for piece in split(stream.read, policy):
            if first is None:
                first = piece  # a sole piece is stored as a whole file, so wait for a second
                continue
            if not pending.pieces:
                self._add_piece(pending, first, 0, compression)
                offset = len(first)
            self._add_piece(pending, piece, offset, compression)
            offset += len(piece)
        if first is None:
            first = b""
        if not pending.pieces:
            pending.whole = self._submit(first, Suffix.NONE, compression)
            pending.size = len(first)
            self._account(len(first))
        else:
            pending.size = offset
            self._account(0)
        return pending

    def _add_piece(self, pending: PendingFile, piece: bytes, offset: int,
                   comp: Compression) -> None:
        pending.pieces.append((offset, len(piece), self._submit(piece, Suffix.PARTIAL, comp)))
        self._account(len(piece), files=0)

    def _account(self, nbytes: int, files: int = 1) -> None:
        with self._lock:
            self.stats.files += files
            self.stats.bytes_in += nbytes
        if self.progress is not None:
            self.progress(files, nbytes)

    # -- lifecycle ----------------------------------------------------------------------------

    def drain(self) -> None:
        """Wait for every object; re-raise the first failure (e.g. a storage error)."""
        with self._lock:
            futures, self._futures = self._futures, []
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        if error is not None:
            if isinstance(error, (StorageError, SourceError)):
                raise error
            raise StorageError(f"writing objects failed: {error}") from error

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)
