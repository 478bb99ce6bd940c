"""A directory tree as an entry stream: sorted, parents first, hard links by inode.

Each file's content carries the ``lstat`` the walk made (``PathContent.signature``),
so a publisher that remembers what it stored can skip files that did not change without
opening or stat-ing them again.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..cvmfs.names import check_name, check_symlink_target
from ..entries import Entry, Kind, PathContent
from ..errors import SourceError

log = logging.getLogger(__name__)


def file_entry(path: Path | str, rel: str, st: os.stat_result) -> Entry:
    content = PathContent(path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                 st.st_ctime_ns))
    return Entry(rel, Kind.FILE, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                 int(st.st_mtime), st.st_size, content)


def directory_entries(root: Path) -> Iterator[Entry]:
    """Walk a tree in sorted order, parents first; hard links by (device, inode).

    Paths are plain strings: a ``Path`` per entry cost more than the ``lstat``.
    """
    try:
        st = root.stat()
    except OSError as exc:
        raise SourceError(f"cannot read source {root}: {exc.strerror}") from None
    yield Entry("", Kind.DIR, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
    seen_inodes: dict[tuple[int, int], str] = {}
    stack: list[tuple[str, str]] = [(os.fspath(root), "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise SourceError(f"cannot list {directory}: {exc.strerror}") from None
        subdirs = []
        for name in names:
            path = f"{directory}/{check_name(name, f'{directory}: file')}"
            rel = f"{rel_dir}/{name}" if rel_dir else name
            entry = _stat_entry(path, rel, seen_inodes)
            if entry is None:
                continue
            yield entry
            if entry.kind is Kind.DIR:
                subdirs.append((path, rel))
        stack.extend(reversed(subdirs))


def _stat_entry(path: str, rel: str, seen: dict[tuple[int, int], str]) -> Entry | None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    mode, perm = st.st_mode, stat.S_IMODE(st.st_mode)
    common = {"mode": perm, "uid": st.st_uid, "gid": st.st_gid, "mtime": int(st.st_mtime)}
    if stat.S_ISREG(mode):
        if st.st_nlink > 1:
            first = seen.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                return Entry(rel, Kind.HARDLINK, target=first, **common)
        return file_entry(path, rel, st)  # unreadable: the read says so
    if stat.S_ISDIR(mode):
        return Entry(rel, Kind.DIR, **common)
    if stat.S_ISLNK(mode):
        target = check_symlink_target(os.readlink(path), str(path))
        return Entry(rel, Kind.SYMLINK, target=target, **common)
    if stat.S_ISFIFO(mode):
        return Entry(rel, Kind.FIFO, **common)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = Kind.CHAR if stat.S_ISCHR(mode) else Kind.BLOCK
        return Entry(rel, kind, rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)), **common)
    log.warning("skipping %s: sockets cannot be published", path)
    return None


