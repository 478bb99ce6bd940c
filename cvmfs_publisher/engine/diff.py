"""What changed between two revisions, at a cost that follows the change.

Both trees are walked side by side; a nested catalog whose hash is the same on both sides
holds identical content and is skipped without being downloaded.

``shown`` leaves out what every change drags along: the new mtime of the directories
above a change, and of the ``.cvmfscatalog`` markers written again with their catalog.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..cvmfs.catalog import Catalog, DirEntry
from ..cvmfs.hashes import ContentHash
from ..cvmfs.names import display
from .reader import RepositoryReader

_FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "content", "target", "xattr")


CATALOG_MARKER = ".cvmfscatalog"


@dataclass(frozen=True)
class Change:
    kind: str  # "added", "removed" or "changed"
    path: str
    fields: tuple[str, ...] = ()
    type: str = ""  # "dir", "file", "symlink" or "special": the new side's, else the old

    @property
    def incidental(self) -> bool:
        """Only the mtime changed, of a directory or a catalog marker: see ``shown``."""
        return (self.kind == "changed" and self.fields == ("mtime",)
                and (self.type == "dir" or self.path.rsplit("/", 1)[-1] == CATALOG_MARKER))

    def line(self) -> str:
        mark = {"added": "A", "removed": "D", "changed": "M"}[self.kind]
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{mark} {display(self.path)}{detail}"


def _type(entry: DirEntry) -> str:
    return ("dir" if entry.is_directory else "symlink" if entry.is_symlink
            else "special" if entry.is_special else "file")


def _signature(entry: DirEntry, catalog: Catalog, path: str) -> dict[str, object]:
    content: object = entry.content_hash
    if entry.is_chunked:
        content = tuple(c.content_hash for c in catalog.chunks(path))
    return {"type": _type(entry), "mode": entry.mode, "uid": entry.uid, "gid": entry.gid,
            "size": None if entry.is_directory else entry.size, "mtime": entry.mtime,
            "content": content, "target": entry.symlink, "xattr": entry.xattr}


class _Side:
    """One revision's tree, with the catalog that holds each directory's children."""

    def __init__(self, reader: RepositoryReader, root: ContentHash) -> None:
        self.reader = reader
        self.root = reader.catalog(root)

    def listing(self, catalog: Catalog, path: str, entry: DirEntry
                ) -> tuple[Catalog, ContentHash | None, dict[str, DirEntry]]:
        nested_hash = None
        if entry.is_mountpoint:
            ref = next(r for r in catalog.nested() if r.path == path)
            nested_hash = ref.content_hash
            catalog = self.reader.catalog(ref.content_hash)
        return catalog, nested_hash, {e.name: e for e in catalog.listing(path)}


def diff(reader: RepositoryReader, old: ContentHash, new: ContentHash) -> Iterator[Change]:
    a, b = _Side(reader, old), _Side(reader, new)
    root_a, root_b = a.root.lookup(""), b.root.lookup("")
    assert root_a is not None and root_b is not None
    stack = [("", a.root, root_a, b.root, root_b)]
    while stack:
        path, cat_a, dir_a, cat_b, dir_b = stack.pop()
        cat_a, hash_a, kids_a = a.listing(cat_a, path, dir_a)
        cat_b, hash_b, kids_b = b.listing(cat_b, path, dir_b)
        if hash_a is not None and hash_a == hash_b:
            continue  # the same nested catalog: nothing below differs
        for name in sorted(kids_a.keys() | kids_b.keys(), reverse=True):
            child = f"{path}/{name}"
            ea, eb = kids_a.get(name), kids_b.get(name)
            if eb is None:
                yield Change("removed", child, type=_type(ea))  # type: ignore[arg-type]
                continue
            if ea is None:
                yield Change("added", child, type=_type(eb))
                continue
            sa, sb = _signature(ea, cat_a, child), _signature(eb, cat_b, child)
            changed = tuple(f for f in _FIELDS if sa[f] != sb[f])
            if changed:
                yield Change("changed", child, changed, str(sb["type"]))
            if ea.is_directory and eb.is_directory:
                stack.append((child, cat_a, ea, cat_b, eb))


def shown(changes: list[Change]) -> list[Change]:
    """``changes`` without the incidental ones: a catalog marker whose only change is its
    mtime, and a directory whose only change is its mtime while something below it
    changed (the parents of a change, whose mtime follows their children). A directory
    whose mtime alone changed, with nothing changed below it, stays: that is all that
    happened there."""
    above: set[str] = set()
    for change in changes:
        parent = change.path
        while parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in above:
                break
            above.add(parent)
    return [change for change in changes if not change.incidental
            or (change.type == "dir" and change.path not in above
                and change.path.rsplit("/", 1)[-1] != CATALOG_MARKER)]
