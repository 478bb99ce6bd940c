"""A tarball (plain or gzip, bzip2, xz, zstd compressed) as an entry stream, member by member.

A damaged archive must publish nothing, so nothing about its end is taken on trust:
the compression is recognised by its magic bytes and decoded by us, the tar must end with
an end-of-archive block (``tarfile`` treats a missing, cut or garbled one as a normal
end), and after the last member the compressed stream is read to its end so that every
integrity check of the format runs (gzip CRC-32 and length, xz check, zstd content
checksum, bzip2 CRCs). All of it happens while the stream is consumed, before any backend
commits; every failure is a one-line ``SourceError`` naming the archive.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import logging
import lzma
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..cvmfs.names import check_symlink_target, shown
from ..entries import Content, Entry, Kind, OpenerContent, clean_member_path
from ..errors import SourceError

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.bz2", ".tar.xz")
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError,
                  zstandard.ZstdError)
READ_SIZE = 1 << 20
ZSTD_SLICE = 2048  # zstd inflates at most ~32,768:1, so one slice yields at most 64 MiB
MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")  # header, then a block or the end


class ZstdFrames(io.RawIOBase):
    """zstd frames one after another, each frame's content checksum verified.

    ``stream_reader`` ends silently when its input ends inside a frame; a decompressobj
    knows whether its frame is complete, so frames are decoded one by one with it.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self.raw = raw
        self.frame: zstandard.ZstdDecompressionObj | None = None
        self.input, self.at = b"", 0
        self.output = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        while not self.output:
            if not self._decode():
                return 0
        n = min(len(buffer), len(self.output))
        buffer[:n] = self.output[:n]
        self.output = self.output[n:]
        return n

    def _decode(self) -> bool:
        """Decode the next slice of input; False at a clean end between frames."""
        if self.at == len(self.input):
            self.input, self.at = self.raw.read(READ_SIZE), 0
            if not self.input:
                if self.frame is not None:
                    raise EOFError("zstd data ends inside a frame")
                return False
        if self.frame is None:
            self.frame = zstandard.ZstdDecompressor().decompressobj()
        piece = self.input[self.at:self.at + ZSTD_SLICE]
        self.at += len(piece)
        self.output = memoryview(self.frame.decompress(piece))
        if self.frame.eof:
            self.input, self.at = self.frame.unused_data + self.input[self.at:], 0
            self.frame = None
        return True


def _decompressed(raw: BinaryIO) -> tuple[str, BinaryIO]:
    """(compression, decoded stream) of an archive file, recognised by its first bytes."""
    head = raw.read(10)
    raw.seek(0)
    kind = next((name for magic, name in MAGIC.items() if head.startswith(magic)), "tar")
    if BZIP2.match(head):  # "BZh" alone could begin a tar member's name
        kind = "bzip2"
    if kind == "gzip":
        return kind, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return kind, bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "xz":
        return kind, lzma.LZMAFile(raw)  # type: ignore[return-value]
    if kind == "zstd":
        return kind, io.BufferedReader(ZstdFrames(raw), READ_SIZE)  # type: ignore[return-value]
    return kind, raw


class TarInput:
    """The decoded archive as ``tarfile``'s random-access mode reads it: only forward.

    Remembers the last block handed out: after the last member ``tarfile`` reads one more
    header, and that block is the end-of-archive block or the archive is damaged.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.pos = 0
        self.last = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.pos += len(data)
        self.last = data[-tarfile.BLOCKSIZE:]  # a header read is one block; keep no more
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.pos:
            raise io.UnsupportedOperation("an archive is read forward only")
        while self.pos < target and self.read(min(target - self.pos, READ_SIZE)):
            pass
        return self.pos

    def drain(self) -> None:
        """Read to the end, so the compressor's trailer and checksums are checked."""
        while self.stream.read(READ_SIZE):
            pass


class _Translated(io.RawIOBase):
    """A member's content whose read errors become a ``SourceError`` naming the archive:
    the engine reads it in its own code, which only expects ``PublisherError``s."""

    def __init__(self, inner: BinaryIO, what: str) -> None:
        super().__init__()
        self.inner, self.what = inner, what

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with _archive_errors(self.what):
            return self.inner.read(-1 if size is None else size)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        with _archive_errors(self.what):
            return self.inner.readinto(buffer)

    def close(self) -> None:
        self.inner.close()
        super().close()


@dataclass(frozen=True, slots=True)
class _TranslatedContent:
    content: Content
    what: str

    def open(self) -> BinaryIO:
        with _archive_errors(self.what):
            return _Translated(self.content.open(), self.what)  # type: ignore[return-value]


@contextlib.contextmanager
def _archive_errors(what: str) -> Iterator[None]:
    """Errors of reading and decoding an archive as one line: ``what (the error)``."""
    try:
        yield
    except ARCHIVE_ERRORS as exc:
        raise SourceError(f"{what} ({exc})") from None


def tarball_entries(path: Path) -> Iterator[Entry]:
    """Stream a tarball member by member; nothing is extracted to disk."""
    with _archive_errors(f"cannot read {path}"):
        raw = open(path, "rb")  # noqa: SIM115 - closed below, also when the stream is dropped
    with raw:
        with _archive_errors(f"cannot read {path}"):
            kind, stream = _decompressed(raw)
        with stream:
            yield from _members(TarInput(stream), f"{path}: damaged {kind} archive", str(path))


def _members(source: TarInput, damaged: str, where: str) -> Iterator[Entry]:
    """Every member, then the end-of-archive block and the rest of the compressed stream."""
    with _archive_errors(damaged):
        archive = tarfile.open(fileobj=source, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115
    with archive:
        while True:
            with _archive_errors(damaged):
                member = archive.next()
            if member is None:
                break
            entry = member_entry(archive, member, where)
            if entry is not None and entry.content is not None:
                entry.content = _TranslatedContent(entry.content, damaged)
            if entry is not None:
                yield entry
    _check_end(source, archive.offset, where)
    with _archive_errors(damaged):
        source.drain()


def _check_end(source: TarInput, offset: int, where: str) -> None:
    """``tarfile`` ends quietly at a short, missing or garbled header; we do not."""
    block = source.last
    if len(block) < tarfile.BLOCKSIZE:
        raise SourceError(f"{where}: truncated tar archive (it ends at byte "
                          f"{offset + len(block)} without an end-of-archive block)")
    if block.count(0) != tarfile.BLOCKSIZE:
        raise SourceError(f"{where}: damaged tar archive (no valid header at byte {offset})")


XATTR_PREFIX = "SCHILY.xattr."


def member_xattrs(member: tarfile.TarInfo, where: str) -> dict[str, bytes]:
    """PAX ``SCHILY.xattr.*`` records; what the catalog format cannot hold is dropped loudly."""
    result = {}
    for key, value in member.pax_headers.items():
        if not key.startswith(XATTR_PREFIX):
            continue
        name = key[len(XATTR_PREFIX):]
        data = value.encode("utf-8", "surrogateescape")
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            size = 0  # a name that is not UTF-8 cannot be stored
        if not 0 < size <= 255 or len(data) > 255:
            log.warning("%s: dropping extended attribute %s (CVMFS keeps UTF-8 names and at "
                        "most 255 bytes)", where, shown(name))
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
        target = check_symlink_target(member.linkname, f"{where}: member", rel)
        return Entry(rel, Kind.SYMLINK, target=target, **common)
    if member.islnk():
        target = clean_member_path(member.linkname, f"{where}: hard link target of {shown(rel)}")
        return Entry(rel, Kind.HARDLINK, target=target, **common)
    if member.isfifo():
        return Entry(rel, Kind.FIFO, **common)
    if member.ischr() or member.isblk():
        kind = Kind.CHAR if member.ischr() else Kind.BLOCK
        return Entry(rel, kind, rdev=(member.devmajor, member.devminor), **common)
    log.warning("%s: skipping member %s of unsupported type %r", where, rel, member.type)
    return None
