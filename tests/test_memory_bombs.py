"""Untrusted repositories cannot exhaust memory (issue 9, class 7).

Each case is a hostile copy of the upstream fixture, re-signed so that the trust chain
holds (``tamper.Resigner``) and only sizes lie: a 1 GiB manifest or whitelist, a ~1 MiB
zlib stream that inflates to 1 GiB in place of a nested catalog, a file object or a chunk,
and a valid object whose catalog entry claims fewer bytes. ``ls``, ``ls -R --hash``,
``cat`` and ``verify`` run in fresh processes (``peakrss``), some against the repository
served over HTTP, and must refuse with one line, no traceback, without writing the
offending object's bytes, and below a stated memory ceiling.

The ceiling, 128 MiB of peak RSS per command: a plain ``ls`` of the fixture peaks at
63 MiB (the interpreter, click, rich, cryptography, requests, SQLite) and ``ls -R --hash``
at 72 MiB; objects stream in 1 MiB pieces, so every refusal here peaks at 63-73 MiB. The
rest is room for other builds of the same libraries; before the limits each bomb took
2.1 GB (a 1 GiB manifest or inflated object held twice over), the whitelist 3.1 GB.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from peakrss import Measured, run_measured
from tamper import FQRN, Resigner, key_file

from cvmfs_publisher.cvmfs.hashes import ContentHash, Suffix, path_key
from cvmfs_publisher.engine.reader import ObjectCache, RepositoryReader
from cvmfs_publisher.engine.trust import read_manifest
from cvmfs_publisher.errors import FormatError
from cvmfs_publisher.http_server import make_server
from cvmfs_publisher.storage.base import MANIFEST, WHITELIST
from cvmfs_publisher.storage.local import LocalStorage

CEILING_KIB = 128 * 1024
MIB = 1 << 20
GIB = 1 << 30
HELLO = "/a/hello.txt"  # 6 bytes in the fixture
CHUNKED = "/nested/rand_20M.bin"  # two chunks: 13228572 + 6771428 bytes


def zlib_bomb(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes (a multiple of 64 MiB) in half a second.

    One 64 MiB segment is compressed and closed with a full flush, which resets the
    dictionary, so the same bytes may follow again; an empty final block and the
    Adler-32 of the whole end the stream.
    """
    segment = 64 << 20
    zeros = bytes(segment)
    compressor = zlib.compressobj(9)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-4]
    adler = 1
    for _ in range(size // segment):
        adler = zlib.adler32(zeros, adler)
    return head + head[2:] * (size // segment - 1) + end + adler.to_bytes(4, "big")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zlib_bomb(GIB)


def store_bomb(r: Resigner, bomb: bytes, suffix: Suffix) -> ContentHash:
    """The bomb as a correctly named object: its hash covers the stored bytes."""
    content_hash = ContentHash.of(bomb, r.algorithm)
    r.storage.put(content_hash.object_key(suffix), bomb)
    return content_hash


@contextlib.contextmanager
def serve(storage: Path) -> Iterator[str]:
    """The project's own HTTP server in front of one repository directory."""
    server = make_server({FQRN: LocalStorage(storage)}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cvmfs/{FQRN}"
    finally:
        server.shutdown()
        server.server_close()


class EndlessManifest(BaseHTTPRequestHandler):
    """A server that streams a 1 GiB manifest without announcing its length."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-cvmfs")
        self.end_headers()
        block = b"C" * (1 << 20)
        try:
            for _ in range(GIB // len(block)):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, fmt: str, *args: object) -> None:
        pass


def case_id(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else f"promise {value}"


def read_args(repo: str | Path, copy: Path) -> tuple[str | Path, ...]:
    return ("--repo", repo, "--key", key_file(copy, "pub"), "--fqrn", FQRN)


def assert_refused(result: Measured, expect: str) -> None:
    """Under the ceiling, non-zero exit, one line naming the reason, no traceback."""
    assert result.peak_kib < CEILING_KIB, f"peak RSS {result.peak_kib // 1024} MiB"
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.err


def assert_verify_finds(result: Measured, expect: str) -> None:
    """``verify --json``: under the ceiling, exit 1, the problem listed, no traceback."""
    assert result.peak_kib < CEILING_KIB, f"peak RSS {result.peak_kib // 1024} MiB"
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    problems = json.loads(result.out.read_text())["problems"]
    assert any(expect in p for p in problems), problems


# -- control --------------------------------------------------------------------------------


def test_reading_the_fixture_stays_under_the_ceiling(fixture_copy: Path, tmp_path: Path
                                                     ) -> None:
    """The ceiling is met by honest work: the whole tree with every file hashed."""
    Resigner(fixture_copy, tmp_path / "work").commit()
    result = run_measured(tmp_path / "out", "ls", "-R", "--hash", "--json", "/",
                          *read_args(fixture_copy / "storage", fixture_copy))
    assert result.code == 0, result.err
    assert len(json.loads(result.out.read_text())) == 43
    assert result.peak_kib < CEILING_KIB, f"peak RSS {result.peak_kib // 1024} MiB"


# -- manifests and whitelists ---------------------------------------------------------------


def test_endless_manifest_is_refused_early(fixture_copy: Path, tmp_path: Path) -> None:
    """1 GiB of manifest without a Content-Length: refused after 64 KiB, not downloaded."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EndlessManifest)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cvmfs/{FQRN}"
    try:
        result = run_measured(tmp_path / "out", "ls", "/", *read_args(url, fixture_copy))
    finally:
        server.shutdown()
        server.server_close()
    assert_refused(result, f"{MANIFEST} at {url} is larger than 65536 bytes")


@pytest.mark.parametrize(("name", "command"), [(MANIFEST, "verify"), (WHITELIST, "cat")])
def test_gigabyte_signed_file_over_http(name: str, command: str, fixture_copy: Path,
                                        tmp_path: Path) -> None:
    """A sparse 1 GiB manifest or whitelist behind the project's server (which announces
    its length): refused before its body is read."""
    storage = fixture_copy / "storage"
    os.truncate(storage / name, GIB)
    with serve(storage) as url:
        args = ("/a/hello.txt",) if command == "cat" else ("--json",)
        result = run_measured(tmp_path / "out", command, *args, *read_args(url, fixture_copy),
                              "--as-of", "2026-12-01")
    expect = f"{name} at {url} is larger than 65536 bytes"
    if command == "verify":
        assert_verify_finds(result, expect)
    else:
        assert_refused(result, expect)
        assert result.out.stat().st_size == 0


# -- catalogs -------------------------------------------------------------------------------
# Two ways to be refused: a row promising the real 57344 bytes admits at most 65419 stored
# bytes, so the ~1 MiB bomb is refused while it downloads; a row promising 1 MiB admits it,
# and inflating stops right after the first MiB.

CATALOG_REFUSED = {57344: "stored object data/", MIB: "inflates to more than 1048576 bytes"}


@pytest.fixture
def catalog_bomb(request: pytest.FixtureRequest, fixture_copy: Path, tmp_path: Path,
                 bomb: bytes) -> Iterator[str]:
    """/nested's catalog replaced by the bomb, served over HTTP; the root's row promises
    ``request.param`` bytes."""
    r = Resigner(fixture_copy, tmp_path / "work")
    bomb_hash = store_bomb(r, bomb, Suffix.CATALOG)
    r.edit_catalog("", lambda c: c.conn.execute(
        "UPDATE nested_catalogs SET sha1 = ?, size = ? WHERE path = '/nested'",
        (str(bomb_hash), request.param)))
    r.commit()
    with serve(fixture_copy / "storage") as url:
        yield url


@pytest.mark.parametrize(("catalog_bomb", "command"), [
    (57344, ("ls", "/nested")), (MIB, ("ls", "/nested")), (MIB, ("ls", "-R", "--hash", "/")),
    (MIB, ("cat", "/nested/x.txt"))], indirect=["catalog_bomb"], ids=case_id)
def test_nested_catalog_bomb(command: tuple[str, ...], catalog_bomb: str,
                             request: pytest.FixtureRequest, fixture_copy: Path,
                             tmp_path: Path) -> None:
    result = run_measured(tmp_path / "out", *command, *read_args(catalog_bomb, fixture_copy))
    promise = request.node.callspec.params["catalog_bomb"]
    assert_refused(result, CATALOG_REFUSED[promise])
    assert result.out.stat().st_size == 0


@pytest.mark.parametrize("catalog_bomb", [57344, MIB], indirect=True)
def test_nested_catalog_bomb_verify(catalog_bomb: str, request: pytest.FixtureRequest,
                                    fixture_copy: Path, tmp_path: Path) -> None:
    result = run_measured(tmp_path / "out", "verify", "--json",
                          *read_args(catalog_bomb, fixture_copy))
    promise = request.node.callspec.params["catalog_bomb"]
    assert_verify_finds(result, "catalog /nested (")
    assert_verify_finds(result, CATALOG_REFUSED[promise])


# -- file objects and chunks ----------------------------------------------------------------


def set_hello(r: Resigner, column: str, value: object) -> None:
    r.execute("", f"UPDATE catalog SET {column} = ? WHERE md5path_1 = ? AND md5path_2 = ?",
              (value, *path_key(HELLO)))


@pytest.fixture
def file_bomb(request: pytest.FixtureRequest, fixture_copy: Path, tmp_path: Path,
              bomb: bytes) -> Path:
    """/a/hello.txt names the bomb; its row says ``request.param`` bytes (6: unchanged)."""
    r = Resigner(fixture_copy, tmp_path / "work")
    set_hello(r, "hash", store_bomb(r, bomb, Suffix.NONE).digest)
    set_hello(r, "size", request.param)
    r.commit()
    return fixture_copy / "storage"


FILE_REFUSED = {6: "/a/hello.txt: stored object data/",
                MIB: "/a/hello.txt: content inflates to more than 1048576 bytes"}


@pytest.mark.parametrize(("file_bomb", "command"), [
    (6, ("cat", HELLO)), (MIB, ("cat", HELLO)), (MIB, ("ls", "-R", "--hash", "/a"))],
    indirect=["file_bomb"], ids=case_id)
def test_file_bomb(command: tuple[str, ...], file_bomb: Path, request: pytest.FixtureRequest,
                   fixture_copy: Path, tmp_path: Path) -> None:
    result = run_measured(tmp_path / "out", *command, *read_args(file_bomb, fixture_copy))
    assert_refused(result, FILE_REFUSED[request.node.callspec.params["file_bomb"]])
    assert result.out.stat().st_size == 0


@pytest.mark.parametrize("file_bomb", [6], indirect=True)
def test_file_bomb_verify(file_bomb: Path, fixture_copy: Path, tmp_path: Path) -> None:
    """verify counts one piece past the promise (to name small mismatches exactly)."""
    result = run_measured(tmp_path / "out", "verify", "--json",
                          *read_args(file_bomb, fixture_copy))
    assert_verify_finds(result, "/a/hello.txt: object data/")
    assert_verify_finds(result, "inflates to more than 1048582 bytes")


def test_cat_writes_nothing_past_the_entry_size(fixture_copy: Path, tmp_path: Path) -> None:
    """A valid object, but its row says 3 bytes: not one byte of it reaches stdout."""
    r = Resigner(fixture_copy, tmp_path / "work")
    set_hello(r, "size", 3)
    r.commit()
    result = run_measured(tmp_path / "out", "cat", HELLO,
                          *read_args(fixture_copy / "storage", fixture_copy))
    assert_refused(result, "/a/hello.txt: content inflates to more than 3 bytes")
    assert result.out.stat().st_size == 0


@pytest.fixture
def chunk_bomb(fixture_copy: Path, tmp_path: Path, bomb: bytes) -> tuple[Path, bytes]:
    """The second chunk of /nested/rand_20M.bin names the bomb; returns the storage and
    the content of the first, intact chunk."""
    r = Resigner(fixture_copy, tmp_path / "work")
    catalog = r.open_catalog(r.catalog_chain("/nested")[-1][1])
    first, second = catalog.chunks(CHUNKED)
    catalog.conn.close()
    bomb_hash = store_bomb(r, bomb, Suffix.PARTIAL)
    r.execute("/nested", "UPDATE chunks SET hash = ? WHERE offset = ?",
              (bomb_hash.digest, second.offset))
    r.commit()
    return fixture_copy / "storage", r.read_object(first.content_hash, Suffix.PARTIAL)


def test_chunk_bomb_cat(chunk_bomb: tuple[Path, bytes], fixture_copy: Path,
                        tmp_path: Path) -> None:
    """stdout gets the first chunk, checked, and nothing of the bomb."""
    storage, first = chunk_bomb
    result = run_measured(tmp_path / "out", "cat", CHUNKED, *read_args(storage, fixture_copy))
    assert_refused(result, f"{CHUNKED} chunk at {len(first)}: content inflates to more than "
                           "6771428 bytes")
    assert result.out.stat().st_size == len(first)
    assert hashlib.sha256(result.out.read_bytes()).digest() == hashlib.sha256(first).digest()


def test_chunk_bomb_verify(chunk_bomb: tuple[Path, bytes], fixture_copy: Path,
                           tmp_path: Path) -> None:
    storage, first = chunk_bomb
    result = run_measured(tmp_path / "out", "verify", "--json",
                          *read_args(storage, fixture_copy))
    assert_verify_finds(result, f"{CHUNKED} chunk at {len(first)}: object data/")
    assert_verify_finds(result, "inflates to more than")


# -- the ceiling ----------------------------------------------------------------------------


def test_ceiling_refuses_bigger_promises(fixture_dir: Path, tmp_path: Path) -> None:
    """``max_object_size`` caps what any reference may promise, before a byte is read."""
    storage = LocalStorage(fixture_dir / "storage", read_only=True)
    manifest, _ = read_manifest(storage)
    reader = RepositoryReader(storage, manifest, ObjectCache(tmp_path / "cache", MIB))
    try:
        assert len(b"".join(reader.read(HELLO))) == 6
        with pytest.raises(FormatError, match=r"chunk at 0: an object is promised to be "
                           r"13228572 bytes; this reader allows 0 to 1048576 \(max_object"):
            b"".join(reader.read(CHUNKED))
    finally:
        reader.close()
