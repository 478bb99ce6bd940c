"""Copying objects from a source to a replica in parallel, each hash-checked on the way.

Every object is downloaded with ``CheckedObject.fetch``: at most the bytes its reference
promises are read, and nothing is written unless the stored bytes hash to the object's
name. Downloads and uploads run in a thread pool (``workers``); retries with back-off are
the transport's (urllib3 for HTTP sources, botocore for S3 replicas). The first failure
stops new work; the caller gets it from ``wait``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..cvmfs.compression import Compression
from ..cvmfs.hashes import ContentHash, Suffix
from ..engine.reachability import ObjectRef
from ..engine.reader import CheckedObject
from ..errors import FormatError, ObjectNotFound
from ..storage.base import Storage

# progress(objects copied, bytes copied, objects found already there), as increments
Progress = Callable[[int, int, int], None]


class Presence:
    """Whether the replica holds an object.

    With ``listed`` (one listing of ``data/``, taken when the replica has no manifest yet:
    a first snapshot, or one resumed after an interruption) lookups cost nothing; otherwise
    each lookup is one ``exists`` (a stat, or a HEAD), done in the worker that needs it.
    """

    def __init__(self, replica: Storage, listed: Iterable[str] | None = None) -> None:
        self.replica = replica
        self.listed = set(listed) if listed is not None else None
        self._mutex = threading.Lock()

    def has(self, key: str) -> bool:
        if self.listed is not None:
            with self._mutex:
                return key in self.listed
        return self.replica.exists(key)

    def add(self, key: str) -> None:
        if self.listed is not None:
            with self._mutex:
                self.listed.add(key)


@dataclass
class Counts:
    copied: int = 0
    skipped: int = 0
    bytes: int = 0


class ObjectCopier:
    """A thread pool that copies objects; at most ``4 * workers`` jobs wait at a time."""

    def __init__(self, source: Storage, replica: Storage, presence: Presence, workers: int,
                 limit: Callable[[int | None], int], progress: Progress | None = None) -> None:
        self.source = source
        self.replica = replica
        self.presence = presence
        self.limit = limit
        self.progress = progress
        self.counts = Counts()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="replicate")
        self._slots = threading.BoundedSemaphore(4 * max(1, workers))
        self._mutex = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._error: BaseException | None = None
        self._queued: set[str] = set()

    # -- jobs ---------------------------------------------------------------------------------

    def copy(self, ref: ObjectRef) -> None:
        """Copy one object of a catalog unless the replica has it (each key once per run)."""
        self.copy_object(ref.content_hash, ref.suffix, ref.size, ref.compression)

    def copy_object(self, content_hash: ContentHash, suffix: Suffix, size: int | None,
                    compression: Compression = Compression.ZLIB) -> None:
        key = content_hash.object_key(suffix)
        if key in self._queued:
            return
        self._queued.add(key)
        self._submit(self._copy, content_hash, suffix, size, compression)

    def put(self, key: str, data: bytes | Path) -> None:
        """Store bytes (or a local file's bytes) the run already checked, unless present."""
        if key in self._queued:
            return
        self._queued.add(key)
        self._submit(self._put, key, data)

    def _copy(self, content_hash: ContentHash, suffix: Suffix, size: int | None,
              compression: Compression) -> None:
        key = content_hash.object_key(suffix)
        if self._present(key):
            return
        try:
            with CheckedObject.fetch(self.source, content_hash, suffix, self.limit(size),
                                     compression) as stored:
                stored.spool.seek(0)
                data = stored.spool.read()
        except ObjectNotFound:
            raise ObjectNotFound(f"{key} is missing at {self.source.location}") from None
        except FormatError as exc:
            raise FormatError(f"{key}: {exc}") from None
        self._store(key, data)

    def _put(self, key: str, data: bytes | Path) -> None:
        if self._present(key):
            return
        self._store(key, data.read_bytes() if isinstance(data, Path) else data)

    def _present(self, key: str) -> bool:
        if not self.presence.has(key):
            return False
        with self._mutex:
            self.counts.skipped += 1
        if self.progress is not None:
            self.progress(0, 0, 1)
        return True

    def _store(self, key: str, data: bytes) -> None:
        self.replica.put(key, data)
        self.presence.add(key)
        with self._mutex:
            self.counts.copied += 1
            self.counts.bytes += len(data)
        if self.progress is not None:
            self.progress(1, len(data), 0)

    # -- the pool -----------------------------------------------------------------------------

    def _submit(self, function: Callable[..., None], *args: object) -> None:
        self.check()
        self._slots.acquire()
        try:
            future = self._pool.submit(function, *args)
        except BaseException:
            self._slots.release()
            raise
        with self._mutex:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        self._slots.release()
        with self._mutex:
            self._pending.discard(future)
            if not future.cancelled() and future.exception() is not None and \
                    self._error is None:
                self._error = future.exception()

    def check(self) -> None:
        """Raise the first failure of any job so far."""
        with self._mutex:
            error = self._error
        if error is not None:
            raise error

    def wait(self) -> None:
        """Wait for every job; raise the first failure (jobs not started yet are dropped)."""
        while True:
            with self._mutex:
                pending = list(self._pending)
            if not pending:
                break
            for future in pending:
                try:
                    future.result()
                except BaseException as exc:
                    with self._mutex:
                        self._pending.discard(future)
                        if self._error is None and not future.cancelled():
                            self._error = exc
                    for other in pending:
                        other.cancel()
        self.check()

    def close(self) -> None:
        """Drop queued jobs and wait for the running ones (each is one object)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
