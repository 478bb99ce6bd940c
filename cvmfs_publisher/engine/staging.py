"""The tree a publish builds from an entry stream before it becomes catalog rows.

Content is handed to the object pipeline as entries arrive; the tree keeps only metadata
and a handle on the pending objects. Catalog placement waits until the whole stream is
seen, because a ``.cvmfscatalog`` marker may come after its siblings in a tarball.
Streams arrive through ``entries.checked_stream``, which enforces names and structure
(parents are directories, hard links name earlier files), so none of that is checked here.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..cvmfs.catalog import encode_xattrs
from ..entries import SPECIAL_KINDS, Entry, Kind, Owner, Subtree
from .pipeline import PendingFile

# (stream path, subtree) -> the print of the nested catalog that already holds the subtree
Keep = Callable[[str, Subtree], "bytes | None"]

TYPE_BITS = {
    Kind.FILE: stat.S_IFREG,
    Kind.DIR: stat.S_IFDIR,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.FIFO: stat.S_IFIFO,
    Kind.CHAR: stat.S_IFCHR,
    Kind.BLOCK: stat.S_IFBLK,
}


@dataclass(eq=False, slots=True)
class Node:
    name: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    target: str = ""
    rdev: int = 0
    xattr: bytes | None = None
    content: PendingFile | None = None
    children: dict[str, Node] | None = None
    primary: Node | None = None  # hard link: the node whose inode this one shares
    kept: bytes | None = None  # the print of a nested catalog taken back for the subtree

    @property
    def st_mode(self) -> int:
        return TYPE_BITS[self.kind] | self.mode


@dataclass
class StagedTree:
    now: int
    owner: Owner | None = None
    default_owner: Owner = field(default_factory=lambda: Owner(0, 0))
    root: Node = field(init=False)
    # stream path of each directory -> (subtree digest, newest_ns), as its producer saw it
    sources: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    kept: list[tuple[Node, Subtree]] = field(default_factory=list)

    def __post_init__(self) -> None:
        uid, gid = self._owner(self.default_owner.uid, self.default_owner.gid)
        self.root = Node("", Kind.DIR, 0o755, uid, gid, self.now, children={})

    def _owner(self, uid: int, gid: int) -> tuple[int, int]:
        return (self.owner.uid, self.owner.gid) if self.owner else (uid, gid)

    def add_stream(
        self, entries: Iterable[Entry], store: Callable[[Entry], PendingFile],
        keep: Keep | None = None,
    ) -> None:
        """Consume a checked stream; ``store`` reads a file's content before the next entry.

        ``keep`` is asked about each directory whose producer can leave its subtree out.
        """
        for entry in entries:
            self.add(entry, store, keep)

    def add(self, entry: Entry, store: Callable[[Entry], PendingFile],
            keep: Keep | None = None) -> None:
        parts = entry.path.split("/") if entry.path else []
        if not parts:
            self._set_root(entry, store, keep)
            return
        parent = self._directory(parts[:-1], entry.path)
        assert parent.children is not None and parent.kept is None, "a kept subtree is whole"
        node = self._node(entry, parts[-1], store)
        old = parent.children.get(node.name)
        if node.kind is Kind.DIR and old is not None and old.children is not None:
            node.children = old.children  # a directory described twice keeps its contents
        elif entry.subtree is not None and node.kind is Kind.DIR:
            self._offer(entry.path, node, entry.subtree, keep)
        parent.children[node.name] = node

    def _offer(self, path: str, node: Node, subtree: Subtree, keep: Keep | None) -> None:
        """Remember what the producer saw; skip the subtree if a catalog already holds it."""
        if subtree.digest is None:
            return
        self.sources[path] = (subtree.digest, subtree.newest_ns)
        mark = keep(path, subtree) if keep is not None else None
        if mark is not None:
            node.kept = mark
            subtree.skip()
            self.kept.append((node, subtree))

    def take_back_kept(self) -> list[Subtree]:
        """Forget every kept mark: the caller streams those subtrees in after all."""
        kept, self.kept = self.kept, []
        for node, _ in kept:
            node.kept = None
        return [subtree for _, subtree in kept]

    def _node(self, entry: Entry, name: str, store: Callable[[Entry], PendingFile]) -> Node:
        if entry.kind is Kind.HARDLINK:
            return self._hardlink(entry, name)
        uid, gid = self._owner(entry.uid, entry.gid)
        node = Node(name, entry.kind, entry.mode & 0o7777, uid, gid, entry.mtime,
                    xattr=encode_xattrs(entry.xattrs))
        if entry.kind is Kind.FILE:
            pending = entry.stored if entry.stored is not None else store(entry)
            node.content, node.size = pending, pending.size
        elif entry.kind is Kind.SYMLINK:
            node.target = entry.target
            node.size = len(entry.target.encode("utf-8"))
        elif entry.kind is Kind.DIR:
            node.children = {}
        elif entry.kind in SPECIAL_KINDS:
            node.rdev = (entry.rdev[0] << 8) | entry.rdev[1]
        return node

    def _set_root(self, entry: Entry, store: Callable[[Entry], PendingFile],
                  keep: Keep | None = None) -> None:
        """The stream's own top: usually the directory, or the single file being published."""
        node = self._node(entry, "", store)
        if node.kind is Kind.DIR:
            node.children = self.root.children if self.root.kind is Kind.DIR else {}
            if entry.subtree is not None and not node.children:
                self._offer("", node, entry.subtree, keep)
        self.root = node

    def _directory(self, parts: list[str], path: str) -> Node:
        """Walk to a parent directory, creating parents a stream left out."""
        node = self.root
        for part in parts:
            assert node.children is not None, f"{path}: checked_stream lets no file be a parent"
            child = node.children.get(part)
            if child is None:
                uid, gid = self._owner(self.default_owner.uid, self.default_owner.gid)
                child = Node(part, Kind.DIR, 0o755, uid, gid, self.now, children={})
                node.children[part] = child
            node = child
        return node

    def _hardlink(self, entry: Entry, name: str) -> Node:
        target = self.find(entry.target)
        assert target is not None and target.kind is Kind.FILE, "checked_stream checks links"
        primary = target.primary or target
        return Node(name, Kind.FILE, primary.mode, primary.uid, primary.gid, primary.mtime,
                    size=primary.size, content=primary.content, primary=primary,
                    xattr=primary.xattr)

    def find(self, path: str) -> Node | None:
        node: Node | None = self.root
        for part in [p for p in path.split("/") if p]:
            if node is None or node.children is None:
                return None
            node = node.children.get(part)
        return node

    def walk(self) -> Iterator[tuple[str, Node]]:
        """(relative path, node), parents first, names sorted."""
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            rel, node = stack.pop()
            yield rel, node
            if node.children:
                for name in sorted(node.children, reverse=True):
                    child_rel = f"{rel}/{name}" if rel else name
                    stack.append((child_rel, node.children[name]))
