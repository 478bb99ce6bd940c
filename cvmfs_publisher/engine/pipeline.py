"""Turning file contents into stored objects: chunk, compress, hash, upload, in parallel.

The caller's thread reads streams (they must be consumed in order); worker threads
compress, hash and store, since the deflate libraries and ``hashlib`` release the GIL.
Files on disk are read by the workers too. A byte budget bounds the data in flight, so
memory does not grow with file size or with the number of files. Small objects, once a
publish has many, go to worker processes instead where the storage allows it
(``procpool``): for them the interpreter lock, not compression, is the limit.

Per object the storage is asked as little as possible: nothing for content the index
knows the storage holds (verified rows, see ``content_index``), and objects smaller than
``CHECK_BEFORE_PUT`` are put without asking first: content addressing makes a put of an
object that exists harmless, and it costs about what the question does (a HEAD on S3).
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
from ..cvmfs.compression import DEFAULT_LEVEL, Compression, deflater, encode
from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..errors import SourceError, StorageError
from ..storage.base import Storage
from .chunking import READ_BLOCK, ChunkPolicy, split
from .content_index import ContentIndex, KnownFile
from .procpool import MAX_SIZE, MIN_FILES, Job, ProcessLane, Slot, Stored, read_file

CHECK_BEFORE_PUT = 1 << 20
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
    """A file whose objects are still being written; ``result()`` waits for them.

    ``known``: the result itself: given up front for files whose objects are stored
    already (a Future per file costs more than the rest of skipping an unchanged file),
    kept by ``result`` for everything else.
    """

    size: int  # as far as known when staged; the stored size is in the result
    whole: Future[tuple[ContentHash, int]] | Slot | None = None
    pieces: list[tuple[int, int, Future[tuple[ContentHash, int]]]] = field(default_factory=list)
    compression: Compression = Compression.ZLIB
    known: StoredFile | None = None

    def result(self) -> StoredFile:
        """Kept once known: catalog placement and the subtree print both ask for it."""
        if self.known is not None:
            return self.known
        if self.whole is not None:
            content_hash, size = self.whole.result()
            self.known = StoredFile(size, content_hash, (), self.compression)
        else:
            chunks = tuple(Chunk(off, n, fut.result()[0]) for off, n, fut in self.pieces)
            self.known = StoredFile(self.size, None, chunks, self.compression)
        return self.known

    def stored(self) -> StoredFile | None:
        """The result if every object was stored, else None (never waits)."""
        futures = [self.whole] if self.whole is not None else [f for _, _, f in self.pieces]
        if all(f.done() and not f.cancelled() and f.exception() is None for f in futures):
            return self.result()
        return None


def completed(content_hash: ContentHash, size: int,
              compression: Compression = Compression.ZLIB) -> PendingFile:
    """A file whose single object is already stored (markers, index hits)."""
    return PendingFile(size, compression=compression,
                       known=StoredFile(size, content_hash, (), compression))


def completed_file(known: KnownFile, size: int) -> PendingFile:
    """A file whose objects the index knows: one object or its chunks."""
    return PendingFile(size, compression=known.compression, known=StoredFile(
        size, known.content_hash, known.chunks, known.compression))


class _ByteBudget:
    """Blocks producers while too many bytes wait for workers (always admits one item)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.waiting = 0
        self.cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self.cond:
            while self.used and self.used + n > self.limit:
                self.waiting += 1
                self.cond.wait()
                self.waiting -= 1
            self.used += n

    def release(self, n: int) -> None:
        with self.cond:
            self.used -= n
            if self.waiting:
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
        preset: str = "zlib",
    ) -> None:
        self.storage = storage
        self.algorithm = algorithm
        self.level = level
        self.preset = preset
        self.deflate = deflater(preset, level)
        self.chunking = chunking
        # S3 waits on requests, not on cores: as many workers as connections
        self.workers = workers or storage.capabilities().parallelism or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cvmfs-obj")
        max_chunk = chunking.max_size if chunking else READ_BLOCK
        self.budget = _ByteBudget((self.workers + 2) * max(max_chunk, 8 << 20))
        self.progress = progress
        self.index = index
        self.stats = PipelineStats()
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._futures: list[Future] = []
        # small files in worker processes, once there are enough (see procpool)
        self._writer = storage.object_writer()
        self._small_files = 0
        self._lane: ProcessLane | None = None
        self._batches = 0  # submitted to the lane and not yet accounted for
        self._settled = threading.Condition(self._lock)

    # -- storing single objects -----------------------------------------------------------

    def _store(self, stored: bytes, content_hash: ContentHash, suffix: Suffix) -> None:
        """Upload unless known to be there (content addressing makes a re-upload harmless)."""
        key = content_hash.object_key(suffix)
        with self._lock:
            known = key in self._known
        if known or (len(stored) >= CHECK_BEFORE_PUT and self._present(key)):
            with self._lock:
                self.stats.objects_skipped += 1
            return
        self.storage.put(key, stored)
        with self._lock:
            self._known.add(key)
            self.stats.objects_written += 1
            self.stats.bytes_written += len(stored)

    def _encode_and_store(self, data: bytes, suffix: Suffix, compression: Compression,
                          counter: str = "objects_reused") -> ContentHash:
        """Compress and upload, unless the content index knows a stored object for it
        (then ``counter`` of the stats counts it)."""
        index = self.index
        if index is not None:
            raw = ContentIndex.key(data)
            found = index.lookup(raw, compression)
            if found is not None:
                known, verified = found
                if verified or self._present(known.object_key(suffix)):
                    if not verified:
                        index.remember(raw, compression, known)  # confirmed by the storage
                    with self._lock:
                        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                    return known
        content_hash, stored = encode(data, self.algorithm, self.level, compression,
                                      self.deflate)
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
        return self._encode_and_store(data, suffix, Compression.ZLIB, "objects_skipped")

    def _submit(self, data: bytes, suffix: Suffix, compression: Compression) -> Future:
        return self._run(lambda: (self._encode_and_store(data, suffix, compression), len(data)),
                         len(data))

    def _run(self, task: Callable[[], tuple[ContentHash, int]], size: int) -> Future:
        """Run ``task`` in a worker; ``size`` bytes of the budget are held until it ends."""
        self.budget.acquire(size)

        def run() -> tuple[ContentHash, int]:
            try:
                return task()
            finally:
                self.budget.release(size)

        future = self.pool.submit(run)
        with self._lock:
            self._futures.append(future)
        return future

    # -- files ------------------------------------------------------------------------------

    def add_path(self, path: Path | str, size_hint: int,
                 compression: Compression = Compression.ZLIB) -> PendingFile:
        """A file on disk: small ones are read by the worker that compresses them, so
        opening and reading thousands of files runs in parallel too."""
        if self.chunking is not None and size_hint > self.chunking.min_size:
            try:
                with open(path, "rb") as stream:
                    return self.add_file(stream, size_hint, compression)
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        lane = self._lane_for(size_hint, compression)
        if lane is not None:
            return PendingFile(size_hint, lane.add(os.fspath(path), size_hint))
        future = self._run(lambda: self._read_and_store(path, size_hint, compression),
                           size_hint)
        return PendingFile(size_hint, future, compression=compression)

    def _lane_for(self, size: int, compression: Compression) -> ProcessLane | None:
        """The worker processes, for a small object once there have been enough of them."""
        if self._writer is None or size > MAX_SIZE or compression is not Compression.ZLIB:
            return None
        self._small_files += 1
        if self._lane is None and self._small_files > MIN_FILES:
            index = self.index
            assert self._writer is not None
            job = Job(self._writer, self.preset, self.level, self.algorithm,
                      str(index.file) if index is not None else None,
                      index.generation if index is not None else 0,
                      index is not None and index.trusted)
            self._lane = ProcessLane(job, os.cpu_count() or 1, self._batch_stored,
                                     self._batch_submitted)
        return self._lane

    def _batch_submitted(self, future: Future[list[Stored]]) -> None:
        with self._lock:
            self._futures.append(future)
            self._batches += 1
        future.add_done_callback(self._batch_settled)

    def _batch_stored(self, results: list[Stored]) -> None:
        """Record what a worker process stored (runs before ``_batch_settled``)."""
        for content_hash, size, raw, written in results:
            known = ContentHash.parse(content_hash)
            with self._lock:
                if written:
                    self.stats.objects_written += 1
                    self.stats.bytes_written += written
                    self._known.add(known.object_key(Suffix.NONE))
                else:
                    self.stats.objects_reused += 1
            if written and self.index is not None:
                self.index.remember(raw, Compression.ZLIB, known)
            self._account(size)

    def _batch_settled(self, _future: Future) -> None:
        with self._settled:
            self._batches -= 1
            self._settled.notify_all()

    def _read_and_store(self, path: Path | str, size_hint: int,
                        compression: Compression) -> tuple[ContentHash, int]:
        data = _read(path, size_hint)
        content_hash = self._encode_and_store(data, Suffix.NONE, compression)
        self._account(len(data))
        return content_hash, len(data)

    def add_known(self, path: Path | str, size: int, known: KnownFile) -> PendingFile | None:
        """A file the index knows unchanged: nothing is read unless its objects are gone.

        Unverified objects are asked about first: for a single object in a worker, which
        reads and stores the file itself if the object is gone. None: store the file anew.
        """
        if known.verified:
            self._reused(len(known.chunks) or 1, size)
            return completed_file(known, size)
        keys = [content_hash.object_key(Suffix.PARTIAL if chunk else Suffix.NONE)
                for content_hash, chunk in known.objects]
        whole = known.content_hash
        if whole is not None:
            def check_or_store() -> tuple[ContentHash, int]:
                if not self._present(keys[0]):
                    return self._read_and_store(path, size, known.compression)
                self._reused(1, size)
                return whole, size

            return PendingFile(size, self._run(check_or_store, size),
                               compression=known.compression)
        if not all(self._present(key) for key in keys):
            return None
        self._reused(len(keys), size)
        return completed_file(known, size)

    def _reused(self, objects: int, size: int) -> None:
        with self._lock:
            self.stats.objects_reused += objects
        self._account(size)

    def add_kept(self, files: int, size: int) -> None:
        """Files of a subtree whose catalog is taken back whole: published, nothing read."""
        with self._lock:
            self.stats.objects_reused += files
        self._account(size, files)

    def unkeep(self, files: int, size: int) -> None:
        """Undo ``add_kept`` in the statistics: those files are being staged after all."""
        with self._lock:
            self.stats.objects_reused -= files
            self.stats.files -= files
            self.stats.bytes_in -= size

    def add_file(
        self, stream: BinaryIO, size_hint: int, compression: Compression = Compression.ZLIB
    ) -> PendingFile:
        """Consume ``stream`` now; its objects are written in the background."""
        policy = self.chunking
        try:
            if policy is None or size_hint <= policy.min_size:
                # Without chunking a file is one object and must be held whole (documented).
                data = stream.read()
                lane = self._lane_for(len(data), compression)
                if lane is not None:
                    return PendingFile(len(data), lane.add(data, len(data)))
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
        if self._lane is not None:
            self._lane.flush()
        with self._lock:
            futures, self._futures = self._futures, []
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None and error is None:
                error = exc
        with self._settled:
            while self._batches:
                self._settled.wait()
        if error is not None:
            if isinstance(error, (StorageError, SourceError)):
                raise error
            raise StorageError(f"writing objects failed: {error}") from error

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)
        if self._lane is not None:
            self._lane.close(cancel)


_read = read_file  # tests count reads through this name
