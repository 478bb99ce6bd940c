"""A directory tree as an entry stream: sorted, parents first, hard links by inode.

Each file's content carries the ``lstat`` the walk made (``PathContent.signature``),
so a publisher that remembers what it stored can skip files that did not change without
opening or stat-ing them again; each directory carries a print of everything below it
(``entries.Subtree``), so a publisher that holds that subtree already can skip it whole.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..cvmfs.names import NAME_MAX, check_name, check_symlink_target
from ..entries import Entry, Kind, PathContent, Subtree
from ..errors import SourceError

log = logging.getLogger(__name__)


class _Stat(NamedTuple):
    """What the walk keeps of an ``lstat`` until the entry is streamed: a fifth of the
    memory of an ``os.stat_result``, which holds every time three ways."""

    st_mode: int
    st_uid: int
    st_gid: int
    st_size: int
    st_mtime: int  # whole seconds, as entries carry them
    st_mtime_ns: int
    st_ctime_ns: int
    st_ino: int
    st_dev: int
    st_rdev: int


def _kept(st: os.stat_result) -> _Stat:
    return tuple.__new__(_Stat, (st.st_mode, st.st_uid, st.st_gid, st.st_size, int(st.st_mtime),
                                 st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
                                 st.st_rdev))


def file_entry(path: Path | str, rel: str, st: os.stat_result | _Stat) -> Entry:
    content = PathContent(path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                 st.st_ctime_ns))
    return Entry(rel, Kind.FILE, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                 int(st.st_mtime), st.st_size, content)


_Child = tuple[str, _Stat, "str | None", "_Listed | None"]


@dataclass(eq=False, slots=True)
class _Listed:
    """A directory as scanned: each child's name, ``lstat``, the stream path of the first
    link to its inode if it is a later link, and its own listing if it is a directory."""

    path: str
    rel: str
    st: _Stat
    children: list[_Child] = field(default_factory=list)
    subtree: Subtree | None = None


def directory_entries(root: Path) -> Iterator[Entry]:
    """Walk a tree in sorted order, parents first; hard links by (device, inode).

    Scanned at the first entry; ``scan_directory`` scans at once.
    """
    yield from scan_directory(root)[0]


def scan_directory(root: Path) -> tuple[Iterator[Entry], Subtree]:
    """The whole tree ``lstat``-ed now (so unreadable parts fail now), and its entries to
    stream; the top's ``Subtree`` counts the files and bytes (a progress bar's total).

    Every directory entry carries a ``Subtree`` print: a consumer that skips a subtree pays
    one ``lstat`` per file below it and no entry. Paths are plain strings: a ``Path`` per
    entry cost more than the ``lstat``.
    """
    top, order, linked = _scan(root)
    for listed in reversed(order):  # children were listed after their parents
        listed.subtree = _subtree(listed, linked)
    assert top.subtree is not None
    return _stream(top, top.subtree), top.subtree


def _stream(top: _Listed, subtree: Subtree) -> Iterator[Entry]:
    st = top.st
    yield Entry("", Kind.DIR, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_mtime, subtree=subtree)
    if not subtree.skipped:
        yield from _emit(top.path, top.rel, top.children)


def _scan(root: Path) -> tuple[_Listed, list[_Listed], set[tuple[int, int]]]:
    """Every directory listed and every entry ``lstat``-ed, in the order the walk streams;
    also the (device, inode) of every file with more than one link."""
    try:
        top = _Listed(os.fspath(root), "", _kept(root.stat()))
    except OSError as exc:
        raise SourceError(f"cannot read source {root}: {exc.strerror}") from None
    seen: dict[tuple[int, int], str] = {}
    order = [top]
    stack = [top]
    while stack:
        subdirs = _list(stack.pop(), seen)
        order.extend(subdirs)
        stack.extend(reversed(subdirs))
    return top, order, set(seen)


def _list(listed: _Listed, seen: dict[tuple[int, int], str]) -> list[_Listed]:
    """Fill in one directory's children; returns its subdirectories, names sorted.

    ``seen``: the stream path of the first link to each inode with several links.
    """
    try:
        names = sorted(os.listdir(listed.path))
    except OSError as exc:
        raise SourceError(f"cannot list {listed.path}: {exc.strerror}") from None
    subdirs = []
    for name in names:
        if not name.isascii() or len(name) > NAME_MAX:  # else valid: listdir gives no
            check_name(name, f"{listed.path}: file")  # "", ".", "..", "/" or NUL
        path = f"{listed.path}/{name}"
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            child = _Listed(path, f"{listed.rel}/{name}" if listed.rel else name, _kept(st))
            subdirs.append(child)
            listed.children.append((name, child.st, None, child))
        elif stat.S_ISSOCK(mode):
            log.warning("skipping %s: sockets cannot be published", path)
        else:
            first = None
            if stat.S_ISREG(mode) and st.st_nlink > 1:
                rel = f"{listed.rel}/{name}" if listed.rel else name
                first = seen.setdefault((st.st_dev, st.st_ino), rel)
                first = first if first != rel else None
            listed.children.append((name, _kept(st), first, None))
    return subdirs


def _emit(path: str, rel: str, children: list[_Child]) -> Iterator[Entry]:
    """The entries below a directory, in the walk's order, leaving out skipped subtrees.

    Not given the ``_Listed`` itself: its subtree's ``entries`` calls this, and a listing
    holding its subtree holding the listing would be a cycle only the collector frees.
    """
    stack = [(path, rel, children)]
    while stack:
        here, here_rel, listing = stack.pop()
        subdirs = []
        for name, st, first, child in listing:
            path = f"{here}/{name}"
            rel = f"{here_rel}/{name}" if here_rel else name
            if child is None:
                yield _entry(path, rel, st, first)
                continue
            subtree = child.subtree
            yield Entry(rel, Kind.DIR, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_mtime, subtree=subtree)
            if subtree is None or not subtree.skipped:
                subdirs.append((child.path, child.rel, child.children))
        stack.extend(reversed(subdirs))


def _entry(path: str, rel: str, st: _Stat, first: str | None) -> Entry:
    """Anything but a directory (sockets were left out when listing)."""
    mode, perm = st.st_mode, stat.S_IMODE(st.st_mode)
    common = {"mode": perm, "uid": st.st_uid, "gid": st.st_gid, "mtime": st.st_mtime}
    if stat.S_ISREG(mode):
        if first is not None:
            return Entry(rel, Kind.HARDLINK, target=first, **common)
        return file_entry(path, rel, st)  # unreadable: the read says so
    if stat.S_ISLNK(mode):
        target = check_symlink_target(os.readlink(path), str(path))
        return Entry(rel, Kind.SYMLINK, target=target, **common)
    if stat.S_ISFIFO(mode):
        return Entry(rel, Kind.FIFO, **common)
    kind = Kind.CHAR if stat.S_ISCHR(mode) else Kind.BLOCK
    return Entry(rel, kind, rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)), **common)


def _subtree(listed: _Listed, linked: set[tuple[int, int]]) -> Subtree:
    """A directory's print, once its subdirectories have theirs.

    An inode's number and change time move with every write, chmod, chown or replacement
    (a symlink's target cannot change in place), so they stand for the content.
    """
    own = listed.st
    rows: list[tuple] = [(own.st_mode, own.st_uid, own.st_gid, own.st_mtime_ns)]
    newest = files = size = 0
    whole = True
    for name, st, _, child in listed.children:
        if child is not None:
            below = child.subtree
            assert below is not None, "subdirectories are printed first"
            whole = whole and below.digest is not None
            rows.append((name, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, below.digest))
            newest = max(newest, below.newest_ns)
            files, size = files + below.files, size + below.size
            continue
        if (st.st_dev, st.st_ino) in linked:
            whole = False
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
        if stat.S_ISREG(st.st_mode):
            files, size = files + 1, size + st.st_size
        rows.append((name, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                     st.st_ctime_ns, st.st_ino, st.st_dev, st.st_rdev))
    digest = hashlib.blake2b(repr(rows).encode(), digest_size=20).digest() if whole else None
    return Subtree(digest, newest, files, size,
                   functools.partial(_emit, listed.path, listed.rel, listed.children))
