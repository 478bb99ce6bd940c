"""A repository made to exercise the web view, and a `serve` process-in-a-thread showing it.

Four revisions, each by a different front end as its tag description tells: nested
catalogs (one above ``autocatalog_max``, one below ``autocatalog_min``), a chunked file,
hard links, symlinks, a FIFO, and names that try to be markup, quotes, newlines, escape
sequences and bidirectional overrides. Shared by ``test_web_api.py`` and
``test_web_browser.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cvmfs_publisher.engine.chunking import ChunkPolicy
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.http_server import make_server
from cvmfs_publisher.storage.local import LocalStorage
from cvmfs_publisher.watch.state import AreaState
from cvmfs_publisher.web import WebApp

NAME = "web.example.org"
MARKUP = "<img src=x onerror=alert(1)>"  # one path component: no '/' possible
SCRIPT_DIR, SCRIPT_FILE = "<script>alert(1)<", "script>"  # the path .../<script>alert(1)</script>
HOSTILE = [MARKUP, "\"double\" & 'single' quotes", "line1\nline2", "tab\there",
           "\x1b[31mred", "rtl-\u202egnp.exe", "ünïcødé-名前-🙂", "back\\slash"]
SCRIPT_TARGET = "<script>alert(1)</script>"
EVIL_TAG = "<b>bold</b>"  # tag names are printable without spaces: markup is allowed
AUTOCATALOG_MAX, AUTOCATALOG_MIN = 40, 20
FLAT_FILES = 60  # rows in /sw/1.0, above AUTOCATALOG_MAX with no subtree that fits
CHUNKED_SIZE = 40_000
CI_DESCRIPTION = ("release 1.0 of sw | signer=0123456789ABCDEF git=" + "a" * 40 +
                  " ref=v1.0 pipeline=https://ci.example.org/sw/-/pipelines/42")
EVIL_DESCRIPTION = "<script>alert(2)</script> | sha256=" + "c" * 64 + " source=javascript:alert(3)"


def _file(path: str, data: bytes, **kw: object) -> Entry:
    return Entry(path, Kind.FILE, size=len(data), content=BytesContent(data), **kw)


def _pseudo_random(size: int, seed: int) -> bytes:
    out, x = bytearray(), seed
    while len(out) < size:
        x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        out += x.to_bytes(8, "little")
    return bytes(out[:size])


@dataclass
class WebRepo:
    repository: NativeRepository
    root: Path  # the storage directory
    files: dict[str, bytes]  # path -> content of the current revision
    old_files: dict[str, bytes]  # path -> content in revision 1 (tag v1.0)
    state_home: Path  # XDG_STATE_HOME holding a watch area's status with an error


def build(tmp: Path) -> WebRepo:
    options = EngineOptions(cache_dir=tmp / "cache", autocatalog_max=AUTOCATALOG_MAX,
                            autocatalog_min=AUTOCATALOG_MIN, whitelist_days=30,
                            chunking=ChunkPolicy(min_size=4096, avg_size=8192,
                                                 max_size=16384))
    repository = NativeRepository(LocalStorage(tmp / NAME), NAME, keys_dir=tmp / "keys",
                                  options=options)
    repository.create()
    chunked = _pseudo_random(CHUNKED_SIZE, 7)
    v1 = {"/sw/a/data.txt": b"version one\n", "/big.bin": chunked,
          "/links/a": b"linked content\n", "/removed-later.txt": b"gone in revision 2\n"}
    # revision 1: CI release with provenance
    with repository.transaction() as txn:
        txn.replace("/sw", iter([
            Entry("", Kind.DIR, 0o755),
            Entry("a", Kind.DIR, 0o755),
            _file("a/data.txt", v1["/sw/a/data.txt"], mtime=1_700_000_000),
            Entry("1.0", Kind.DIR, 0o755),
            _file("1.0/.cvmfscatalog", b""),
            Entry("1.0/flat", Kind.DIR, 0o755),
            *(_file(f"1.0/flat/f{i:03d}", f"{i}\n".encode()) for i in range(FLAT_FILES)),
        ]))
        txn.replace("/big.bin", iter([_file("", chunked, mode=0o640, uid=1234, gid=567)]))
        txn.replace("/links", iter([
            Entry("", Kind.DIR, 0o755),
            _file("a", v1["/links/a"]),
            Entry("b", Kind.HARDLINK, target="a"),
            Entry("latest", Kind.SYMLINK, target="../sw/1.0"),
            Entry("pipe", Kind.FIFO, 0o600),
        ]))
        txn.replace("/hostile", iter([
            Entry("", Kind.DIR, 0o755),
            *(_file(name, name.encode()) for name in HOSTILE),
            Entry(SCRIPT_DIR, Kind.DIR, 0o755),
            _file(f"{SCRIPT_DIR}/{SCRIPT_FILE}", b"script\n"),
            Entry("evil-link", Kind.SYMLINK, target=SCRIPT_TARGET),
        ]))
        txn.replace("/removed-later.txt", iter([_file("", v1["/removed-later.txt"])]))
        txn.commit("v1.0", CI_DESCRIPTION)
    # revision 2: the command line, a named tag whose name and description are markup
    with repository.transaction() as txn:
        txn.replace("/sw/a/data.txt", iter([_file("", b"version two, longer\n")]))
        txn.replace("/sw/2.0", iter([Entry("", Kind.DIR, 0o755),
                                     _file(".cvmfscatalog", b""),
                                     _file("new.txt", b"new in 2.0\n")]))
        txn.remove("/removed-later.txt")
        txn.commit(EVIL_TAG, EVIL_DESCRIPTION)
    # revision 3: a watched folder (automatic tag)
    with repository.transaction() as txn:
        txn.replace("/users/alice", iter([Entry("", Kind.DIR, 0o755),
                                          _file("notes.txt", b"dropped\n")]))
        txn.commit(None, "watch alice: +1 ~0 -0 files, 8 B")
    # revision 4: the unpacker (automatic tag)
    with repository.transaction() as txn:
        txn.replace("/images/busybox", iter([Entry("", Kind.DIR, 0o755),
                                             _file("bin", b"#!busybox\n", mode=0o755)]))
        txn.commit(None, "unpack: docker.io/library/busybox:latest")
    files = {path: data for path, data in v1.items() if path != "/removed-later.txt"}
    files.update({"/sw/a/data.txt": b"version two, longer\n",
                  "/sw/2.0/new.txt": b"new in 2.0\n", "/links/b": v1["/links/a"]})
    state_home = tmp / "state"
    area = AreaState.load(NAME, "/users/alice", "alice-drop")
    area.file = state_home / "cvmfs-publisher" / "watch" / NAME / "alice.json"
    area.status.last_sync, area.status.last_revision = 1_790_000_000.0, 3
    area.status.last_error, area.status.failures = "quota of 10 files exceeded", 2
    area.save()
    return WebRepo(repository, tmp / NAME, files, v1, state_home)


@dataclass
class Server:
    port: int
    app: WebApp

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serving(web: WebRepo, now: dt.datetime | None = None) -> Iterator[Server]:
    """``serve --ui`` in a thread: the same server class, port and routing as the CLI's."""
    app = WebApp({NAME: web.repository}, clock=(lambda: now) if now else None)
    server = make_server({NAME: web.repository.storage}, "127.0.0.1", 0, ui=app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(web.state_home)
    thread.start()
    try:
        yield Server(server.server_address[1], app)
    finally:
        server.shutdown()
        server.server_close()
        if old is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = old
