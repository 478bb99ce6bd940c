"""Ways to look at a repository's tree: the client's view, and as an entry stream again."""

from __future__ import annotations

import hashlib
import io
import stat
from collections.abc import Iterator

from ..cvmfs.catalog import DirEntry, decode_xattrs
from ..entries import BlockStream, Entry, Kind
from .reader import RepositoryReader

_SPECIAL = {stat.S_IFIFO: Kind.FIFO, stat.S_IFCHR: Kind.CHAR, stat.S_IFBLK: Kind.BLOCK}
_MARKER_NAMES = (".cvmfscatalog",)


def entry_kind(entry: DirEntry) -> Kind:
    if entry.is_directory:
        return Kind.DIR
    if entry.is_symlink:
        return Kind.SYMLINK
    if entry.is_special:
        return _SPECIAL.get(stat.S_IFMT(entry.mode), Kind.FIFO)
    return Kind.FILE


def client_view(reader: RepositoryReader, top: str = "", *, content: bool = True
                ) -> Iterator[dict]:
    """What ``stat``/``readlink``/``sha256sum`` show on a mounted client, per path.

    Field names follow ``shared/fixtures/ref.local.repo/client-view.json``.
    """
    for path, entry in reader.walk(top):
        if path == top:
            continue
        kind = entry_kind(entry)
        item: dict = {"path": path[len(top) + 1:], "mode": oct(stat.S_IMODE(entry.mode)),
                      "mtime": entry.mtime, "uid": entry.uid, "gid": entry.gid,
                      "type": kind.value}
        if kind is Kind.FILE:
            item["size"] = entry.size
            if content:
                digest = hashlib.sha256()
                for block in reader.read(path):
                    digest.update(block)
                item["sha256"] = digest.hexdigest()
        elif kind is Kind.SYMLINK:
            item["target"] = entry.symlink
        elif kind in (Kind.CHAR, Kind.BLOCK):
            item["major"], item["minor"] = entry.size >> 8, entry.size & 0xFF
        if kind in (Kind.FILE, Kind.DIR):
            item["nlink"] = entry.linkcount
        yield item


def repository_entries(reader: RepositoryReader, top: str = "") -> Iterator[Entry]:
    """A subtree of a repository as an entry stream, e.g. to copy or roll back content.

    Hard-link groups come out as hard links again; file contents are read lazily.
    """
    groups: dict[tuple[str, int], str] = {}
    for path, entry in reader.walk(top):
        rel = path[len(top):].lstrip("/")
        kind = entry_kind(entry)
        common = {"mode": stat.S_IMODE(entry.mode), "uid": entry.uid, "gid": entry.gid,
                  "mtime": entry.mtime, "xattrs": decode_xattrs(entry.xattr)}
        if kind is Kind.FILE and entry.hardlink_group:
            key = (path.rsplit("/", 1)[0], entry.hardlink_group)
            if key in groups:
                yield Entry(rel, Kind.HARDLINK, target=groups[key], **common)
                continue
            groups[key] = rel
        if kind is Kind.FILE:
            yield Entry(rel, kind, size=entry.size,
                        content=_LazyContent(reader, path), **common)
        elif kind is Kind.SYMLINK:
            yield Entry(rel, kind, target=entry.symlink, **common)
        elif kind in (Kind.CHAR, Kind.BLOCK):
            yield Entry(rel, kind, rdev=(entry.size >> 8, entry.size & 0xFF), **common)
        else:
            yield Entry(rel, kind, **common)


class _LazyContent:
    def __init__(self, reader: RepositoryReader, path: str) -> None:
        self.reader, self.path = reader, path

    def open(self) -> io.BufferedIOBase:
        return BlockStream(self.reader.read(self.path))
