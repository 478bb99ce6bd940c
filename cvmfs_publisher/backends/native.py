"""The native backend: the toolkit writes the repository itself (the default).

Adapters only: the engine's transaction, reader and maintenance operations behind the
Publisher interface, translated into the interface's own types.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import BinaryIO

from ..cvmfs.catalog import DirEntry
from ..cvmfs.history import Tag
from ..engine import key_files
from ..engine.reader import RepositoryReader
from ..engine.repository import NativeRepository
from ..engine.transaction import Transaction
from ..engine.views import entry_kind
from ..entries import Entry, Kind, StoredContent
from ..publisher import (
    ClientSettings,
    CommitResult,
    GcResult,
    LockInfo,
    PathInfo,
    Progress,
    ResignResult,
    TagInfo,
    TreeView,
)


def path_info(entry: DirEntry) -> PathInfo:
    kind = entry_kind(entry)
    size = entry.size if kind in (Kind.FILE, Kind.SYMLINK) else 0
    rdev = (entry.size >> 8, entry.size & 0xFF) if kind in (Kind.CHAR, Kind.BLOCK) else (0, 0)
    return PathInfo(entry.name, kind, entry.mode & 0o7777, entry.uid, entry.gid, entry.mtime,
                    size, entry.symlink, entry.linkcount, rdev)


def tag_info(tag: Tag) -> TagInfo:
    return TagInfo(tag.name, tag.revision, str(tag.root_hash), tag.timestamp, tag.description)


class NativeView(TreeView):
    def __init__(self, reader: RepositoryReader, *, owned: bool) -> None:
        self.reader = reader
        self.owned = owned

    def lookup(self, path: str) -> PathInfo | None:
        found = self.reader.lookup(path)
        return path_info(found.entry) if found is not None else None

    def listdir(self, path: str) -> list[PathInfo]:
        return [path_info(entry) for entry in self.reader.listdir(path)]

    def read(self, path: str) -> Iterator[bytes]:
        return self.reader.read(path)

    def walk(self, top: str = "") -> Iterator[tuple[str, PathInfo]]:
        if self.reader.lookup(top) is None:
            return
        for path, entry in self.reader.walk(top):
            yield path, path_info(entry)

    def close(self) -> None:
        if self.owned:
            self.reader.close()


class NativeSession:
    """A native transaction, offering only what the interface promises."""

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn

    def view(self) -> TreeView:
        return NativeView(self.txn.reader, owned=False)

    def store(self, stream: BinaryIO, size_hint: int) -> StoredContent:
        return self.txn.store(stream, size_hint)

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        self.txn.replace(path, entries)

    def remove(self, path: str) -> None:
        self.txn.remove(path)

    def add_tag(self, name: str, target: str | None = None, message: str = "") -> TagInfo:
        return tag_info(self.txn.edits.add_tag(name, target, message))

    def remove_tag(self, name: str) -> None:
        self.txn.edits.remove_tag(name)

    def rollback(self, target: str) -> TagInfo:
        return tag_info(self.txn.edits.rollback(target))

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult:
        return self.txn.commit(tag, message)


class NativePublisher:
    backend = "native"

    def __init__(self, repository: NativeRepository) -> None:
        self.repository = repository
        self.name = repository.fqrn or repository.storage.location

    @contextlib.contextmanager
    def session(self, *, wait: bool = False, progress: Progress | None = None
                ) -> Iterator[NativeSession]:
        with self.repository.transaction(wait=wait, progress=progress) as txn:
            yield NativeSession(txn)

    def view(self) -> TreeView:
        return NativeView(self.repository.reader(), owned=True)

    def tags(self) -> list[TagInfo]:
        reader = self.repository.reader()
        try:
            history = reader.history()
            if history is None:
                return []
            try:
                return [tag_info(tag) for tag in history.tags()]
            finally:
                history.conn.close()
        finally:
            reader.close()

    def gc(self, *, keep_revisions: int, keep_since: dt.datetime | None, dry_run: bool,
           wait: bool = False) -> GcResult:
        plan = self.repository.gc(keep_revisions=keep_revisions, keep_since=keep_since,
                                  dry_run=dry_run, wait=wait)
        return GcResult(dry_run=dry_run, **asdict(plan))

    def resign(self, days: int | None = None) -> ResignResult:
        whitelist = self.repository.resign(days)
        return ResignResult(self.name, whitelist.expires,
                            [fp.fingerprint() for fp in whitelist.fingerprints])

    def lock_holder(self) -> LockInfo | None:
        return self.repository.storage.lock_holder()

    def break_lock(self) -> LockInfo | None:
        return self.repository.storage.break_lock()

    def client_settings(self) -> ClientSettings:
        fqrn, keys = self.repository.fqrn, self.repository.keys_dir
        assert fqrn is not None and keys is not None
        return ClientSettings(fqrn, self.repository.storage.public_url(),
                              key_files.key_paths(keys, fqrn)["pub"])
