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
from typing import BinaryIO, Protocol

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
    """A file on disk: stable, so it can be read later and in another thread."""

    path: Path

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


def clean_member_path(name: str, what: str = "member") -> str:
    """A producer-supplied path as a stream path, refusing anything that would escape.

    ``./a//b/`` becomes ``a/b``; absolute paths and ``..`` components are errors rather than
    being clamped, because a publish that silently lands elsewhere is worse than none.
    """
    if "\0" in name:
        raise InvalidPath(f"{what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise InvalidPath(f"{what} {name!r} is an absolute path and would escape the target")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPath(f"{what} {name!r} contains '..' and would escape the target")
    return "/".join(parts)


def checked_stream(entries: Iterable[Entry]) -> Iterator[Entry]:
    """The stream rules every backend enforces, checked as entries pass by.

    A hard link names an earlier regular file of the same stream; nothing lies below a
    path the stream made a non-directory; the stream's top (``""``) is a directory unless
    it is the only entry, and never a hard link.
    """
    kinds: dict[str, Kind] = {}
    for entry in entries:
        if entry.kind is Kind.HARDLINK and kinds.get(entry.target) is not Kind.FILE:
            raise InvalidPath(f"hard link {entry.path} points to {entry.target!r}, which is "
                              "not a regular file published before it")
        if entry.path == "" and entry.kind is Kind.HARDLINK:
            raise InvalidPath("the top of a publish cannot be a hard link")
        parts = entry.path.split("/") if entry.path else []
        for i in range(len(parts)):
            parent = "/".join(parts[:i])
            if parent in kinds and kinds[parent] is not Kind.DIR:
                what = "the top of a publish that has contents" if parent == "" else parent
                raise InvalidPath(f"{entry.path}: {what} is a {kinds[parent].value}, not a "
                                  "directory")
        kinds[entry.path] = Kind.FILE if entry.kind is Kind.HARDLINK else entry.kind
        yield entry
