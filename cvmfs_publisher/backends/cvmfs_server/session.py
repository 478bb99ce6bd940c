"""One classic publish: stage everything first, then transaction, write, publish or abort.

Staging touches nothing of the repository: content goes to a local spool and the changes
are checked against the published revision. Only ``commit`` opens the ``cvmfs_server``
transaction (on the changed subtree where a gateway leases paths), writes the tree and
publishes; any exception or signal from then on runs ``cvmfs_server abort -f``, so no
transaction is ever left open. Tag edits and rollbacks are their own ``cvmfs_server``
commands, run after the publish (tags resolve to the revision seen at staging time).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ...cvmfs.dirtab import DIRTAB, MARKER, Dirtab
from ...cvmfs.history import RESERVED, check_tag_name
from ...cvmfs.names import display, is_within, normalize_path, removable_path
from ...entries import BytesContent, Entry, Kind, PathContent, StoredContent, checked_stream
from ...errors import PathNotFound, PublisherError, SourceError, TagError, UsageError
from ...publisher import CommitResult, Progress, TagInfo, TreeView
from .command import TagLine
from .spool import Spool
from .tree_writer import TreeWriter

if TYPE_CHECKING:
    from .driver import CvmfsServerPublisher


WARNING = re.compile(r"^\s*warning:?\s*", re.IGNORECASE)


@dataclass
class _Change:
    path: str
    entries: list[Entry] | None  # None: remove


def tag_info(line: TagLine) -> TagInfo:
    return TagInfo(line.name, line.revision, line.root_hash, line.timestamp, line.description)


class CvmfsServerSession:
    def __init__(self, driver: CvmfsServerPublisher, spool: Spool, *, wait: bool,
                 progress: Progress | None) -> None:
        self.driver, self.spool = driver, spool
        self.wait, self.progress = wait, progress
        self.started = time.monotonic()
        self.changes: list[_Change] = []
        self.tag_adds: list[tuple[str, TagLine, str]] = []
        self.tag_removes: list[str] = []
        self.rollback_to: TagLine | None = None
        self._tags = driver.tag_lines()

    # -- staging ----------------------------------------------------------------------------

    def view(self) -> TreeView:
        return self.driver.view()

    def store(self, stream: BinaryIO, size_hint: int) -> StoredContent:
        return self.spool.add(stream, "stored content")

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        path = normalize_path(path)
        staged = [self._spooled(entry, path) for entry in checked_stream(entries, path)]
        self.changes.append(_Change(path, staged))

    def _spooled(self, entry: Entry, path: str) -> Entry:
        if entry.kind is not Kind.FILE:
            return dataclasses.replace(entry)
        stored = entry.stored
        if stored is None:
            if entry.content is None:
                raise SourceError(f"file entry {entry.path!r} has no content")
            with entry.content.open() as stream:
                stored = self.spool.add(stream, f"{display(path)}/{entry.path}")
        elif not self.spool.owns(stored):
            raise UsageError("content was stored in another publish session")
        return dataclasses.replace(entry, size=stored.size, stored=None,
                                   content=PathContent(stored.path))  # type: ignore[attr-defined]

    def remove(self, path: str) -> None:
        self.changes.append(_Change(removable_path(path), None))

    # -- tags -----------------------------------------------------------------------------

    def _find(self, spec: str | None) -> TagLine:
        """A tag name, a revision number, or None/"trunk" for the current revision."""
        name = spec or "trunk"
        for line in self._tags:
            if line.name == name:
                return line
        if name.isdigit():  # cvmfs_server knows revisions by their tags only
            for line in self._tags:
                if line.revision == int(name):
                    return line
        raise TagError(f"no tag or tagged revision {name!r} in {self.driver.name}")

    def _check_new_tag(self, name: str) -> None:
        check_tag_name(name)
        if name in RESERVED:
            raise TagError(f"tag name {name!r} is reserved")
        if any(line.name == name for line in self._tags):
            raise TagError(f"tag {name!r} already exists; remove it first or pick another name")

    def add_tag(self, name: str, target: str | None = None, message: str = "") -> TagInfo:
        self._check_new_tag(name)
        found = self._find(target)
        self.tag_adds.append((name, found, message))
        return TagInfo(name, found.revision, found.root_hash, found.timestamp, message)

    def remove_tag(self, name: str) -> None:
        if name in RESERVED:
            raise TagError(f"tag {name!r} is maintained automatically and cannot be removed")
        if not any(line.name == name for line in self._tags):
            raise TagError(f"tag {name!r} does not exist")
        self.tag_removes.append(name)

    def rollback(self, target: str) -> TagInfo:
        found = self._find(target)
        if found.root_hash == self._find("trunk").root_hash:
            raise TagError(f"{target} is already the current content")
        self.rollback_to = found
        return tag_info(found)

    # -- committing -------------------------------------------------------------------------

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult:
        if tag is not None:
            self._check_new_tag(tag)
        if self.rollback_to is not None:
            if self.changes or self.tag_adds or self.tag_removes:
                raise UsageError("a rollback is a revision of its own: stage nothing else "
                                 "in the same session")
            self._rollback(tag, message)
            return self._result(tag, None)
        if not self.changes:
            if tag is not None or not (self.tag_adds or self.tag_removes):
                raise UsageError("nothing to publish")
            self._edit_tags()
            return self._result(None, None)
        writer = self._publish(tag, message)
        self._edit_tags()
        return self._result(tag, writer)

    def _mark_release_catalogs(self) -> None:
        """Markers where the native backend would open a release catalog.

        cvmfs_server applies a ``/.cvmfsdirtab`` itself; without one, the configured
        release rule (``/sw/*/*``) is applied here, so both backends publish one tree.
        """
        if self._dirtab_after_commit() or not self.driver.release_catalogs:
            return
        rules = Dirtab.from_patterns(self.driver.release_catalogs)
        for change in self.changes:
            if change.entries is None:
                continue
            paths = {entry.path for entry in change.entries}
            for entry in list(change.entries):
                full = f"{change.path}/{entry.path}" if entry.path else change.path
                marker = f"{entry.path}/{MARKER}" if entry.path else MARKER
                if entry.kind is Kind.DIR and rules.matches(full) and marker not in paths:
                    change.entries.append(Entry(marker, Kind.FILE, 0o644, os.geteuid(),
                                                os.getegid(), entry.mtime,
                                                content=BytesContent(b"")))

    def _dirtab_after_commit(self) -> bool:
        for change in reversed(self.changes):
            if is_within(f"/{DIRTAB}", change.path):
                if change.entries is None:
                    return False
                top = change.path == f"/{DIRTAB}"
                return any(e.path == ("" if top else DIRTAB) for e in change.entries)
        with self.view() as view:
            return view.lookup(f"/{DIRTAB}") is not None

    def _publish(self, tag: str | None, message: str) -> TreeWriter:
        self._mark_release_catalogs()
        driver = self.driver
        try:
            driver.open_transaction(driver.lease_target([c.path for c in self.changes]),
                                    wait=self.wait)
            writer = TreeWriter(driver.writable_root, driver.owner, self.progress)
            try:
                for change in self.changes:
                    self._apply(writer, change)
            finally:
                writer.close()
            said = driver.command.run("publish", *(["-a", tag] if tag else []),
                                      *(["-m", message] if message else []), driver.name)
            writer.warnings.extend(WARNING.sub("", line).strip() for line in said.splitlines()
                                   if WARNING.match(line))
        except BaseException as exc:
            if driver.command.transaction_open:
                driver.abort(exc)
            raise
        return writer

    def _apply(self, writer: TreeWriter, change: _Change) -> None:
        if change.entries is None:
            if not writer.remove(change.path):
                raise PathNotFound(f"{display(change.path)} does not exist in "
                                   f"{self.driver.name}")
        else:
            writer.replace(change.path, change.entries)

    def _rollback(self, tag: str | None, message: str) -> None:
        assert self.rollback_to is not None  # a tag line: cvmfs_server rolls back to tags
        self.driver.command.run("rollback", "-t", self.rollback_to.name, "-f", self.driver.name)
        if tag is not None:
            self.driver.command.run("tag", "-a", tag, *(["-m", message] if message else []),
                                    self.driver.name)

    def _edit_tags(self) -> None:
        run, name = self.driver.command.run, self.driver.name
        for tag in self.tag_removes:
            run("tag", "-r", tag, "-f", name)
        for tag, target, text in self.tag_adds:
            run("tag", "-a", tag, "-h", target.root_hash, *(["-m", text] if text else []), name)

    def _result(self, tag: str | None, writer: TreeWriter | None) -> CommitResult:
        try:
            trunk = next(line for line in self.driver.tag_lines() if line.name == "trunk")
        except StopIteration:
            raise PublisherError(f"cvmfs_server lists no trunk tag for {self.driver.name} "
                                 "after publishing") from None
        return CommitResult(
            revision=trunk.revision, root_hash=trunk.root_hash, tag=tag,
            files=writer.files if writer else 0, bytes_in=writer.bytes if writer else 0,
            seconds=time.monotonic() - self.started,
            warnings=list(writer.warnings) if writer else [],
        )
