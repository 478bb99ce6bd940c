"""A tarball (plain or gzip, bzip2, xz, zstd compressed) as an entry stream, member by member."""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..entries import Entry, Kind, OpenerContent, clean_member_path
from ..errors import SourceError

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.bz2", ".tar.xz")


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
