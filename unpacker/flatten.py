"""Applying image layers, in order, to an in-memory tree; the result is an entry stream.

Nothing is written to disk: each regular file's bytes go to the transaction
(``PublishSession.store``) while its layer streams by, and the tree keeps only metadata and
the pending objects. A layer is read whole into a list of changes first, then applied:
its whiteouts (``.wh.<name>``) and opaque markers (``.wh..wh..opq``) act on the lower
layers only, so same-layer siblings survive whatever their order in the tar, and then its
entries are added in tar order. That is OCI's rule and ``umoci unpack``'s behaviour.

Hostile input rejects the whole image (``UnsafeLayer`` names the image, layer and
member) rather than being clamped as umoci does: absolute names and ``..``; anything
written, whited out or hard-linked through a symlinked parent; hard links to missing
targets or directories; a non-directory used as a parent.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cvmfs_publisher.entries import Entry, Kind, StoredContent, clean_member_path
from cvmfs_publisher.errors import InvalidPath
from cvmfs_publisher.sources.tarball import member_entry

from .errors import UnsafeLayer

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
TAR_BUFSIZE = 1 << 20

Store = Callable[[BinaryIO, int], StoredContent]


@dataclass(eq=False, slots=True)
class Inode:
    """What names share when hard-linked: type, metadata and content."""

    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime: int
    stored: StoredContent | None = None
    target: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict[str, bytes] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Node:
    inode: Inode
    children: dict[str, Node] | None = None


@dataclass(slots=True)
class Change:
    """One layer member: an entry to add, or a whiteout of ``path`` (opaque: its children)."""

    path: str
    entry: Entry | None = None
    whiteout: bool = False
    opaque: bool = False
    member: str = ""


class ForwardReader(io.RawIOBase):
    """A stream that ``tarfile``'s random-access mode can use, as long as it only seeks on.

    ``tarfile``'s stream mode (``r|``) re-slices its whole buffer on every small read,
    which costs more than the parsing; random-access mode reads headers and data straight
    from a ``BufferedReader``, and we read members in order, so every seek goes forward
    (skipping is reading). A backward seek is a bug and raises.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = io.BufferedReader(raw, TAR_BUFSIZE)  # type: ignore[arg-type]
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self.raw.readinto(buffer)
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.pos:
            raise io.UnsupportedOperation("a layer stream only seeks forward")
        while self.pos < target:
            if not self.read(min(target - self.pos, TAR_BUFSIZE)):
                break
        return self.pos


def read_layer(stream: BinaryIO, store: Store, where: str) -> list[Change]:
    """Every member of one layer, file contents handed to ``store`` as they stream by."""
    changes: list[Change] = []
    try:
        archive = tarfile.open(fileobj=ForwardReader(stream), mode="r:")  # noqa: SIM115
    except tarfile.ReadError as exc:
        raise UnsafeLayer(f"{where}: not a tar archive ({exc})") from None
    try:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, EOFError) as exc:
                raise UnsafeLayer(f"{where}: broken tar stream ({exc})") from None
            if member is None:
                return changes
            change = _change(archive, member, store, where)
            if change is not None:
                changes.append(change)
    finally:
        archive.close()


def _change(archive: tarfile.TarFile, member: tarfile.TarInfo, store: Store, where: str
            ) -> Change | None:
    try:
        rel = clean_member_path(member.name, f"{where}: member")
    except InvalidPath as exc:
        raise UnsafeLayer(str(exc)) from None
    parent, _, name = rel.rpartition("/")
    if name == OPAQUE:
        return Change(parent, opaque=True, member=member.name)
    if name.startswith(WHITEOUT):
        target = name[len(WHITEOUT):]
        if target in ("", ".", ".."):
            raise UnsafeLayer(f"{where}: member {member.name!r} is a malformed whiteout")
        return Change(f"{parent}/{target}" if parent else target, whiteout=True,
                      member=member.name)
    try:
        entry = member_entry(archive, member, where)
    except InvalidPath as exc:
        raise UnsafeLayer(str(exc)) from None
    if entry is None:
        return None
    if entry.kind is Kind.FILE:
        assert entry.content is not None
        with entry.content.open() as handle:
            entry.stored = store(handle, entry.size)
        entry.content = None
    return Change(rel, entry=entry, member=member.name)


class FlatTree:
    """The accumulated root filesystem of one image, in memory."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.root = Node(Inode(Kind.DIR, 0o755, 0, 0, 0), {})
        self._removed: dict[str, Node] = {}

    # -- applying ---------------------------------------------------------------------------

    def apply(self, changes: list[Change], where: str) -> None:
        self._removed: dict[str, Node] = {}  # this layer's whiteouts, for hard links
        for change in changes:
            if change.opaque:
                self._opaque(change, where)
            elif change.whiteout:
                self._whiteout(change, where)
        for change in changes:
            if change.entry is not None:
                self._add(change.entry, change.member, where)

    def _walk_parent(self, parts: list[str], member: str, where: str, *, create: bool,
                     mtime: int = 0) -> Node | None:
        """The directory ``parts`` names, never through a symlink (create missing if asked)."""
        node = self.root
        for i, part in enumerate(parts):
            assert node.children is not None
            child = node.children.get(part)
            if child is None:
                if not create:
                    return None
                child = Node(Inode(Kind.DIR, 0o755, 0, 0, mtime), {})
                node.children[part] = child
            elif child.inode.kind is Kind.SYMLINK:
                below = "/".join(parts[: i + 1])
                raise UnsafeLayer(f"{where}: member {member!r} goes through {below!r}, a "
                                  f"symlink to {child.inode.target!r}; image {self.image} "
                                  "rejected")
            elif child.children is None:
                if not create:
                    return None
                below = "/".join(parts[: i + 1])
                raise UnsafeLayer(f"{where}: member {member!r} needs {below!r} as a "
                                  f"directory, but it is a {child.inode.kind.value}")
            node = child
        return node

    def _opaque(self, change: Change, where: str) -> None:
        if not change.path:
            assert self.root.children is not None
            self._removed.update(self.root.children)
            self.root.children.clear()
            return
        parts = change.path.split("/")
        parent = self._walk_parent(parts[:-1], change.member, where, create=False)
        directory = parent.children.get(parts[-1]) if parent and parent.children else None
        if directory is not None and directory.children is not None:
            self._removed.update({f"{change.path}/{n}": c for n, c in directory.children.items()})
            directory.children.clear()

    def _whiteout(self, change: Change, where: str) -> None:
        parts = change.path.split("/")
        parent = self._walk_parent(parts[:-1], change.member, where, create=False)
        if parent is not None and parent.children is not None:
            gone = parent.children.pop(parts[-1], None)
            if gone is not None:
                self._removed[change.path] = gone

    def _add(self, entry: Entry, member: str, where: str) -> None:
        if entry.path == "":
            if entry.kind is not Kind.DIR:
                raise UnsafeLayer(f"{where}: the image root {member!r} is not a directory")
            self.root.inode = _inode(entry)
            return
        parts = entry.path.split("/")
        parent = self._walk_parent(parts[:-1], member, where, create=True, mtime=entry.mtime)
        assert parent is not None and parent.children is not None
        name = parts[-1]
        existing = parent.children.get(name)
        if entry.kind is Kind.DIR:
            if existing is not None and existing.children is not None:
                existing.inode = _inode(entry)  # a directory described again keeps contents
            else:
                parent.children[name] = Node(_inode(entry), {})
        elif entry.kind is Kind.HARDLINK:
            target = self._link_target(entry, member, where)
            parent.children[name] = Node(target.inode)
        else:
            parent.children[name] = Node(_inode(entry))

    def _link_target(self, entry: Entry, member: str, where: str) -> Node:
        parts = entry.target.split("/") if entry.target else []
        parent = self._walk_parent(parts[:-1], member, where, create=False) if parts else None
        target = parent.children.get(parts[-1]) if parent and parent.children else None
        if target is None:
            target = self._whited_out(parts)
        if target is None:
            raise UnsafeLayer(f"{where}: hard link {member!r} points to {entry.target!r}, "
                              f"which does not exist; image {self.image} rejected")
        if target.children is not None:
            raise UnsafeLayer(f"{where}: hard link {member!r} points to the directory "
                              f"{entry.target!r}")
        return target

    def _whited_out(self, parts: list[str]) -> Node | None:
        """A link target this layer's whiteouts removed: tar order may put the link first,
        and then umoci links it before the whiteout runs."""
        for i in range(len(parts), 0, -1):
            node = self._removed.get("/".join(parts[:i]))
            if node is None:
                continue
            for part in parts[i:]:
                if node.children is None or node.inode.kind is Kind.SYMLINK:
                    return None
                node = node.children.get(part)
                if node is None:
                    return None
            return node
        return None

    # -- reading out -------------------------------------------------------------------------

    def count(self) -> int:
        return sum(1 for _ in self._walk())

    def _walk(self) -> Iterator[tuple[str, Node]]:
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if node.children:
                for name in sorted(node.children, reverse=True):
                    stack.append((f"{path}/{name}" if path else name, node.children[name]))

    def entries(self, skip: frozenset[str] = frozenset()) -> Iterator[Entry]:
        """The tree as a stream for ``Transaction.replace``, parents first.

        Names sharing a regular file's inode become hard links to the first of them; the
        engine keeps link groups within a directory (all CVMFS can) and stores the other
        names as files with the same content. Other shared inodes (links to symlinks or
        devices, which CVMFS cannot link) are copies.
        """
        first_name: dict[int, str] = {}
        for path, node in self._walk():
            if path in skip:
                continue
            inode = node.inode
            if inode.kind is Kind.FILE:
                key = id(inode)
                if key in first_name:
                    yield Entry(path, Kind.HARDLINK, mode=inode.mode, uid=inode.uid,
                                gid=inode.gid, mtime=inode.mtime, target=first_name[key])
                    continue
                first_name[key] = path
            yield _entry(path, inode)


def _inode(entry: Entry) -> Inode:
    mode = 0o777 if entry.kind is Kind.SYMLINK else entry.mode  # Linux symlinks are 0777
    return Inode(entry.kind, mode, entry.uid, entry.gid, entry.mtime, entry.stored,
                 entry.target, entry.rdev, entry.xattrs)


def _entry(path: str, inode: Inode) -> Entry:
    size = inode.stored.size if inode.stored is not None else 0
    return Entry(path, inode.kind, mode=inode.mode, uid=inode.uid, gid=inode.gid,
                 mtime=inode.mtime, size=size, target=inode.target, rdev=inode.rdev,
                 xattrs=dict(inode.xattrs), stored=inode.stored)
