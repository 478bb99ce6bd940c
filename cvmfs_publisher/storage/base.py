"""The storage interface: the only code that touches a repository's bytes.

Modelled on restic's backend (``internal/backend/backend.go``): a handful of methods whose
contracts are written down here, so the format and engine layers above never care whether
bytes live in a directory, behind HTTP or in a bucket. Behaviour that is not about where
bytes live (retries, dry runs, fault injection) is added by wrappers (``wrappers.py``), not
inside each backend; what a backend can do is asked with ``capabilities()``, never with
``isinstance``.

Keys are ``/``-separated paths relative to the repository root, exactly as a client
requests them below ``<server>/cvmfs/<fqrn>/``: ``.cvmfspublished``, ``data/ab/cdef…C``.
Every backend passes them through ``key_names.check_key`` first, so a malformed key raises
``InvalidPath`` (a usage error, never retried) before any I/O.

Thread safety: the engine calls ``get``, ``open``, ``exists`` and ``put`` from its worker
threads at the same time; every backend allows that. ``lock`` and ``put_manifest`` are
called from one thread.
"""

from __future__ import annotations

import abc
import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

from ..errors import StorageError

MANIFEST = ".cvmfspublished"
WHITELIST = ".cvmfswhitelist"
REFLOG = ".cvmfsreflog"
MASTER_REPLICA = ".cvmfs_master_replica"
MASTER_REPLICA_TEXT = b"This file marks the repository as replicatable to stratum 1 servers\n"

LockKind = Literal["flock", "lease", "none"]
BLOCK = 1 << 20  # how much an ObjectStream hands out per iteration step


@dataclass(frozen=True)
class LockInfo:
    """Who holds a publish lock, for "busy" messages and ``unlock --force``."""

    owner: str
    host: str
    pid: int
    since: float
    expires: float | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a storage can do, for the layers above to size and warn without ``isinstance``.

    ``parallelism``: how many requests are worth running at once (S3: its connection
    pool), used to size the engine's worker pool; None when the storage has no opinion and
    the number of cores decides. ``conditional_writes``: ``put_manifest`` is a real
    compare-and-swap (False where it is emulated check-then-act, or impossible).
    ``lock``: how publishers are kept apart ("flock": a kernel file lock, dropped when its
    holder dies; "lease": an object renewed by its holder, taken over once stale; "none":
    read-only storage). ``listable``: ``list`` works (needed by garbage collection).
    """

    parallelism: int | None = None
    conditional_writes: bool = False
    lock: LockKind = "none"
    listable: bool = False


class RawStream(Protocol):
    """What ``ObjectStream`` reads from: an open binary file or a backend's body adapter."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seekable(self) -> bool: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def close(self) -> None: ...


class ObjectStream:
    """The bytes of one stored object, read front to back without holding them in memory.

    ``size`` is the stored size in bytes when the backend knows it up front (a file's
    length, a ``Content-Length``), else None. Use it as a context manager: ``close``
    releases the file or connection. Reads raise ``StorageError`` on I/O failures: ``raw``
    raises it itself or an ``OSError``, which is translated here.
    """

    def __init__(self, raw: RawStream, size: int | None, name: str = "object") -> None:
        self.raw = raw
        self.size = size
        self.name = name

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for -1); ``b""`` at the end."""
        try:
            return self.raw.read(n)
        except OSError as exc:
            raise StorageError(f"cannot read {self.name}: {exc.strerror or exc}") from None

    def skip(self, n: int) -> None:
        """Move ``n`` bytes ahead: a seek where the stream allows it, else read and drop."""
        if n <= 0:
            return
        if self.raw.seekable():
            self.raw.seek(n, io.SEEK_CUR)
            return
        while n > 0:
            block = self.read(min(n, BLOCK))
            if not block:
                return
            n -= len(block)

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK):
            yield block

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class Storage(abc.ABC):
    """Contract shared by all backends; each method's docstring is part of it.

    Errors: ``ObjectNotFound`` (a ``StorageError``) for a missing key where a method says
    so; ``StorageError`` for every other failure of the storage itself, with a one-line
    message naming the location; ``RepositoryBusy`` only from ``lock`` and
    ``break_lock``; ``InvalidPath`` for keys no repository has. Nothing is retried here
    beyond what a client library does on its own; ``RetryingStorage`` adds retries.
    ``read_only`` storages raise ``StorageError`` ("read-only") from every write.
    """

    read_only = False

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Human-readable location for messages (a path, URL or s3:// address)."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The whole stored object.

        Raises ``ObjectNotFound`` if the key does not exist, ``StorageError`` otherwise.
        Idempotent; never returns a partly written object (see ``put``).
        """

    def open(self, key: str) -> ObjectStream:
        """The stored object as a stream, for objects too big to hold in memory.

        Same errors as ``get``, raised by ``open`` itself for a missing key; reads may
        raise ``StorageError``. This default reads the whole object with ``get``;
        backends that can stream override it.
        """
        data = self.get(key)
        return ObjectStream(io.BytesIO(data), len(data), key)

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key exists; ``StorageError`` when the storage cannot tell."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there.

        Atomic per key: a reader sees the old bytes or all of the new ones, never a
        prefix. Idempotent: content-addressed keys are written again with the same bytes
        when in doubt. Not durable until ``flush``. Refuses the manifest key with
        ``InvalidPath``: only ``put_manifest`` switches revisions.
        """
        self._refuse_write()

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        """Replace ``.cvmfspublished``: the single atomic switch to a new revision.

        ``previous`` is the manifest the caller built on (None: it expects none, as for
        a new repository). Where the backend can, the switch is conditional on it and a
        mismatch raises ``StorageError`` ("the manifest changed since this publish
        started"), so a publisher can never replace a revision it did not see.
        ``capabilities().conditional_writes`` says whether that check is atomic. Called
        with the publish lock held, after ``flush``; never retried.
        """
        self._refuse_write()

    def delete(self, key: str) -> None:
        """Remove the key; a missing key is not an error. Idempotent."""
        self._refuse_write()

    def delete_many(self, keys: list[str]) -> None:
        """Remove every key, as ``delete`` does, in as few requests as the storage allows.

        Tries every key; then raises ``StorageError`` naming how many could not be removed
        and the first reason. Idempotent. This default deletes one key at a time.
        """
        failed: list[StorageError] = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError as exc:
                failed.append(exc)
        if failed:
            raise StorageError(f"{len(failed)} of {len(keys)} deletions failed, the first: "
                               f"{failed[0]}")

    def list(self, prefix: str = "") -> Iterator[str]:
        """Repository keys starting with ``prefix``, each once, in no promised order.

        Hides what is not part of the repository: staging files (``data/txn/*``), the
        lock or lease object, anything that is not a valid key. Keys written or deleted
        while listing may or may not appear. Backends without listing raise
        ``StorageError`` (see ``capabilities().listable``).
        """
        raise StorageError(f"{self.location} cannot list its contents")

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """``list`` with each key's stored size in bytes (-1 where it is not cheap to tell)."""
        for key in self.list(prefix):
            yield key, -1

    def object_writer(self) -> Callable[[str, bytes], None] | None:
        """``put`` for content-addressed objects as a picklable function that another
        process may call (the engine stores small files from worker processes), or None:
        then every write goes through this object. Wrappers keep this default, so what
        they do to writes (fault injection, dry runs) is never bypassed."""
        return None

    def flush(self) -> None:  # noqa: B027 - deliberately optional
        """Make every earlier ``put`` durable; called once before the manifest is written."""

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        """Hold the repository's exclusive publish lock for the ``with`` block.

        ``owner`` describes the holder for others' "busy" messages. Raises
        ``RepositoryBusy`` (naming the holder) if another publisher holds it, or waits
        for it with ``wait``. Not reentrant. A holder that dies never blocks others for
        good: the kernel drops an flock, a lease expires.
        """
        self._refuse_write()
        yield

    def lock_holder(self) -> LockInfo | None:
        """Who holds the publish lock now, or None. Read-only; a snapshot, racy by nature."""
        return None

    def break_lock(self) -> LockInfo | None:
        """Remove a stale lock left by a dead publisher; returns what was removed.

        Raises ``RepositoryBusy`` where the storage can tell the holder is alive.
        """
        self._refuse_write()
        return None

    def public_url(self) -> str | None:
        """Where clients can read this repository over HTTP, when the storage knows it."""
        return None

    def capabilities(self) -> Capabilities:
        """What this storage can do (see ``Capabilities``); cheap, no I/O."""
        return Capabilities()

    def check_locking(self) -> str | None:
        """A warning when this storage cannot keep concurrent publishers apart, else None.

        May do I/O (S3 probes whether the server honours conditional writes); ``init``
        calls it once so the warning comes before anyone relies on the lock.
        """
        return None

    def _refuse_write(self) -> None:
        raise StorageError(f"{self.location} is read-only")
