"""Producers of entry streams from what librarians hand us: a directory, a file, a tarball."""

from __future__ import annotations

import logging
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..errors import SourceError
from .entries import Entry, Kind, OpenerContent, PathContent, clean_member_path

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class SourceEstimate:
    """Totals for a progress bar; ``None`` where a stream cannot know in advance."""

    files: int | None
    bytes: int | None


def open_source(src: Path) -> tuple[Iterator[Entry], SourceEstimate]:
    """Pick the producer for a path given on the command line."""
    try:
        st = src.lstat()
    except FileNotFoundError:
        raise SourceError(f"source {src} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read source {src}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return directory_entries(src), estimate_directory(src)
    if stat.S_ISREG(st.st_mode) and src.name.endswith(TAR_SUFFIXES):
        return tarball_entries(src), SourceEstimate(None, st.st_size)
    if stat.S_ISREG(st.st_mode):
        return iter([_file_entry(src, "", st)]), SourceEstimate(1, st.st_size)
    raise SourceError(f"source {src} is neither a directory, a regular file nor a tarball")


def estimate_directory(root: Path) -> SourceEstimate:
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
    return SourceEstimate(files, total)


def _utf8(name: str, where: Path) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(f"file name in {where} is not valid UTF-8: {name!r}") from None
    return name


def _file_entry(path: Path, rel: str, st: os.stat_result) -> Entry:
    return Entry(rel, Kind.FILE, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                 int(st.st_mtime), st.st_size, PathContent(path))


def directory_entries(root: Path) -> Iterator[Entry]:
    """Walk a tree in sorted order, parents first; hard links by (device, inode)."""
    try:
        st = root.stat()
    except OSError as exc:
        raise SourceError(f"cannot read source {root}: {exc.strerror}") from None
    yield Entry("", Kind.DIR, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime))
    seen_inodes: dict[tuple[int, int], str] = {}
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            names = sorted(os.listdir(directory))
        except OSError as exc:
            raise SourceError(f"cannot list {directory}: {exc.strerror}") from None
        subdirs = []
        for name in names:
            path = directory / _utf8(name, directory)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            entry = _stat_entry(path, rel, seen_inodes)
            if entry is None:
                continue
            yield entry
            if entry.kind is Kind.DIR:
                subdirs.append((path, rel))
        stack.extend(reversed(subdirs))


def _stat_entry(path: Path, rel: str, seen: dict[tuple[int, int], str]) -> Entry | None:
    try:
        st = path.lstat()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    mode, perm = st.st_mode, stat.S_IMODE(st.st_mode)
    common = {"mode": perm, "uid": st.st_uid, "gid": st.st_gid, "mtime": int(st.st_mtime)}
    if stat.S_ISREG(mode):
        if st.st_nlink > 1:
            first = seen.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                return Entry(rel, Kind.HARDLINK, target=first, **common)
        if not os.access(path, os.R_OK):
            raise SourceError(f"cannot read {path}: permission denied")
        return _file_entry(path, rel, st)
    if stat.S_ISDIR(mode):
        return Entry(rel, Kind.DIR, **common)
    if stat.S_ISLNK(mode):
        return Entry(rel, Kind.SYMLINK, target=os.readlink(path), **common)
    if stat.S_ISFIFO(mode):
        return Entry(rel, Kind.FIFO, **common)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = Kind.CHAR if stat.S_ISCHR(mode) else Kind.BLOCK
        return Entry(rel, kind, rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)), **common)
    log.warning("skipping %s: sockets cannot be published", path)
    return None


def _open_archive(path: Path) -> tuple[tarfile.TarFile, BinaryIO]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by tarball_entries
    try:
        if path.name.endswith((".tar.zst", ".tar.zstd")):
            stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
            return tarfile.open(fileobj=stream, mode="r|"), stream  # type: ignore[arg-type]
        return tarfile.open(fileobj=raw, mode="r|*"), raw
    except (tarfile.TarError, OSError, zstandard.ZstdError) as exc:
        raw.close()
        raise SourceError(f"{path} is not a readable tarball: {exc}") from None


def tarball_entries(path: Path) -> Iterator[Entry]:
    """Stream a tarball member by member; nothing is extracted to disk."""
    archive, handle = _open_archive(path)
    try:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
                raise SourceError(f"{path}: broken tarball ({exc})") from None
            if member is None:
                return
            entry = member_entry(archive, member, str(path))
            if entry is not None:
                yield entry
    finally:
        archive.close()
        handle.close()


XATTR_PREFIX = "SCHILY.xattr."


def member_xattrs(member: tarfile.TarInfo, where: str) -> dict[str, bytes]:
    """PAX ``SCHILY.xattr.*`` records; what the catalog format cannot hold is dropped loudly."""
    result = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(XATTR_PREFIX):
            continue
        name = key[len(XATTR_PREFIX):]
        data = value.encode("utf-8", "surrogateescape")
        if not 0 < len(name.encode()) <= 255 or len(data) > 255:
            log.warning("%s: dropping extended attribute %s (CVMFS keeps at most 255 bytes)",
                        where, name)
            continue
        result[name] = data
    return result


def member_entry(archive: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> Entry | None:
    """One tar member as an entry; shared with the unpacker's layer reader."""
    rel = clean_member_path(member.name, f"{where}: member")
    common = {"mode": member.mode & 0o7777, "uid": member.uid, "gid": member.gid,
              "mtime": int(member.mtime), "xattrs": member_xattrs(member, f"{where}: {rel}")}
    if member.isreg():
        def opener(m: tarfile.TarInfo = member) -> BinaryIO:
            handle = archive.extractfile(m)
            assert handle is not None
            return handle  # type: ignore[return-value]

        return Entry(rel, Kind.FILE, size=member.size, content=OpenerContent(opener), **common)
    if member.isdir():
        return Entry(rel, Kind.DIR, **common)
    if member.issym():
        return Entry(rel, Kind.SYMLINK, target=member.linkname, **common)
    if member.islnk():
        target = clean_member_path(member.linkname, f"{where}: hard link target of {rel}")
        return Entry(rel, Kind.HARDLINK, target=target, **common)
    if member.isfifo():
        return Entry(rel, Kind.FIFO, **common)
    if member.ischr() or member.isblk():
        kind = Kind.CHAR if member.ischr() else Kind.BLOCK
        return Entry(rel, kind, rdev=(member.devmajor, member.devminor), **common)
    log.warning("%s: skipping member %s of unsupported type %r", where, rel, member.type)
    return None
