"""Damaged archives publish nothing: every integrity check runs before a revision commits.

Each case starts from one valid archive with several members and breaks it in one way: a
compressor's checksum or length, a cut inside compressed data, a tar cut inside a header,
inside member data or right after a member (no end-of-archive block). Each goes through the
real CLI as a separate process, so a traceback would show on stderr; the oracle is the
manifest's revision on disk and the one-line error naming the archive. The same damage,
handed to either backend's session, is refused before anything can commit.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from cliprocess import run_cli_process
from publishers import BACKENDS, FakeServer, make_classic, make_native

from cvmfs_publisher.config import Config
from cvmfs_publisher.errors import SourceError
from cvmfs_publisher.repositories import open_native
from cvmfs_publisher.sources import open_source

NAME = "sw.example.org"
BIG = os.urandom(150_000)  # incompressible: most of every compressed stream is this member


def tar_bytes() -> bytes:
    """A valid tar: directories, small and large files, a symlink as the last member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("rel", None), ("rel/a.txt", b"first member\n"),
                           ("rel/big.bin", BIG), ("rel/sub", None),
                           ("rel/sub/c.txt", b"c" * 700), ("rel/z.txt", b"last\n")):
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        link = tarfile.TarInfo("rel/link")
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt"
        tar.addfile(link)
    return buffer.getvalue()


TAR = tar_bytes()


def members() -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(TAR)) as tar:
        return {m.name: m for m in tar.getmembers()}


def end_of_members() -> int:
    """Where the end-of-archive block starts: after the last member's padded data."""
    last = members()["rel/link"]
    return last.offset_data + -(-last.size // 512) * 512


def gzip_with_mark(data: bytes, mark: int) -> tuple[bytes, int]:
    """gzip of ``data``, and the compressed length that decodes to exactly ``data[:mark]``."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
        f.write(data[:mark])
        f.flush(zlib.Z_FULL_FLUSH)
        cut = buffer.tell()
        f.write(data[mark:])
    return buffer.getvalue(), cut


def zstd_with_mark(data: bytes, mark: int) -> tuple[bytes, int]:
    compressor = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    head = compressor.compress(data[:mark]) + compressor.flush(
        zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return head + compressor.compress(data[mark:]) + compressor.flush(), len(head)


def flipped(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x55
    return bytes(out)


def xz_check_offset(data: bytes) -> int:
    """The last byte of the block's check (CRC64): right before the index (xz spec 3, 4)."""
    backward_size = int.from_bytes(data[-8:-4], "little")
    index_size = (backward_size + 1) * 4
    return len(data) - 12 - index_size - 1


def inside(name: str, where: int = 100) -> int:
    """An offset ``where`` bytes into a member's data."""
    return members()[name].offset_data + where


def header_of(name: str, where: int = 100) -> int:
    return members()[name].offset + where


# -- the damaged archives: (suffix, bytes, the standard library's own complaint) -------------


def gzip_bad_crc() -> bytes:
    good = gzip.compress(TAR, mtime=0)
    return flipped(good, len(good) - 8)


def gzip_bad_isize() -> bytes:
    good = gzip.compress(TAR, mtime=0)
    return flipped(good, len(good) - 2)


def gzip_cut_in_member_data() -> bytes:
    data, cut = gzip_with_mark(TAR, inside("rel/big.bin", 60_000))
    return data[:cut]


def gzip_cut_in_header() -> bytes:
    data, cut = gzip_with_mark(TAR, header_of("rel/sub/c.txt"))
    return data[:cut]


def gzip_intact_around_cut_tar() -> bytes:
    return gzip.compress(TAR[:end_of_members()], mtime=0)


def zstd_bad_checksum() -> bytes:
    good = zstandard.ZstdCompressor(write_checksum=True).compress(TAR)
    return flipped(good, len(good) - 1)


def zstd_cut_in_member_data() -> bytes:
    data, cut = zstd_with_mark(TAR, inside("rel/big.bin", 60_000))
    return data[:cut]


def zstd_cut_in_header() -> bytes:
    data, cut = zstd_with_mark(TAR, header_of("rel/z.txt"))
    return data[:cut]


def xz_bad_check() -> bytes:
    good = lzma.compress(TAR)
    return flipped(good, xz_check_offset(good))


def xz_truncated() -> bytes:
    good = lzma.compress(TAR)
    return good[: len(good) * 2 // 3]


def bz2_corrupted() -> bytes:
    good = bz2.compress(TAR)
    return flipped(good, len(good) - 3)  # inside the stream's combined CRC


def bz2_truncated() -> bytes:
    good = bz2.compress(TAR)
    return good[: len(good) * 2 // 3]


def tar_cut_in_header() -> bytes:
    return TAR[:header_of("rel/sub/c.txt")]


def tar_cut_in_member_data() -> bytes:
    return TAR[:inside("rel/big.bin", 60_000)]


def tar_cut_after_member() -> bytes:
    return TAR[:end_of_members()]


def tar_garbage_header() -> bytes:
    return TAR[:end_of_members()] + b"\x01" * 512 + bytes(1024)


def decodes_with_complaint(opener: Callable[[bytes], bytes]) -> Callable[[bytes], bool]:
    def check(data: bytes) -> bool:
        try:
            opener(data)
        except (OSError, EOFError, ValueError, lzma.LZMAError, zstandard.ZstdError):
            return True
        return False

    return check


def zstd_complains(data: bytes) -> bool:
    """True if zstd notices (a bad checksum raises; a cut frame leaves the frame open)."""
    obj = zstandard.ZstdDecompressor().decompressobj()
    try:
        obj.decompress(data)
    except zstandard.ZstdError:
        return True
    return not obj.eof


def tar_complains(data: bytes) -> bool:
    """What tarfile alone says: a cut or garbage block after a member is not an error."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if member.isreg():
                    reader = tar.extractfile(member)
                    assert reader is not None
                    reader.read()
    except tarfile.TarError:
        return True
    return False


@dataclass(frozen=True)
class Damage:
    make: Callable[[], bytes]
    suffix: str
    noticed_by_library: Callable[[bytes], bool]  # does the decoder alone see the damage?

    @property
    def id(self) -> str:
        return self.make.__name__


GZIP = decodes_with_complaint(gzip.decompress)
XZ = decodes_with_complaint(lzma.decompress)
BZ2 = decodes_with_complaint(bz2.decompress)
CASES = [
    Damage(gzip_bad_crc, ".tar.gz", GZIP),
    Damage(gzip_bad_isize, ".tar.gz", GZIP),
    Damage(gzip_cut_in_member_data, ".tar.gz", GZIP),
    Damage(gzip_cut_in_header, ".tar.gz", GZIP),
    Damage(gzip_intact_around_cut_tar, ".tgz", lambda data: not GZIP(data)),
    Damage(zstd_bad_checksum, ".tar.zst", zstd_complains),
    Damage(zstd_cut_in_member_data, ".tar.zst", zstd_complains),
    Damage(zstd_cut_in_header, ".tar.zst", zstd_complains),
    Damage(xz_bad_check, ".tar.xz", XZ),
    Damage(xz_truncated, ".tar.xz", XZ),
    Damage(bz2_corrupted, ".tar.bz2", BZ2),
    Damage(bz2_truncated, ".tar.bz2", BZ2),
    Damage(tar_cut_in_header, ".tar", lambda data: not tar_complains(data)),
    Damage(tar_cut_in_member_data, ".tar", tar_complains),
    Damage(tar_cut_after_member, ".tar", lambda data: not tar_complains(data)),
    Damage(tar_garbage_header, ".tar", lambda data: not tar_complains(data)),
]


def manifest_revision(stratum0: Path) -> int:
    text = (stratum0 / NAME / ".cvmfspublished").read_bytes().split(b"\n--\n")[0]
    return int(next(line[1:] for line in text.split(b"\n") if line.startswith(b"S")))


def publish(archive: Path, path: str = "/pkg"):  # type: ignore[no-untyped-def]
    return run_cli_process("publish", archive, "--repo", NAME, "--path", path,
                           "--no-progress")


@pytest.mark.parametrize("damage", CASES, ids=[c.id for c in CASES])
def test_damaged_archive_publishes_nothing(damage: Damage, repo: str, tmp_path: Path) -> None:
    data = damage.make()
    assert damage.noticed_by_library(data), "the case does not damage what it says"
    archive = tmp_path / f"broken{damage.suffix}"
    archive.write_bytes(data)
    before = manifest_revision(tmp_path / "stratum0")
    result = publish(archive)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert str(archive) in lines[0]
    assert manifest_revision(tmp_path / "stratum0") == before


SUFFIXES = {".tar": lambda d: d, ".tar.gz": lambda d: gzip.compress(d, mtime=0),
            ".tar.zst": zstandard.ZstdCompressor(write_checksum=True).compress,
            ".tar.xz": lzma.compress, ".tar.bz2": bz2.compress}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_the_intact_archive_publishes(suffix: str, repo: str, tmp_path: Path) -> None:
    """The control: the archive every case damages publishes under every compression."""
    archive = tmp_path / f"good{suffix}"
    archive.write_bytes(SUFFIXES[suffix](TAR))
    result = publish(archive)
    assert result.returncode == 0, result.stderr
    assert manifest_revision(tmp_path / "stratum0") == 1
    reader = open_native(Config.load().get(NAME)).reader()
    try:
        assert b"".join(reader.read("/pkg/rel/big.bin")) == BIG
        assert sorted(path[len("/pkg/rel"):] for path, _ in reader.walk("/pkg/rel")) == [
            "", "/a.txt", "/big.bin", "/link", "/sub", "/sub/c.txt", "/z.txt"]
    finally:
        reader.close()


def test_compression_is_recognised_by_content(repo: str, tmp_path: Path) -> None:
    """A gzip archive named .tar still has its CRC checked, and a plain tar named .tar.gz
    is read as the tar it is."""
    damaged = tmp_path / "broken.tar"
    damaged.write_bytes(gzip_bad_crc())
    result = publish(damaged)
    assert result.returncode != 0 and "gzip" in result.stderr
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(TAR)
    assert publish(plain).returncode == 0


@pytest.fixture(params=BACKENDS)
def publisher(request: pytest.FixtureRequest, tmp_path: Path, fake_server: FakeServer):
    if request.param == "native":
        return make_native(tmp_path, NAME)
    return make_classic(tmp_path, NAME, fake_server)


@pytest.mark.parametrize("make", [gzip_bad_crc, zstd_cut_in_member_data, tar_cut_after_member],
                         ids=lambda make: make.__name__)
def test_both_backends_stage_nothing_from_a_damaged_archive(make: Callable[[], bytes],
                                                            publisher, tmp_path: Path) -> None:
    """The damage shows only after the last member: the whole stream is consumed inside
    ``replace``, before the session can commit, on either backend."""
    archive = tmp_path / "broken.tar"
    archive.write_bytes(make())
    trunk = [t.revision for t in publisher.tags() if t.name == "trunk"]
    with pytest.raises(SourceError, match=r"broken\.tar"), publisher.session() as session:
        entries, _ = open_source(archive)
        session.replace("/pkg", entries)
        session.commit()
    assert [t.revision for t in publisher.tags() if t.name == "trunk"] == trunk
