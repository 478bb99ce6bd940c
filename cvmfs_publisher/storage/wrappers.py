"""Behaviour around any Storage, as restic wraps its backends (``backend/retry``, ``dryrun``).

A wrapper is a Storage that holds another one (``inner``) and changes one thing about it;
wrappers stack, and ``unwrap()`` reaches the storage that really holds the bytes. Nothing
here knows which backend it wraps: a wrapper asks ``inner.capabilities()`` like anyone.

- ``RetryingStorage``: retries failed idempotent operations with exponential back-off.
- ``DryRunStorage``: reads go through, writes are recorded and not performed.
- ``FaultInjectingStorage``: calls a function before and after every write, so a test can
  fail, kill or stop the process at an exact point.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from ..errors import ObjectNotFound, RepositoryBusy, StorageError
from .base import MANIFEST, Capabilities, LockInfo, ObjectStream, Storage
from .key_names import check_key, check_put_key, is_object_key

log = logging.getLogger(__name__)

T = TypeVar("T")


class StorageWrapper(Storage):
    """Delegates every method to ``inner``; subclasses override what they change."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def unwrap(self) -> Storage:
        """The innermost storage, below every wrapper."""
        inner = self.inner
        return inner.unwrap() if isinstance(inner, StorageWrapper) else inner

    @property  # type: ignore[override]
    def read_only(self) -> bool:
        return self.inner.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self.inner.read_only = value

    @property
    def location(self) -> str:
        return self.inner.location

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def open(self, key: str) -> ObjectStream:
        return self.inner.open(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        self.inner.put_manifest(data, previous)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_many(self, keys: list[str]) -> None:
        self.inner.delete_many(keys)

    def object_writer(self) -> Callable[[str, bytes], None] | None:
        """Never the inner storage's: whatever a wrapper does to writes must not be
        bypassed by another process writing objects directly."""
        return None

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        return self.inner.list_with_sizes(prefix)

    def flush(self) -> None:
        self.inner.flush()

    def lock(self, owner: str, *, wait: bool = False) -> contextlib.AbstractContextManager[None]:
        return self.inner.lock(owner, wait=wait)

    def lock_holder(self) -> LockInfo | None:
        return self.inner.lock_holder()

    def break_lock(self) -> LockInfo | None:
        return self.inner.break_lock()

    def public_url(self) -> str | None:
        return self.inner.public_url()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def check_locking(self) -> str | None:
        return self.inner.check_locking()


# -- retries ----------------------------------------------------------------------------------


class RetryingStorage(StorageWrapper):
    """Retries idempotent operations that failed with ``StorageError``.

    Retried: ``get``, ``open``, ``exists``, ``lock_holder``, ``delete(_many)``, ``put`` of
    content-addressed objects (same name, same bytes), and ``list`` until it has produced
    its first key (a listing cannot resume where it failed). Never retried:
    ``ObjectNotFound`` and ``RepositoryBusy`` (answers, not failures), ``put`` of named
    files such as the reflog (a late retry could replace a newer version), ``put_manifest``
    (the switch must happen once, under its own condition), ``lock`` and ``break_lock``.
    Waits ``delay``, then twice as long each time up to ``max_delay``; ``attempts`` counts
    the first try. ``sleep`` is replaceable so tests need not wait.
    """

    def __init__(self, inner: Storage, *, attempts: int = 4, delay: float = 0.5,
                 max_delay: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.delay = delay
        self.max_delay = max_delay
        self.sleep = sleep

    def _retry(self, what: str, function: Callable[[], T]) -> T:
        delay = self.delay
        for attempt in range(1, self.attempts):
            try:
                return function()
            except ObjectNotFound:
                raise
            except StorageError as exc:  # RepositoryBusy is no StorageError: never caught
                log.warning("%s failed (attempt %d of %d), retrying in %.1f s: %s",
                            what, attempt, self.attempts, delay, exc)
            self.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        return function()  # the last attempt: its failure is the caller's

    def get(self, key: str) -> bytes:
        return self._retry(f"GET {key}", lambda: self.inner.get(key))

    def open(self, key: str) -> ObjectStream:
        return self._retry(f"GET {key}", lambda: self.inner.open(key))

    def exists(self, key: str) -> bool:
        return self._retry(f"HEAD {key}", lambda: self.inner.exists(key))

    def lock_holder(self) -> LockInfo | None:
        return self._retry("reading the lock", self.inner.lock_holder)

    def put(self, key: str, data: bytes) -> None:
        if not is_object_key(key):
            self.inner.put(key, data)
            return
        self._retry(f"PUT {key}", lambda: self.inner.put(key, data))

    def delete(self, key: str) -> None:
        self._retry(f"DELETE {key}", lambda: self.inner.delete(key))

    def delete_many(self, keys: list[str]) -> None:
        self._retry(f"DELETE {len(keys)} keys", lambda: self.inner.delete_many(keys))

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._listing(prefix, self.inner.list)

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        return self._listing(prefix, self.inner.list_with_sizes)

    def _listing(self, prefix: str, lister: Callable[[str], Iterator[T]]) -> Iterator[T]:
        def start() -> tuple[Iterator[T], list[T]]:
            items = iter(lister(prefix))  # generators do their first request on next()
            return items, list(itertools.islice(items, 1))

        items, head = self._retry(f"LIST {prefix or '/'}", start)
        yield from head
        yield from items


# -- dry runs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedWrite:
    """A write a dry run did not perform: ``op`` is put, put_manifest or delete."""

    op: Literal["put", "put_manifest", "delete"]
    key: str
    size: int


class DryRunStorage(StorageWrapper):
    """Reads go through; ``put``, ``put_manifest`` and ``delete`` are only recorded.

    So that a dry run behaves like the real one, reads see the run's own writes (their
    bytes are kept in memory) and deletes; ``put_manifest`` still checks ``previous``
    against the manifest it would replace. ``lock`` writes nothing: it only refuses when
    another publisher holds the real lock. ``writes`` lists what would have been done,
    in order; ``location`` ends in "(dry run)". Thread-safe.
    """

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.writes: list[RecordedWrite] = []
        self._pending: dict[str, bytes | None] = {}  # None: deleted in this run
        self._mutex = threading.Lock()

    @property  # type: ignore[override]
    def read_only(self) -> bool:
        return False

    @read_only.setter
    def read_only(self, value: bool) -> None:
        """Nothing to change: a dry run writes nothing either way."""

    @property
    def location(self) -> str:
        """Says "dry run" in every message, and keeps caches keyed by location apart."""
        return f"{self.inner.location} (dry run)"

    def _record(self, op: Literal["put", "put_manifest", "delete"], key: str,
                data: bytes | None) -> None:
        with self._mutex:
            self.writes.append(RecordedWrite(op, key, -1 if data is None else len(data)))
            self._pending[key] = data

    def _pending_value(self, key: str) -> tuple[bool, bytes | None]:
        with self._mutex:
            return key in self._pending, self._pending.get(key)

    def get(self, key: str) -> bytes:
        known, data = self._pending_value(check_key(key))
        if not known:
            return self.inner.get(key)
        if data is None:
            raise ObjectNotFound(f"{key} was deleted in this dry run of {self.location}")
        return data

    def open(self, key: str) -> ObjectStream:
        known, _ = self._pending_value(check_key(key))
        return Storage.open(self, key) if known else self.inner.open(key)

    def exists(self, key: str) -> bool:
        known, data = self._pending_value(check_key(key))
        return data is not None if known else self.inner.exists(key)

    def put(self, key: str, data: bytes) -> None:
        self._record("put", check_put_key(key), data)

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        try:
            current: bytes | None = self.get(MANIFEST)
        except ObjectNotFound:
            current = None
        if current != previous:
            raise StorageError(f"{self.location}: the manifest changed since this publish "
                               "started; nothing was published")
        self._record("put_manifest", MANIFEST, data)

    def delete(self, key: str) -> None:
        self._record("delete", check_key(key), None)

    def delete_many(self, keys: list[str]) -> None:
        Storage.delete_many(self, keys)  # each recorded

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        with self._mutex:
            pending = {k: v for k, v in self._pending.items() if k.startswith(prefix)}
        for key, size in self.inner.list_with_sizes(prefix):
            if key not in pending:
                yield key, size
        for key, data in sorted(pending.items()):
            if data is not None:
                yield key, len(data)

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _size in self.list_with_sizes(prefix):
            yield key

    def flush(self) -> None:
        """Nothing was written, so nothing to make durable."""

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        """Nothing is locked; a real holder is reported (or waited for) as by the real lock."""
        while (holder := self.inner.lock_holder()) is not None:
            if not wait:
                raise RepositoryBusy(f"repository {self.location} is busy: {holder.owner} "
                                     f"(pid {holder.pid} on {holder.host}) holds its lock")
            time.sleep(0.5)
        yield

    def break_lock(self) -> LockInfo | None:
        """Reports the holder that ``unlock --force`` would remove, and removes nothing."""
        return self.inner.lock_holder()


# -- fault injection --------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteEvent:
    """One side of one write: ``number`` counts writes from 1 in the order they started."""

    number: int
    op: Literal["put", "put_manifest", "delete"]
    key: str
    when: Literal["before", "after"]


class WriteSequence:
    """Numbers and serializes writes; shared, it numbers those of several storages as one."""

    def __init__(self) -> None:
        self.count = 0
        self.mutex = threading.Lock()


class FaultInjectingStorage(StorageWrapper):
    """Calls ``on_write(event)`` just before and just after every write.

    Writes are ``put``, ``put_manifest`` and ``delete``; the callback decides what
    happens: return (nothing), raise ``StorageError`` (a failing storage), ``os._exit``
    (a crash), ``SIGSTOP`` (a hung publisher that keeps its lock). Writes are serialized,
    so "after write N" means exactly N writes are complete and none has started since.
    Storages given the same ``sequence`` share one numbering (a command may open more
    than one); ``writes`` is the number of writes started so far.
    """

    def __init__(self, inner: Storage, on_write: Callable[[WriteEvent], None], *,
                 sequence: WriteSequence | None = None) -> None:
        super().__init__(inner)
        self.on_write = on_write
        self.sequence = sequence or WriteSequence()

    @property
    def writes(self) -> int:
        return self.sequence.count

    def _write(self, op: Literal["put", "put_manifest", "delete"], key: str,
               perform: Callable[[], None]) -> None:
        with self.sequence.mutex:
            self.sequence.count += 1
            number = self.sequence.count
            self.on_write(WriteEvent(number, op, key, "before"))
            perform()
            self.on_write(WriteEvent(number, op, key, "after"))

    def put(self, key: str, data: bytes) -> None:
        self._write("put", key, lambda: self.inner.put(key, data))

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        self._write("put_manifest", MANIFEST, lambda: self.inner.put_manifest(data, previous))

    def delete(self, key: str) -> None:
        self._write("delete", key, lambda: self.inner.delete(key))

    def delete_many(self, keys: list[str]) -> None:
        Storage.delete_many(self, keys)  # one numbered write per key
