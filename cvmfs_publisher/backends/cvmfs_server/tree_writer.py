"""Writing staged entries into ``cvmfs_server``'s writable tree, never through a symlink.

Everything below ``/cvmfs/<fqrn>`` is reached component by component with ``O_NOFOLLOW``
directory descriptors, so a symlink in the published tree (``/sw -> /etc``) can never
redirect a write outside the repository. Directory attributes are set after their
children are written, because writing a child changes its directory's mtime. What the
host cannot reproduce (owners when not root, device files without CAP_MKNOD, extended
attributes the file system refuses) is reported, not silently lost.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...entries import Entry, Kind
from ...errors import InvalidPath, PathNotFound, SourceError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DEVICE_BITS = {Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK}
Parts = tuple[str, ...]
KEEP_OPEN = 64  # directory descriptors kept for the path being written


@dataclass
class _Attributes:
    mode: int
    uid: int
    gid: int
    mtime: int
    xattrs: dict[str, bytes] = field(default_factory=dict)


def split(path: str) -> Parts:
    return tuple(p for p in path.split("/") if p)


class TreeWriter:
    """Applies replacements and removals below ``root`` (the union mount of one repository)."""

    def __init__(self, root: Path, owner: tuple[int, int] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.root = root
        self.owner = owner
        self.progress = progress
        self.warnings: list[str] = []
        self.files = self.bytes = 0
        self._fds: dict[Parts, int] = {}
        self._chown_refused = False

    # -- directory descriptors ------------------------------------------------------------

    def _directory(self, parts: Parts, *, create: bool) -> int:
        """An open descriptor of ``root/parts``, refusing symlinks and non-directories.

        Opened component by component from the deepest open ancestor; only ancestors of
        the latest directory stay open (at most ``KEEP_OPEN``), since streams come
        parents first, so neither wide nor deep trees run out of descriptors.
        """
        if parts in self._fds:
            return self._fds[parts]
        self._keep_ancestors_of(parts)
        depth = max((len(k) for k in self._fds if parts[:len(k)] == k), default=-1)
        if depth < 0:
            self._fds[()] = os.open(self.root, DIR_FLAGS)
            depth = 0
        for end in range(depth + 1, len(parts) + 1):
            self._fds[parts[:end]] = self._open_child(self._fds[parts[:end - 1]],
                                                      parts[:end], create)
        return self._fds[parts]

    def _keep_ancestors_of(self, parts: Parts) -> None:
        chain = [k for k in self._fds if parts[:len(k)] == k]
        keep = set(sorted(chain, key=len)[-KEEP_OPEN:]) | ({()} if () in self._fds else set())
        for key in [k for k in self._fds if k not in keep]:
            os.close(self._fds.pop(key))

    def _open_child(self, parent: int, parts: Parts, create: bool) -> int:
        name = parts[-1]
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise PathNotFound(f"/{'/'.join(parts)} does not exist") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            self._set_owner_at(parent, name, *self._default_owner())
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidPath(f"/{'/'.join(parts)} is a symlink or not a directory in the "
                                  "repository; refusing to write through it") from None
            raise

    def _forget(self, parts: Parts) -> None:
        for key in [k for k in self._fds if k[: len(parts)] == parts]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        self._forget(())

    # -- removing -------------------------------------------------------------------------

    def remove(self, path: str) -> bool:
        """Delete ``path`` and everything below it; False if it does not exist."""
        parts = split(path)
        if not parts:
            raise InvalidPath("refusing to remove the repository root")
        try:
            parent = self._directory(parts[:-1], create=False)
        except PathNotFound:
            return False
        self._forget(parts)
        return _remove_at(parent, parts[-1])

    # -- writing ----------------------------------------------------------------------------

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        """Make ``path`` hold exactly ``entries`` (stream paths relative to ``path``)."""
        base = split(path)
        if base:
            self._directory(base[:-1], create=True)
            self.remove(path)
        else:
            root = self._directory((), create=False)
            for name in os.listdir(root):
                _remove_at(root, name)
        directories: list[tuple[Parts, _Attributes]] = []
        for entry in entries:
            parts = base + split(entry.path)
            if not parts:  # the repository root keeps its own attributes
                continue
            attributes = self._attributes(entry)
            if entry.kind is Kind.DIR:
                self._make_directory(parts)
                directories.append((parts, attributes))
            else:
                self._write_leaf(parts, entry, base, attributes)
        for parts, attributes in sorted(directories, key=lambda d: len(d[0]), reverse=True):
            self._finish_directory(parts, attributes)

    def _attributes(self, entry: Entry) -> _Attributes:
        uid, gid = self.owner or (entry.uid, entry.gid)
        return _Attributes(entry.mode & 0o7777, uid, gid, entry.mtime, dict(entry.xattrs))

    def _make_directory(self, parts: Parts) -> None:
        parent = self._directory(parts[:-1], create=True)
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a stream that describes a path twice
                _remove_at(parent, parts[-1])
                os.mkdir(parts[-1], 0o700, dir_fd=parent)

    def _finish_directory(self, parts: Parts, attributes: _Attributes) -> None:
        fd = self._directory(parts, create=False)
        self._set_xattrs(fd, parts, attributes.xattrs)
        self._set_owner(fd, attributes.uid, attributes.gid)
        os.fchmod(fd, attributes.mode)
        os.utime(fd, (attributes.mtime, attributes.mtime))

    def _write_leaf(self, parts: Parts, entry: Entry, base: Parts,
                    attributes: _Attributes) -> None:
        parent = self._directory(parts[:-1], create=True)
        name = parts[-1]
        _remove_at(parent, name)  # a stream may describe a path twice; the last one wins
        if entry.kind is Kind.FILE:
            self._write_file(parent, parts, entry, attributes)
        elif entry.kind is Kind.HARDLINK:
            target = base + split(entry.target)
            source = self._directory(target[:-1], create=False)
            os.link(target[-1], name, src_dir_fd=source, dst_dir_fd=parent,
                    follow_symlinks=False)
        elif entry.kind is Kind.SYMLINK:
            os.symlink(entry.target, name, dir_fd=parent)
            self._set_owner_at(parent, name, attributes.uid, attributes.gid)
            os.utime(name, (attributes.mtime,) * 2, dir_fd=parent, follow_symlinks=False)
        else:
            self._write_special(parent, name, parts, entry, attributes)

    def _write_file(self, parent: int, parts: Parts, entry: Entry,
                    attributes: _Attributes) -> None:
        if entry.content is None:
            raise SourceError(f"file entry {entry.path!r} has no content")
        fd = os.open(parts[-1], FILE_FLAGS, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as sink, entry.content.open() as source:
            size = _copy(source, sink)
            self._set_xattrs(fd, parts, attributes.xattrs)
            self._set_owner(fd, attributes.uid, attributes.gid)
            os.fchmod(fd, attributes.mode)
            sink.flush()
            os.utime(fd, (attributes.mtime, attributes.mtime))
        self.files += 1
        self.bytes += size
        if self.progress is not None:
            self.progress(1, size)

    def _write_special(self, parent: int, name: str, parts: Parts, entry: Entry,
                       attributes: _Attributes) -> None:
        shown = "/" + "/".join(parts)
        try:
            if entry.kind is Kind.FIFO:
                os.mkfifo(name, 0o600, dir_fd=parent)
            else:
                os.mknod(name, 0o600 | DEVICE_BITS[entry.kind], os.makedev(*entry.rdev),
                         dir_fd=parent)
        except PermissionError:
            self.warnings.append(f"{shown}: {entry.kind.value} not created (needs root)")
            return
        self._set_owner_at(parent, name, attributes.uid, attributes.gid)
        os.chmod(name, attributes.mode, dir_fd=parent)
        os.utime(name, (attributes.mtime,) * 2, dir_fd=parent)

    # -- attributes -----------------------------------------------------------------------

    def _default_owner(self) -> tuple[int, int]:
        return self.owner or (os.geteuid(), os.getegid())

    def _set_owner(self, fd: int, uid: int, gid: int) -> None:
        self._chown(lambda: os.fchown(fd, uid, gid), uid, gid)

    def _set_owner_at(self, parent: int, name: str, uid: int, gid: int) -> None:
        self._chown(lambda: os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False),
                    uid, gid)

    def _chown(self, change: Callable[[], None], uid: int, gid: int) -> None:
        if (uid, gid) == (os.geteuid(), os.getegid()) or self._chown_refused:
            return
        try:
            change()
        except PermissionError:
            self._chown_refused = True
            self.warnings.append("owners were not kept: only root may give files to other "
                                 "users (set 'owner' in the config to choose one)")

    def _set_xattrs(self, fd: int, parts: Parts, xattrs: dict[str, bytes]) -> None:
        for key, value in xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                self.warnings.append(f"/{'/'.join(parts)}: extended attribute {key} not kept "
                                     f"({exc.strerror})")


def _remove_at(parent: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        _remove_tree(parent, name)
    else:
        os.unlink(name, dir_fd=parent)
    return True


def _open_below(parent: int, names: list[str]) -> int:
    """A descriptor of ``parent/names...``, never through a symlink."""
    fd = os.dup(parent)
    for name in names:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _remove_tree(parent: int, name: str) -> None:
    """``rm -r`` without recursion or following symlinks: the deepest directory first.

    ``shutil.rmtree`` recurses once per level; a published tree may be 1,000 levels deep.
    """
    stack = [name]
    while stack:
        fd = _open_below(parent, stack)
        try:
            with os.scandir(fd) as listing:
                entries = list(listing)
            subdir = next((e.name for e in entries if e.is_dir(follow_symlinks=False)), None)
            if subdir is None:
                for entry in entries:
                    os.unlink(entry.name, dir_fd=fd)
        finally:
            os.close(fd)
        if subdir is not None:
            stack.append(subdir)
            continue
        above = _open_below(parent, stack[:-1])
        try:
            os.rmdir(stack.pop(), dir_fd=above)
        finally:
            os.close(above)


def _copy(source, sink) -> int:  # type: ignore[no-untyped-def]
    size = 0
    while block := source.read(1 << 20):
        sink.write(block)
        size += len(block)
    return size
