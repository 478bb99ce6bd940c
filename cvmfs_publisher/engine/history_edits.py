"""Tag and history changes of one transaction: staged with checks, written at commit.

Checks run when a change is staged, so a bad tag name fails before any content is read.
At commit the previous tag database is copied and edited: tag removals and additions in
the order staged, the new revision's tag (named, or ``generic-<time>`` like
``cvmfs_server``'s auto tags), ``trunk``/``trunk-previous``, and the link to the
previous history object.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from ..cvmfs.hashes import Algorithm, ContentHash, parse_object_key
from ..cvmfs.history import RESERVED, History, Tag, check_tag_name
from ..errors import TagError
from .diff import diff
from .gc import GcPlan
from .reader import RepositoryReader


class HistoryEdits:
    def __init__(self, reader: RepositoryReader) -> None:
        self.reader = reader
        self.tag_changes: list[tuple[Tag, bool]] = []  # (tag, add?) in order
        self.rollback_to: Tag | None = None
        self.reflog_drops: set[str] = set()  # hash strings garbage collection deletes

    @property
    def tags_changed(self) -> bool:
        return bool(self.tag_changes or self.reflog_drops)

    def check_new_tag(self, name: str) -> None:
        """Fail before any work when a tag name cannot be used."""
        check_tag_name(name)
        if name in RESERVED:
            raise TagError(f"tag name {name!r} is reserved")
        if self.reader.tag(name) is not None:
            raise TagError(f"tag {name!r} already exists; remove it first or pick another name")

    def add_tag(self, name: str, target: str | None = None, message: str = "") -> Tag:
        """Name an existing revision (default: the current one) without new content."""
        self.check_new_tag(name)
        found = self.reader.resolve(target)
        tag = Tag(name, found.root_hash, found.revision, found.timestamp, message, found.size)
        self.tag_changes.append((tag, True))
        return tag

    def remove_tag(self, name: str) -> None:
        if name in RESERVED:
            raise TagError(f"tag {name!r} is maintained automatically and cannot be removed")
        if self.reader.tag(name) is None:
            raise TagError(f"tag {name!r} does not exist")
        self.tag_changes.append((Tag(name, ContentHash.zero(), 0, 0), False))

    def rollback(self, target: str) -> Tag:
        """Publish a new revision whose content equals ``target`` (a tag or revision)."""
        found = self.reader.resolve(target)
        current = self.reader.manifest.root_catalog
        if next(diff(self.reader, found.root_hash, current), None) is None:
            raise TagError(f"{target} is already the current content")
        self.rollback_to = found
        return found

    def drop_for_gc(self, plan: GcPlan) -> None:
        """Forget dropped tags and deleted roots in the history and reflog at commit."""
        for name in plan.dropped_tags:
            self.tag_changes.append((Tag(name, ContentHash.zero(), 0, 0), False))
        self.reflog_drops = {str(parse_object_key(key)[0]) for key in plan.garbage}

    def write(self, file: Path, previous: Path | None, head: Tag | None, name: str | None,
              fqrn: str, algorithm: Algorithm) -> None:
        """The new tag database in ``file``, from a copy of ``previous`` (None: a new one).

        ``head`` is the new revision (None when only tags change); ``name`` its tag.
        """
        if previous is not None:
            file.write_bytes(previous.read_bytes())
            history = History(file, writable=True)
        else:
            history = History.create(file, fqrn, algorithm)
        history.conn.execute("BEGIN")
        for change, add in self.tag_changes:
            history.remove(change.name)
            if add:
                history.insert(change)
        if head is not None:
            if name is not None:
                history.insert(Tag(name, head.root_hash, head.revision, head.timestamp,
                                   head.description, head.size))
            history.update_trunk(head)
        previous_hash = self.reader.manifest.history
        history.set_previous_revision(previous_hash or ContentHash.zero(algorithm))
        history.close()


def generic_tag_name(history_file: Path | None, now: int) -> str:
    """``generic-<UTC time>`` like ``cvmfs_server``'s auto tags, numbered on collision."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    taken = set()
    if history_file is not None:
        history = History(history_file, writable=False)
        try:
            taken = {tag.name for tag in history.tags()}
        finally:
            history.conn.close()
    name, n = f"generic-{stamp}", 0
    while name in taken:
        n += 1
        name = f"generic_{n}-{stamp}"
    return name
