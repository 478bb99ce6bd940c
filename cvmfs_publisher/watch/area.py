"""One drop area and its repository path: scan, compare with the index, publish it all.

Each sync publishes one revision that makes the granted repository path equal to the
area (adds, changes, deletes, renames and moved directories alike, since the whole area
replaces the path), except for files a writer still has open: those keep their previous
published version, or wait if they are new. Nothing is written to the area; the index and
status are updated only after the publish committed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..cvmfs.names import display, normalize_path
from ..entries import BlockStream, Entry, Kind, OpenerContent
from ..errors import PublisherError, UsageError
from ..publisher import Publisher, TreeView
from .snapshot import FileState, Snapshot, snapshot_entries
from .state import AreaState, IndexEntry


class QuotaExceeded(PublisherError):
    """The area holds more than its quota allows; nothing is published until it shrinks."""


class Source(Protocol):
    name: str
    polling: bool

    def scan(self) -> Snapshot: ...

    def content(self) -> Callable[[str, FileState], Entry]: ...

    def sha256(self, rel: str) -> str | None: ...


@dataclass(frozen=True)
class Grant:
    repository: str
    path: str
    quota_bytes: int | None = None
    quota_files: int | None = None

    def __post_init__(self) -> None:
        if not normalize_path(self.path):
            raise UsageError("a drop area cannot be granted the repository root")


@dataclass
class SyncResult:
    revision: int | None
    added: int = 0
    changed: int = 0
    removed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    unsettled: int = 0

    @property
    def published(self) -> bool:
        return self.revision is not None

    def describe(self) -> str:
        return f"+{self.added} ~{self.changed} -{self.removed}"


class AreaSync:
    def __init__(self, source: Source, grant: Grant, publisher: Publisher) -> None:
        self.source, self.grant, self.publisher = source, grant, publisher
        self.path = normalize_path(grant.path)
        self.state = AreaState.load(grant.repository, self.path, source.name)
        self.last_snapshot: Snapshot | None = None

    def differences(self, snapshot: Snapshot, unsettled: set[str]
                    ) -> tuple[list[str], list[str], list[str]]:
        """(added, changed, removed) against the index; unsettled paths wait."""
        index = self.state.index
        current = {p: s for p, s in snapshot.paths.items() if p not in unsettled}
        added = [p for p in current if p not in index]
        changed = [p for p, s in current.items()
                   if p in index and list(s.signature) != index[p].signature]
        removed = [p for p in index if p not in snapshot.paths]
        return added, changed, removed

    def _check_quota(self, snapshot: Snapshot) -> None:
        grant = self.grant
        if grant.quota_files is not None and snapshot.files > grant.quota_files:
            raise QuotaExceeded(f"{self.source.name} holds {snapshot.files} files, its quota "
                                f"is {grant.quota_files}: nothing published")
        if grant.quota_bytes is not None and snapshot.bytes > grant.quota_bytes:
            raise QuotaExceeded(f"{self.source.name} holds {snapshot.bytes} bytes, its quota "
                                f"is {grant.quota_bytes}: nothing published")

    def sync(self, unsettled: set[str] | None = None) -> SyncResult:
        """Publish the area if it differs from what was published last; failures raise."""
        started = time.monotonic()
        snapshot = self.last_snapshot = self.source.scan()
        unsettled = {p for p in unsettled or set()
                     if snapshot.paths.get(p, FileState(Kind.DIR)).kind is Kind.FILE}
        self.state.status.problems = snapshot.problems[-20:]
        added, changed, removed = self.differences(snapshot, unsettled)
        worth = self._worth_publishing(snapshot, unsettled, added, changed, removed)
        self.state.status.pending = len(unsettled) + \
            (len(added) + len(changed) + len(removed) if worth else 0)  # shown if this fails
        self._check_quota(snapshot)
        result = SyncResult(None, len(added), len(changed), len(removed),
                            unsettled=len(unsettled))
        if worth:
            result.revision = self._publish(snapshot, unsettled, result)
            result.bytes = sum(snapshot.paths[p].size for p in (*added, *changed))
            self.state.status.last_change = f"{result.describe()}, {result.bytes} bytes"
            self._remember(snapshot, unsettled, set(added) | set(changed), result.revision)
        result.seconds = time.monotonic() - started
        return result

    def _worth_publishing(self, snapshot: Snapshot, unsettled: set[str], added: list[str],
                          changed: list[str], removed: list[str]) -> bool:
        """Something settled changed; a directory touched only by a file still being
        written waits for that file. A directory whose mtime alone changed (an ignored
        file came or went) makes no revision."""
        if not self.state.index:
            return True  # the first sync creates the path, even for an empty area
        files = [p for p in (*added, *changed) if snapshot.paths[p].kind is not Kind.DIR]
        dirs = [p for p in added if snapshot.paths[p].kind is Kind.DIR] + \
            [p for p in changed if snapshot.paths[p].kind is Kind.DIR
             and _sans_mtime(snapshot.paths[p].signature)
             != _sans_mtime(self.state.index[p].signature)]
        return bool(files or removed or (dirs and not unsettled))

    def _publish(self, snapshot: Snapshot, unsettled: set[str], result: SyncResult) -> int:
        with self.publisher.session(wait=False) as session:  # busy: fail, retry later
            view = session.view()
            entries = snapshot_entries(snapshot, self.source.content(),
                                       lambda rel: self._previous(view, rel), unsettled)
            session.replace(self.path, entries)
            message = f"watch {self.source.name}: {result.describe()}"
            return session.commit(message=message).revision

    def _previous(self, view: TreeView, rel: str) -> Entry | None:
        """The published version of a file a writer still has open, to keep as it is."""
        path = f"{self.path}/{rel}"
        found = view.lookup(path)
        if found is None or not found.is_regular:
            return None
        return Entry(rel, Kind.FILE, found.mode, found.uid, found.gid, found.mtime,
                     found.size, OpenerContent(lambda: BlockStream(view.read(path))))

    def _remember(self, snapshot: Snapshot, unsettled: set[str], fresh: set[str],
                  revision: int) -> None:
        old = self.state.index
        index = {}
        for rel, state in snapshot.paths.items():
            if rel in unsettled:
                if rel in old:
                    index[rel] = old[rel]
                continue
            digest = self.source.sha256(rel) if rel in fresh and state.kind is Kind.FILE \
                else (old[rel].sha256 if rel in old else None)
            index[rel] = IndexEntry(list(state.signature), digest,
                                    revision if rel in fresh or rel not in old
                                    else old[rel].revision)
        self.state.index = index
        status = self.state.status
        status.last_sync, status.last_revision = time.time(), revision
        status.pending, status.unsettled = len(unsettled), sorted(unsettled)[:20]
        status.last_error, status.failures = "", 0
        self.state.save()

    def failed(self, error: str) -> None:
        status = self.state.status
        status.last_error, status.failures = error, status.failures + 1
        self.state.save()

    def describe(self) -> str:
        return f"{self.source.name} -> {self.grant.repository}:{display(self.path)}"


def _sans_mtime(signature: list | tuple) -> list:
    """A ``FileState.signature`` without its mtime (kind, size, mode, target, etag)."""
    return [*signature[:2], *signature[3:]]


def file_sha256(read: Callable[[], bytes | None]) -> str:
    digest = hashlib.sha256()
    while block := read():
        digest.update(block)
    return digest.hexdigest()
