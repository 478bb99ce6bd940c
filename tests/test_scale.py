"""Repositories at scale: nested catalogs, chunks, incremental publishes, history, gc."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvmfs_publisher.cvmfs.catalog import Flag
from cvmfs_publisher.cvmfs.dirtab import InvalidDirtab
from cvmfs_publisher.cvmfs.hashes import Suffix
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.engine.views import client_view
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import TagError
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.local import LocalStorage

NAME = "scale.example.org"


@pytest.fixture
def repo(tmp_path: Path) -> NativeRepository:
    repository = NativeRepository(LocalStorage(tmp_path / "repo"), NAME, keys_dir=tmp_path / "k",
                                  options=EngineOptions(cache_dir=tmp_path / "cache"))
    repository.create()
    return repository


def publish(repo: NativeRepository, path: str, entries, tag: str | None = None):  # type: ignore[no-untyped-def]
    with repo.transaction() as txn:
        txn.replace(path, entries)
        return txn.commit(tag)


def remove(repo: NativeRepository, path: str):  # type: ignore[no-untyped-def]
    with repo.transaction() as txn:
        txn.remove(path)
        return txn.commit()


def tree(files: dict[str, bytes], mtime: int = 1_700_000_000) -> Iterator[Entry]:
    """An entry stream: the top directory, parents implied, files with fixed mtimes."""
    yield Entry("", Kind.DIR, 0o755, mtime=mtime)
    for path, data in sorted(files.items()):
        yield Entry(path, Kind.FILE, 0o644, mtime=mtime, size=len(data),
                    content=BytesContent(data))


def check(repo: NativeRepository) -> None:
    report = repo.verify()
    assert report.problems == [], report.problems


def mountpoints(repo: NativeRepository) -> set[str]:
    reader = repo.reader()
    found, pending = set(), [reader.root_catalog()]
    while pending:
        for ref in pending.pop().nested():
            found.add(ref.path)
            pending.append(reader.catalog(ref.content_hash))
    return found


# -- nested catalogs ------------------------------------------------------------------------

def test_marker_gives_a_nested_catalog_that_verify_accepts(repo: NativeRepository) -> None:
    publish(repo, "/data", tree({"a/.cvmfscatalog": b"", "a/x.txt": b"x", "a/b/y": b"y",
                                 "top.txt": b"t"}))
    assert mountpoints(repo) == {"/data/a"}
    reader = repo.reader()
    child = reader.catalog_for("/data/a")
    assert child.properties["root_prefix"] == "/data/a"
    assert reader.root_catalog().lookup("/data/a").flags == Flag.DIR | Flag.NESTED_MOUNTPOINT
    assert child.lookup("/data/a").flags == Flag.DIR | Flag.NESTED_ROOT
    counters = reader.root_catalog().counters()
    assert (counters.subtree.regular, counters.subtree.dir, counters.own.nested) == (3, 2, 1)
    check(repo)


def test_release_paths_get_a_catalog_each(repo: NativeRepository) -> None:
    for version in ("1.0", "2.0"):
        publish(repo, f"/sw/pkg/{version}", tree({"bin/tool": version.encode()}))
    assert mountpoints(repo) == {"/sw/pkg/1.0", "/sw/pkg/2.0"}
    check(repo)


def test_dirtab_rules(repo: NativeRepository) -> None:
    dirtab = b"# one catalog per platform\n/apps/*/*\n! /apps/*/test\n"
    publish(repo, "", tree({".cvmfsdirtab": dirtab}))
    publish(repo, "/apps", tree({f"{p}/{v}/f": b"f" for p in ("x", "y")
                                 for v in ("1", "test")}))
    assert mountpoints(repo) == {"/apps/x/1", "/apps/y/1"}
    check(repo)
    with pytest.raises(InvalidDirtab):  # a rule both included and excluded is refused
        publish(repo, "", tree({".cvmfsdirtab": b"/a/*\n!/a/*\n"}))


def test_autocatalogs_split_big_catalogs(tmp_path: Path) -> None:
    options = EngineOptions(cache_dir=tmp_path / "cache", autocatalog_max=60,
                            autocatalog_min=5)
    repo = NativeRepository(LocalStorage(tmp_path / "repo"), NAME, keys_dir=tmp_path / "k",
                            options=options)
    repo.create()
    files = {f"d{i}/f{j}": f"{i}-{j}".encode() for i in range(6) for j in range(15)}
    publish(repo, "/big", tree(files))
    reader = repo.reader()
    assert reader.root_catalog().row_count() <= 60
    auto = mountpoints(repo)
    assert auto and all(reader.lookup(f"{m}/.cvmfsautocatalog") for m in auto)
    assert {i["path"] for i in client_view(reader, "/big", content=False)} >= {
        f"d{i}/f{j}" for i in range(6) for j in range(15)}
    check(repo)
    # a later small publish into a split directory keeps everything consistent
    publish(repo, "/big/d0/f0", iter([Entry("", Kind.FILE, 0o644, size=3,
                                            content=BytesContent(b"new"))]))
    assert b"".join(repo.reader().read("/big/d0/f0")) == b"new"
    check(repo)


def test_adding_and_removing_a_marker(repo: NativeRepository) -> None:
    publish(repo, "/p", tree({"q/a": b"a", "q/r/b": b"b"}))
    assert mountpoints(repo) == set()
    publish(repo, "/p/q/.cvmfscatalog", iter([Entry("", Kind.FILE, 0o644, size=0,
                                                    content=BytesContent(b""))]))
    assert mountpoints(repo) == {"/p/q"}
    check(repo)
    remove(repo, "/p/q/.cvmfscatalog")
    assert mountpoints(repo) == set()
    assert b"".join(repo.reader().read("/p/q/r/b")) == b"b"
    check(repo)


# -- chunks ---------------------------------------------------------------------------------

def test_40_mib_file_is_chunked_and_reads_back(repo: NativeRepository, tmp_path: Path) -> None:
    data = os.urandom(40 << 20)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    entries, _ = open_source(src)
    publish(repo, "/big.bin", entries)
    reader = repo.reader()
    found = reader.lookup("/big.bin")
    chunks = found.catalog.chunks("/big.bin")
    assert found.entry.is_chunked and found.entry.content_hash is None and len(chunks) >= 3
    assert all(4 << 20 <= c.size <= 16 << 20 for c in chunks[:-1])
    for chunk in chunks:
        assert repo.storage.exists(chunk.content_hash.object_key(Suffix.PARTIAL))
    digest = hashlib.sha256(b"".join(reader.read("/big.bin"))).hexdigest()
    assert digest == hashlib.sha256(data).hexdigest()
    check(repo)


# -- incremental ------------------------------------------------------------------------------

def test_one_file_change_rewrites_only_the_catalogs_on_its_path(repo: NativeRepository) -> None:
    for name in ("a", "b", "c"):
        publish(repo, f"/sw/{name}/1.0", tree({f"lib/f{i}": f"{name}{i}".encode()
                                                for i in range(20)}))
    before = {ref.path: ref.content_hash for ref in repo.reader().root_catalog().nested()}
    stored_before = set(repo.storage.list("data/"))
    result = publish(repo, "/sw/b/1.0/lib/f3", iter([Entry("", Kind.FILE, 0o644, size=4,
                                                           content=BytesContent(b"new!"))]))
    assert result.catalogs_written == ["/", "/sw/b/1.0"]
    after = {ref.path: ref.content_hash for ref in repo.reader().root_catalog().nested()}
    assert after["/sw/a/1.0"] == before["/sw/a/1.0"]
    assert after["/sw/c/1.0"] == before["/sw/c/1.0"]
    assert after["/sw/b/1.0"] != before["/sw/b/1.0"]
    new_objects = set(repo.storage.list("data/")) - stored_before
    kinds = sorted(key[-1] if key[-1] in "CH" else "file" for key in new_objects)
    assert kinds == ["C", "C", "H", "file"]  # two catalogs, the history, one file
    check(repo)


def test_unchanged_content_is_not_compressed_again(repo: NativeRepository,
                                                   tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}").write_bytes(os.urandom(2000))
    first = publish(repo, "/a", open_source(src)[0])
    assert first.objects_reused == 0
    (src / "f0").write_bytes(b"changed")
    second = publish(repo, "/b", open_source(src)[0])
    # 29 files known from the index; written: one file, the root catalog, the history
    assert (second.objects_reused, second.objects_written) == (29, 3)
    check(repo)


# -- history --------------------------------------------------------------------------------

def test_rollback_restores_the_exact_content(repo: NativeRepository) -> None:
    publish(repo, "/sw/app/1.0", tree({"v": b"one", "keep": b"k"}), tag="v1")
    v1 = list(client_view(repo.reader()))
    publish(repo, "/sw/app/1.0", tree({"v": b"two", "extra": b"e"}), tag="v2")
    remove(repo, "/sw/app")
    with repo.transaction() as txn:
        txn.edits.rollback("v1")
        result = txn.commit()
    assert result.revision == 4
    assert list(client_view(repo.reader())) == v1
    check(repo)


def test_tags_diff_and_names(repo: NativeRepository) -> None:
    publish(repo, "/d", tree({"same": b"s", "gone": b"g", "changes": b"1"}), tag="t1")
    publish(repo, "/d", tree({"same": b"s", "new": b"n", "changes": b"2"}), tag="t2")
    with repo.transaction() as txn:
        txn.edits.add_tag("first", "t1", "the first one")
        txn.edits.remove_tag("t2")
        txn.commit()
    reader = repo.reader()
    names = {t.name: t.revision for t in reader.history().tags()}
    assert names["first"] == 1 and "t2" not in names and names["trunk"] == 2
    assert repo.head().manifest.revision == 2  # tagging publishes no new content
    from cvmfs_publisher.engine.diff import diff

    changes = {(c.kind, c.path) for c in diff(reader, reader.resolve("first").root_hash,
                                              reader.resolve("trunk").root_hash)}
    assert changes == {("removed", "/d/gone"), ("added", "/d/new"), ("changed", "/d/changes")}
    with repo.transaction() as txn, pytest.raises(TagError):
        txn.edits.add_tag("trunk")
    check(repo)


# -- garbage collection -------------------------------------------------------------------------

def test_gc_after_deleting_a_release(repo: NativeRepository) -> None:
    publish(repo, "/sw/app/1.0", tree({"only-in-1": b"1" * 5000, "shared": b"s" * 5000}))
    publish(repo, "/sw/app/2.0", tree({"only-in-2": b"2" * 5000, "shared": b"s" * 5000}))
    reader = repo.reader()
    gone = reader.lookup("/sw/app/1.0/only-in-1").entry.content_hash.object_key()
    shared = reader.lookup("/sw/app/2.0/shared").entry.content_hash.object_key()
    remove(repo, "/sw/app/1.0")
    assert gone not in repo.gc(keep_revisions=1, dry_run=True).garbage  # trunk-previous
    publish(repo, "/other", tree({"x": b"x"}))  # now the undo target no longer has 1.0
    dry = repo.gc(keep_revisions=1, dry_run=True)
    assert gone in dry.garbage and shared not in dry.garbage
    assert repo.storage.exists(gone)
    plan = repo.gc(keep_revisions=1)
    assert not repo.storage.exists(gone) and repo.storage.exists(shared)
    assert plan.garbage_bytes > 0
    assert b"".join(repo.reader().read("/sw/app/2.0/only-in-2")) == b"2" * 5000
    check(repo)
    leftover = repo.gc(keep_revisions=1, dry_run=True).garbage
    assert len(leftover) == 1 and leftover[0].endswith("H")  # the history gc itself replaced


def test_gc_keeps_named_tags(repo: NativeRepository) -> None:
    publish(repo, "/x", tree({"a": b"tagged content"}), tag="release")
    key = repo.reader().lookup("/x/a").entry.content_hash.object_key()
    remove(repo, "/x")
    repo.gc(keep_revisions=1)
    assert repo.storage.exists(key)
    with repo.transaction() as txn:
        txn.edits.rollback("release")
        txn.commit()
    check(repo)


def test_compression_level_option(tmp_path: Path) -> None:
    data = b"".join(f"line {i} of text\n".encode() for i in range(20000))
    sizes = {}
    for level in (1, 9):
        repo = NativeRepository(LocalStorage(tmp_path / f"r{level}"), NAME,
                                keys_dir=tmp_path / f"k{level}",
                                options=EngineOptions(cache_dir=tmp_path / f"c{level}",
                                                      compression_level=level))
        repo.create()
        publish(repo, "/f", iter([Entry("", Kind.FILE, 0o644, size=len(data),
                                        content=BytesContent(data))]))
        key = repo.reader().lookup("/f").entry.content_hash.object_key()
        sizes[level] = len(repo.storage.get(key))
        assert b"".join(repo.reader().read("/f")) == data
    assert sizes[1] > sizes[9]


def test_streams_do_not_buffer_whole_files(repo: NativeRepository) -> None:
    """A large file handed as a stream is read in blocks, never all at once."""
    reads: list[int] = []

    class Counting(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            reads.append(n)
            self.left -= n
            return os.urandom(n)

    size = 48 << 20
    with repo.transaction() as txn:
        txn.replace("/s", iter([Entry("", Kind.FILE, 0o644, size=size,
                                      content=_Opener(lambda: Counting(size)))]))
        txn.commit()
    assert max(reads) <= 4 << 20
    check(repo)


class _Opener:
    def __init__(self, make) -> None:  # type: ignore[no-untyped-def]
        self.make = make

    def open(self):  # type: ignore[no-untyped-def]
        return self.make()
