"""A published revision of a classic repository, read from its read-only mount.

``cvmfs_server`` keeps the current revision mounted read-only at
``/var/spool/cvmfs/<fqrn>/rdonly`` (the lower layer of its union mount), so it shows what
clients see even while a transaction is open. Paths are resolved without following
symlinks, as catalog lookups are: ``/a/b`` does not exist when ``/a`` is a symlink.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ...entries import Kind
from ...errors import PathNotFound
from ...publisher import PathInfo, TreeView
from .tree_writer import split

KINDS = {stat.S_IFDIR: Kind.DIR, stat.S_IFREG: Kind.FILE, stat.S_IFLNK: Kind.SYMLINK,
         stat.S_IFIFO: Kind.FIFO, stat.S_IFCHR: Kind.CHAR, stat.S_IFBLK: Kind.BLOCK}


def path_info(name: str, path: Path) -> PathInfo | None:
    st = os.lstat(path)
    kind = KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:  # sockets: never published
        return None
    target = os.readlink(path) if kind is Kind.SYMLINK else ""
    size = st.st_size if kind is Kind.FILE else len(os.fsencode(target))
    rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in (Kind.CHAR, Kind.BLOCK) \
        else (0, 0)
    return PathInfo(name, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                    int(st.st_mtime), size, target, st.st_nlink, rdev)


class DirectoryView(TreeView):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _resolve(self, path: str) -> Path | None:
        """The file system path of a repository path, or None if a parent is no directory."""
        current = self.root
        for part in split(path):
            try:
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    return None
            except FileNotFoundError:
                return None
            current = current / part
        return current

    def lookup(self, path: str) -> PathInfo | None:
        resolved = self._resolve(path)
        if resolved is None:
            return None
        try:
            return path_info(resolved.name if split(path) else "", resolved)
        except FileNotFoundError:
            return None

    def _require(self, path: str, kind: Kind) -> Path:
        found = self.lookup(path)
        resolved = self._resolve(path)
        if found is None or found.kind is not kind or resolved is None:
            raise PathNotFound(f"{path or '/'} is not a {kind.value} in {self.root}")
        return resolved

    def listdir(self, path: str) -> list[PathInfo]:
        resolved = self._require(path, Kind.DIR)
        infos = (path_info(name, resolved / name) for name in sorted(os.listdir(resolved)))
        return [info for info in infos if info is not None]

    def read(self, path: str) -> Iterator[bytes]:
        resolved = self._require(path, Kind.FILE)
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            while block := handle.read(1 << 20):
                yield block
