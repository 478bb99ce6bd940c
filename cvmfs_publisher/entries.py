"""The entry stream: what every producer (directory, tarball, image layer) hands the Publisher.

A stream is an iterator of ``Entry``. Paths are relative to the publish target, use ``/``,
and ``""`` names the target directory itself. Contract for producers and consumers: the
content of a regular-file entry is readable only until the next entry is requested, so a
tarball or an image layer never has to be unpacked to disk; the consumer reads it at once.
A producer that must read content before it knows the final tree (image layers with
whiteouts) stores it early with ``PublishSession.store`` and sets ``Entry.stored``.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn, Protocol

from .cvmfs.names import RESERVED, check_name, check_symlink_target, shown
from .errors import InvalidPath


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"  # ``target`` is the stream path of an earlier regular file
    FIFO = "fifo"
    CHAR = "chardev"
    BLOCK = "blockdev"


SPECIAL_KINDS = (Kind.FIFO, Kind.CHAR, Kind.BLOCK)


class StoredContent(Protocol):
    """A file's bytes already handed to a publish session (``PublishSession.store``)."""

    size: int


class Content(Protocol):
    """A way to read a regular file's bytes once."""

    def open(self) -> BinaryIO: ...


@dataclass(frozen=True, slots=True)
class BytesContent:
    data: bytes

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


class BlockStream(io.RawIOBase):
    """A read-only file object over an iterator of byte blocks (chunks, downloads)."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        super().__init__()
        self.blocks: Iterator[bytes] = iter(blocks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        while not self.pending:
            self.pending = next(self.blocks, b"")
            if not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


@dataclass(frozen=True, slots=True)
class PathContent:
    """A file on disk: stable, so it can be read later and in another thread.

    ``signature``: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) when the producer saw
    it, if it did. Any write changes the ctime and a replaced file has another inode, so an
    equal signature later means unchanged content (modulo writes within the clock's
    resolution): a publisher that remembers what it stored need not open the file again.
    """

    path: Path | str
    signature: tuple[int, int, int, int, int] | None = None

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


@dataclass(frozen=True, slots=True)
class OpenerContent:
    """Content behind a callable, e.g. ``lambda: open(path, "rb")`` or a tar member."""

    opener: Callable[[], BinaryIO]

    def open(self) -> BinaryIO:
        return self.opener()


@dataclass(frozen=True)
class Owner:
    """Replace every uid/gid, as ``cvmfs_server ingest -u/-g`` does."""

    uid: int
    gid: int

    @classmethod
    def parse(cls, text: str) -> Owner:
        try:
            uid, gid = (int(part) for part in text.split(":"))
        except ValueError:
            raise InvalidPath(f"owner {text!r} is not UID:GID") from None
        if uid < 0 or gid < 0:
            raise InvalidPath(f"owner {text!r} is not UID:GID")
        return cls(uid, gid)


@dataclass(eq=False, slots=True)
class Subtree:
    """What a producer saw of a directory's whole subtree before streaming it.

    A consumer that already holds that subtree as it was (the engine: a nested catalog
    written from the same source) calls ``skip`` and the producer leaves out everything
    below the directory; ``entries`` still gives those entries if the consumer finds out
    later that it needs them. ``digest`` covers the directory's own mode, owner and mtime
    and, below it, every name and ``lstat`` (kind, mode, owner, size, times, inode,
    device): a write, chmod, chown or replacement moves an inode's change time, and a
    symlink's target cannot change in place. None: hard links inside, whose group reaches
    beyond the subtree. ``newest_ns``: the latest file mtime or ctime,
    because a write in the same clock tick as the ``lstat`` leaves the signature unchanged.
    """

    digest: bytes | None
    newest_ns: int
    files: int
    size: int
    entries: Callable[[], Iterator[Entry]]
    skipped: bool = False

    def skip(self) -> None:
        self.skipped = True


@dataclass(slots=True)
class Entry:
    path: str
    kind: Kind
    mode: int = 0o644  # permission bits including setuid/setgid/sticky (07777)
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    content: Content | None = None
    target: str = ""  # symlink target, or hard-link target path for Kind.HARDLINK
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device
    xattrs: dict[str, bytes] = field(default_factory=dict)
    # Content already handed to the session (``PublishSession.store``), e.g. by the unpacker,
    # which must consume each image layer while streaming it. Takes precedence over content.
    stored: StoredContent | None = None
    # a directory's, from producers that can leave it out; not part of what the entry is
    subtree: Subtree | None = field(default=None, compare=False, repr=False)


def clean_member_path(name: str, what: str = "member") -> str:
    """A producer-supplied path as a stream path, refusing anything that would escape.

    ``./a//b/`` becomes ``a/b``; absolute paths and ``..`` components are errors rather than
    being clamped, because a publish that silently lands elsewhere is worse than none. What
    remains must pass the name rules (``cvmfs.names``).
    """
    if name.startswith("/"):
        raise InvalidPath(f"{what} {shown(name)} is an absolute path and would escape the "
                          "target")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPath(f"{what} {shown(name)} contains '..' and would escape the target")
    for part in parts:
        check_name(part, what, name)
    return "/".join(parts)


_Shape = dict[str, "_Shape | Kind"]  # a directory: its children; anything else: its kind


class _StreamShape:
    """What a stream has made of each path so far, to check every entry against it.

    The same tree the engine stages: parents a stream leaves out are directories, a
    directory described twice keeps its children, anything else replaces what was there
    (its children with it), and a hard link counts as the regular file it shares.
    """

    def __init__(self, target: str) -> None:
        self.top: _Shape | Kind = {}
        self.at_root = target == ""

    def admit(self, entry: Entry) -> None:
        if entry.kind is Kind.SYMLINK:
            check_symlink_target(entry.target, "entry", entry.path)
        if entry.kind is Kind.HARDLINK:
            self._check_link(entry)
        if entry.path == "":
            self._set_top(entry.kind)
            return
        parts = entry.path.split("/")
        directory = self._directory(entry.path, parts[:-1])
        name = parts[-1]
        old = directory.get(name)
        if old is None:
            self._check_new(entry.path, name, len(parts) == 1)
        if entry.kind is Kind.DIR:
            directory[name] = old if isinstance(old, dict) else {}
        else:
            directory[name] = Kind.FILE if entry.kind is Kind.HARDLINK else entry.kind

    def _check_link(self, entry: Entry) -> None:
        if entry.path == "":
            raise InvalidPath("the top of a publish cannot be a hard link")
        if self._kind(entry.target) is not Kind.FILE:
            raise InvalidPath(f"hard link {shown(entry.path)} points to {shown(entry.target)}, "
                              "which is not a regular file published before it")

    def _set_top(self, kind: Kind) -> None:
        if kind is Kind.DIR:
            self.top = self.top if isinstance(self.top, dict) else {}
        elif isinstance(self.top, dict) and self.top:
            raise InvalidPath("the top of a publish that has contents must be a directory")
        else:
            self.top = kind

    def _directory(self, path: str, parts: list[str]) -> _Shape:
        """The directory holding ``path``, creating the parents a stream left out."""
        node = self.top
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                _not_a_directory(path, parts[:depth], node)
            child = node.get(part)
            if child is None:
                self._check_new(path, part, depth == 0)
                child = node[part] = {}
            node = child
        if not isinstance(node, dict):
            _not_a_directory(path, parts, node)
        return node

    def _check_new(self, path: str, name: str, at_top: bool) -> None:
        check_name(name, "entry", path)
        if at_top and self.at_root and name == RESERVED:
            raise InvalidPath(f"entry {shown(path)}: /{RESERVED} is reserved for CVMFS itself")

    def _kind(self, path: str) -> Kind | None:
        node: _Shape | Kind | None = self.top
        for part in path.split("/") if path else []:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
        return Kind.DIR if isinstance(node, dict) else node


def _not_a_directory(path: str, parents: list[str], kind: Kind) -> NoReturn:
    what = "/".join(parents) if parents else "the top of a publish that has contents"
    raise InvalidPath(f"{shown(path)}: {what} is a {kind.value}, not a directory")


def checked_stream(entries: Iterable[Entry], target: str) -> Iterator[Entry]:
    """The stream rules every backend enforces, checked as entries pass by.

    ``target`` is the catalog path the stream replaces (``""``: the root). Every name
    passes the name rules once, when the stream first uses it (``/.cvmfs`` is reserved);
    symlink targets pass theirs; a hard link names an earlier regular file of the same
    stream; nothing lies below a path the stream made a non-directory; the stream's top
    (``""``) is a directory unless it is the only entry, and never a hard link.
    """
    shape = _StreamShape(target)
    for entry in entries:
        shape.admit(entry)
        yield entry
