"""The storage interface: the only code that touches a repository's bytes.

Modelled on restic's backend: a handful of methods whose contracts are written down, so
the format and engine layers above never care whether bytes live in a directory, behind
HTTP or in a bucket.

Keys are ``/``-separated paths relative to the repository root, exactly as a client
requests them below ``<server>/cvmfs/<fqrn>/``: ``.cvmfspublished``, ``data/ab/cdef…C``.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import StorageError

MANIFEST = ".cvmfspublished"
WHITELIST = ".cvmfswhitelist"
REFLOG = ".cvmfsreflog"
MASTER_REPLICA = ".cvmfs_master_replica"
MASTER_REPLICA_TEXT = b"This file marks the repository as replicatable to stratum 1 servers\n"


@dataclass(frozen=True)
class LockInfo:
    """Who holds a publish lock, for "busy" messages and ``unlock --force``."""

    owner: str
    host: str
    pid: int
    since: float
    expires: float | None = None


class Storage(abc.ABC):
    """Contract shared by all backends.

    * ``put`` is atomic per key: a reader sees the old bytes or all of the new ones,
      never a prefix. Content-addressed keys may be written again (same bytes).
    * ``get`` raises ``ObjectNotFound`` for a missing key and ``StorageError`` otherwise.
    * ``delete`` of a missing key is not an error.
    * Nothing is retried here; wrappers or the client library do that.
    """

    read_only = False

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Human-readable location for messages (a path, URL or s3:// address)."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes) -> None:
        self._refuse_write()

    def delete(self, key: str) -> None:
        self._refuse_write()

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys below ``prefix``; backends without listing raise StorageError."""
        raise StorageError(f"{self.location} cannot list its contents")

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Keys with their stored size in bytes (-1 where a backend cannot tell cheaply)."""
        for key in self.list(prefix):
            yield key, -1

    def flush(self) -> None:  # noqa: B027 - deliberately optional
        """Make every earlier ``put`` durable; called once before the manifest is written."""

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        """Hold the repository's exclusive publish lock; ``RepositoryBusy`` if taken."""
        self._refuse_write()
        yield

    def lock_holder(self) -> LockInfo | None:
        return None

    def break_lock(self) -> LockInfo | None:
        """Remove a stale lock left by a dead publisher; returns what was removed."""
        self._refuse_write()
        return None

    def public_url(self) -> str | None:
        """Where clients can read this repository over HTTP, when the storage knows it."""
        return None

    def _refuse_write(self) -> None:
        raise StorageError(f"{self.location} is read-only")
