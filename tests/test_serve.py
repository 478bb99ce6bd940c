"""HTTP contract of ``serve``: what a CVMFS client, a proxy and a Stratum 1 rely on."""

from __future__ import annotations

import http.client
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.http_server import make_server
from cvmfs_publisher.storage import ObjectStream, Storage
from cvmfs_publisher.storage.http import HttpStorage
from cvmfs_publisher.storage.local import LocalStorage
from cvmfs_publisher.storage.wrappers import StorageWrapper

NAME = "sw.example.org"


CONTENT = "".join(f"line {i}\n" for i in range(2000))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """One published repository behind one server for the whole module."""
    tmp = tmp_path_factory.mktemp("serve")
    repository = NativeRepository(LocalStorage(tmp / NAME), NAME, keys_dir=tmp / "keys",
                                  options=EngineOptions(cache_dir=tmp / "cache"))
    repository.create()
    with repository.transaction() as txn:
        txn.replace("/sw/a", iter([Entry("", Kind.DIR, 0o755),
                                   Entry("data.txt", Kind.FILE, size=len(CONTENT),
                                         content=BytesContent(CONTENT.encode()))]))
        txn.commit()
    server = make_server({NAME: repository.storage}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], tmp / NAME
    finally:
        server.shutdown()
        server.server_close()


def request(port: int, path: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def an_object(root: Path) -> str:
    return next(p for p in (root / "data").rglob("*") if p.is_file() and "txn" not in
                p.parts).relative_to(root).as_posix()


def test_dot_cvmfs_files_short_lived(served: tuple[int, Path]) -> None:
    port, root = served
    for name in (".cvmfspublished", ".cvmfswhitelist", ".cvmfsreflog", ".cvmfs_master_replica"):
        r = request(port, f"/cvmfs/{NAME}/{name}")
        assert r.status == 200
        assert r.getheader("Content-Type") == "application/x-cvmfs"
        assert r.getheader("Cache-Control") == "public, max-age=61"
        assert r.body == (root / name).read_bytes()  # type: ignore[attr-defined]
        assert r.getheader("ETag") is None and r.getheader("Last-Modified") is None


def test_objects_long_lived(served: tuple[int, Path]) -> None:
    port, root = served
    key = an_object(root)
    r = request(port, f"/cvmfs/{NAME}/{key}")
    assert r.status == 200
    assert r.getheader("Content-Type") == "application/octet-stream"
    assert r.getheader("Cache-Control") == "public, max-age=259200"
    assert r.body == (root / key).read_bytes()  # type: ignore[attr-defined]
    assert int(r.getheader("Content-Length")) == (root / key).stat().st_size


def test_head_has_headers_and_no_body(served: tuple[int, Path]) -> None:
    port, root = served
    r = request(port, f"/cvmfs/{NAME}/.cvmfspublished", "HEAD")
    assert r.status == 200
    assert int(r.getheader("Content-Length")) == (root / ".cvmfspublished").stat().st_size
    assert r.body == b""  # type: ignore[attr-defined]


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-9", 0, 9), ("bytes=10-", 10, None), ("bytes=-5", -5, None), ("bytes=3-3", 3, 3),
])
def test_range(served: tuple[int, Path], header: str, first: int, last: int | None) -> None:
    port, root = served
    data = (root / ".cvmfsreflog").read_bytes()
    r = request(port, f"/cvmfs/{NAME}/.cvmfsreflog", headers={"Range": header})
    expected = data[first:] if last is None else data[first:last + 1]
    assert r.status == 206
    assert r.body == expected  # type: ignore[attr-defined]
    start = first if first >= 0 else len(data) + first
    assert r.getheader("Content-Range") == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"


def test_unsatisfiable_range(served: tuple[int, Path]) -> None:
    port, root = served
    size = (root / ".cvmfsreflog").stat().st_size
    r = request(port, f"/cvmfs/{NAME}/.cvmfsreflog", headers={"Range": f"bytes={size}-"})
    assert r.status == 416
    assert r.getheader("Content-Range") == f"bytes */{size}"


@pytest.mark.parametrize("path", [
    f"/cvmfs/{NAME}/data/00/0000000000000000000000000000000000000000",  # missing object
    "/cvmfs/other.example.org/.cvmfspublished",  # unknown repository
    "/", "/cvmfs/", f"/cvmfs/{NAME}", f"/cvmfs/{NAME}/",
])
def test_not_found(served: tuple[int, Path], path: str) -> None:
    assert request(served[0], path).status == 404


@pytest.mark.parametrize("path", [
    f"/cvmfs/{NAME}/../../etc/passwd",
    f"/cvmfs/{NAME}/%2e%2e/%2e%2e/etc/passwd",
    f"/cvmfs/{NAME}/data/../../../etc/passwd",
    f"/cvmfs/{NAME}/data/txn/publish.lock",
    f"/cvmfs/{NAME}//etc/passwd",
    f"/cvmfs/{NAME}/data%2f..%2f..%2fetc%2fpasswd",
    "/cvmfs/..%2f..%2fetc/passwd",
])
def test_traversal_refused(served: tuple[int, Path], path: str) -> None:
    r = request(served[0], path)
    assert r.status == 404
    assert b"root:" not in r.body  # type: ignore[attr-defined]


def test_only_get_and_head(served: tuple[int, Path]) -> None:
    assert request(served[0], f"/cvmfs/{NAME}/.cvmfspublished", "POST").status == 501


def test_clients_read_and_verify_through_it(served: tuple[int, Path], cli) -> None:
    port, root = served
    url = f"http://127.0.0.1:{port}/cvmfs/{NAME}"
    pub = root.parent / "keys" / f"{NAME}.pub"
    verified = cli("verify", "--repo", url, "--key", pub)
    assert verified.code == 0, verified.out + verified.err
    assert "OK:" in verified.out
    content = cli("cat", "/sw/a/data.txt", "--repo", url, "--key", pub)
    assert (content.code, content.out) == (0, CONTENT)
    assert HttpStorage(url).exists(".cvmfspublished")
    assert not HttpStorage(url).exists("data/txn/publish.lock")


class UnsizedStreams(StorageWrapper):
    """A backend that streams without telling the size up front, and counts whole reads."""

    gets = 0

    def get(self, key: str) -> bytes:
        self.gets += 1
        return super().get(key)

    def open(self, key: str) -> ObjectStream:
        stream = self.inner.open(key)
        return ObjectStream(stream.raw, None, stream.name)


class NoWholeReads(StorageWrapper):
    """Serving must stream: any ``get`` of a whole object fails the request."""

    def get(self, key: str) -> bytes:
        raise AssertionError(f"served {key} by reading it whole")


@pytest.mark.parametrize("wrap", [NoWholeReads, UnsizedStreams])
def test_any_storage_is_served_through_open(served: tuple[int, Path], wrap) -> None:
    """Not only a local directory: a wrapped or remote storage, with ranges, too."""
    _, root = served
    storage: Storage = wrap(LocalStorage(root))
    server = make_server({NAME: storage}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        key = an_object(root)
        data = (root / key).read_bytes()
        whole = request(port, f"/cvmfs/{NAME}/{key}")
        assert (whole.status, whole.body) == (200, data)  # type: ignore[attr-defined]
        assert int(whole.getheader("Content-Length")) == len(data)
        part = request(port, f"/cvmfs/{NAME}/{key}", headers={"Range": "bytes=2-5"})
        assert (part.status, part.body) == (206, data[2:6])  # type: ignore[attr-defined]
        assert request(port, f"/cvmfs/{NAME}/data/00/{'0' * 38}").status == 404
    finally:
        server.shutdown()
        server.server_close()
    assert getattr(storage, "gets", 0) == 0


def test_http_storage_streams_with_the_content_length(served: tuple[int, Path]) -> None:
    port, root = served
    storage = HttpStorage(f"http://127.0.0.1:{port}/cvmfs/{NAME}")
    key = an_object(root)
    with storage.open(key) as stream:
        assert stream.size == (root / key).stat().st_size
        assert b"".join(stream) == (root / key).read_bytes()


class _HugeObjects(StorageWrapper):
    """Every object is 64 MiB: more than the socket buffers, so a hang-up breaks a write."""

    def open(self, key: str) -> ObjectStream:
        size = 64 << 20
        return ObjectStream(io.BytesIO(bytes(size)), size, key)


def test_client_hanging_up_is_one_log_line(served, caplog, capfd) -> None:
    _port, root = served
    server = make_server({NAME: _HugeObjects(LocalStorage(root))}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="cvmfs_publisher.http_server"):
            for _ in range(3):
                with socket.create_connection(server.server_address[:2]) as client:
                    client.sendall(f"GET /cvmfs/{NAME}/{an_object(root)} HTTP/1.1\r\n"
                                   "Host: x\r\n\r\n".encode())
                    assert client.recv(1024).startswith(b"HTTP/1.0 200")
            deadline = time.monotonic() + 30
            while len([r for r in caplog.records if "hung up" in r.getMessage()]) < 3:
                assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
                time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    hung_up = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(hung_up) == 3 and all(r.levelno == logging.INFO for r in hung_up)
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]
