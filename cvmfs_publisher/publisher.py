"""The one publishing interface every front end uses (CLI, CI, watched folder, unpacker).

A session is a transaction: stage any number of replacements, removals and tag edits, then
commit them as one signed revision, or leave the ``with`` block without committing and
nothing is published. Backends: the native engine (``backends/native.py``) and the
classic ``cvmfs_server`` driver (``backends/cvmfs_server``). The interface owns its types,
so front ends and the classic backend never import the engine; only
``repositories.open_publisher`` decides which backend serves a configured repository.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from .entries import Entry, Kind, StoredContent
from .storage.base import LockInfo

Progress = Callable[[int, int], None]  # (files, bytes) just handed over


@dataclass
class CommitResult:
    """What one committed revision took; backends fill what they can measure."""

    revision: int
    root_hash: str
    tag: str | None
    files: int = 0
    bytes_in: int = 0
    objects_written: int = 0
    objects_skipped: int = 0
    objects_reused: int = 0
    bytes_written: int = 0
    catalogs_written: list[str] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what the backend could not keep


@dataclass(frozen=True)
class TagInfo:
    """A named revision."""

    name: str
    revision: int
    root_hash: str
    timestamp: int
    description: str = ""


@dataclass
class GcResult:
    """What garbage collection deleted (or, in a dry run, would delete)."""

    dry_run: bool
    kept_revisions: list[int] = field(default_factory=list)
    dropped_tags: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)
    garbage_bytes: int = 0
    reachable: int = 0
    output: str = ""  # the backend's own report, where it has one
    # each kept revision and why: {"revision", "root_hash", "timestamp", "reasons"}
    kept: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class ResignResult:
    fqrn: str
    expires: dt.datetime | None
    fingerprints: list[str]


@dataclass(frozen=True)
class ClientSettings:
    """What a CVMFS client needs: where to read, and the master public key to trust."""

    fqrn: str
    server_url: str | None
    public_key: Path


@dataclass(frozen=True)
class PathInfo:
    """One path of a published tree, as a mounted client would ``lstat`` it."""

    name: str
    kind: Kind
    mode: int  # permission bits (07777)
    uid: int
    gid: int
    mtime: int
    size: int = 0
    target: str = ""  # symlink target
    nlink: int = 1
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device

    @property
    def is_directory(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def is_regular(self) -> bool:
        return self.kind is Kind.FILE

    @property
    def is_symlink(self) -> bool:
        return self.kind is Kind.SYMLINK


class TreeView(abc.ABC):
    """Read access to one published revision, for change detection and checks.

    Paths are repository paths (``""`` is the root, else ``/a/b``). A view never shows
    changes staged in a session that has not committed.
    """

    @abc.abstractmethod
    def lookup(self, path: str) -> PathInfo | None: ...

    @abc.abstractmethod
    def listdir(self, path: str) -> list[PathInfo]:
        """Children of a directory; ``PathNotFound`` if it is missing or not a directory."""

    @abc.abstractmethod
    def read(self, path: str) -> Iterator[bytes]:
        """A regular file's bytes; ``PathNotFound`` if it is not one."""

    def walk(self, top: str = "") -> Iterator[tuple[str, PathInfo]]:
        """Every path at or below ``top``, parents first, names sorted."""
        found = self.lookup(top)
        if found is None:
            return
        stack = [(top, found)]
        while stack:
            path, info = stack.pop()
            yield path, info
            if info.is_directory:
                children = sorted(self.listdir(path), key=lambda c: c.name, reverse=True)
                stack.extend((f"{path}/{c.name}", c) for c in children)

    def close(self) -> None:  # noqa: B027 - only views holding resources need it
        """Release what the view holds open."""

    def __enter__(self) -> TreeView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PublishSession(Protocol):
    def view(self) -> TreeView:
        """The revision this session builds on (staged changes are not visible)."""

    def store(self, stream: BinaryIO, size_hint: int) -> StoredContent:
        """Consume one file's bytes now, for ``Entry.stored`` in any number of entries.

        For producers that must read content before the final tree is known (image
        layers with whiteouts). Content that ends up unused is never published.
        """

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        """Make ``path`` hold exactly the stream's content; everything else is kept.

        The stream is consumed at once; if it fails half-way, nothing of it is staged.
        """

    def remove(self, path: str) -> None: ...

    def add_tag(self, name: str, target: str | None = None, message: str = "") -> TagInfo:
        """Name an existing revision (default: the current one) at commit."""

    def remove_tag(self, name: str) -> None: ...

    def rollback(self, target: str) -> TagInfo:
        """Commit a new revision whose content equals ``target``; nothing else may be staged."""

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult: ...


class Publisher(Protocol):
    name: str
    backend: str

    def session(
        self, *, wait: bool = False, progress: Progress | None = None
    ) -> contextlib.AbstractContextManager[PublishSession]:
        """Take the repository's publish lock and open a session; abort unless committed."""

    def view(self) -> TreeView:
        """The currently published revision."""

    def tags(self) -> list[TagInfo]: ...

    def gc(self, *, keep_revisions: int, keep_since: dt.datetime | None, dry_run: bool,
           wait: bool = False) -> GcResult: ...

    def resign(self, days: int | None = None) -> ResignResult: ...

    def lock_holder(self) -> LockInfo | None: ...

    def break_lock(self) -> LockInfo | None:
        """Clear what a dead publisher left behind; ``RepositoryBusy`` if it is alive."""

    def client_settings(self) -> ClientSettings: ...


def publish(
    publisher: Publisher,
    changes: Iterable[tuple[str, Iterable[Entry] | None]],
    *,
    tag: str | None = None,
    message: str = "",
    wait: bool = False,
    progress: Progress | None = None,
) -> CommitResult:
    """Convenience: apply (path, entries) replacements, (path, None) removals, commit."""
    with publisher.session(wait=wait, progress=progress) as session:
        for path, entries in changes:
            if entries is None:
                session.remove(path)
            else:
                session.replace(path, entries)
        return session.commit(tag, message)


__all__ = [
    "ClientSettings", "CommitResult", "GcResult", "LockInfo", "PathInfo", "Progress",
    "PublishSession", "Publisher", "ResignResult", "StoredContent", "TagInfo", "TreeView",
    "publish",
]
