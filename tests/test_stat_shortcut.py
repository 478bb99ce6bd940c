"""The stat shortcut: a re-publish reads only files whose lstat signature changed.

The signature is (device, inode, size, mtime_ns, ctime_ns). Content that changes with the
same size and mtime still changes the ctime (an in-place write) or the inode (a file
replaced by rename), so it is read again; these tests prove it with the racy window
closed (``RACY_SECONDS = 0``), and that fresh files are not trusted with it open.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from publishers import engine_repository, publish_source

from cvmfs_publisher.engine import content_index, pipeline
from cvmfs_publisher.engine.repository import NativeRepository

NAME = "stat.example.org"
MTIME = 1_700_000_000_000_000_000


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the pipeline opened to read (small files are read by ``pipeline._read``)."""
    seen: list[str] = []
    real = pipeline._read

    def counting(path, size_hint):  # type: ignore[no-untyped-def]
        seen.append(os.path.basename(path))
        return real(path, size_hint)

    monkeypatch.setattr(pipeline, "_read", counting)
    return seen


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content_index, "RACY_SECONDS", 0.0)


def make_repo(tmp_path: Path, cache: str = "cache") -> NativeRepository:
    return engine_repository(tmp_path, NAME, cache)


def remove_and_collect(repo: NativeRepository, tmp_path: Path) -> None:
    """Drop /src, move trunk-previous past it, collect: its objects are deleted."""
    with repo.transaction() as txn:
        txn.remove("/src")
        txn.commit()
    note = tmp_path / "note"
    note.write_text("a later revision\n")
    publish_source(repo, note, "/note")
    assert len(repo.gc(keep_revisions=1).garbage) >= 20


def published(repo: NativeRepository, name: str) -> bytes:
    return b"".join(repo.reader().read(f"/src/{name}"))


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(MTIME, MTIME))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    for i in range(20):
        write(root / f"f{i:02d}", f"file {i:02d} content".encode())
    return root


def test_unchanged_files_are_not_read(tmp_path: Path, src: Path, reads: list[str],
                                      no_racy_window: None) -> None:
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    assert len(reads) == 20
    reads.clear()
    again = publish_source(repo, src)
    assert reads == [] and again.objects_reused == 20 and again.files == 20
    assert repo.verify().problems == []


@pytest.mark.parametrize("how", ["in place", "replaced by rename"])
def test_same_size_and_mtime_with_new_content_is_read_again(
        tmp_path: Path, src: Path, reads: list[str], no_racy_window: None, how: str) -> None:
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    before = os.lstat(src / "f07")
    new = b"FILE 07 CONTENT"
    assert len(new) == before.st_size
    if how == "in place":
        with open(src / "f07", "r+b") as f:
            f.write(new)
        os.utime(src / "f07", ns=(MTIME, MTIME))
    else:
        write(src / "f07.tmp", new)
        os.replace(src / "f07.tmp", src / "f07")
    after = os.lstat(src / "f07")
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert (after.st_ino, after.st_ctime_ns) != (before.st_ino, before.st_ctime_ns)
    reads.clear()
    publish_source(repo, src)
    assert reads == ["f07"]
    assert published(repo, "f07") == new
    assert repo.verify().problems == []


def test_fresh_files_are_read_until_their_ctime_is_safely_past(tmp_path: Path, src: Path,
                                                               reads: list[str]) -> None:
    """Within RACY_SECONDS of the walk, a write in the same clock tick could keep the ctime:
    such files are not recorded, so the next publish reads them again."""
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    reads.clear()
    publish_source(repo, src)
    assert sorted(reads) == sorted(p.name for p in src.iterdir())


def test_objects_collected_elsewhere_are_not_trusted(tmp_path: Path, src: Path,
                                                     reads: list[str],
                                                     no_racy_window: None) -> None:
    """Another machine (another cache) publishes and collects what we stored: our index
    no longer describes the head, so its rows are checked against the storage first."""
    ours = make_repo(tmp_path)
    publish_source(ours, src)
    remove_and_collect(make_repo(tmp_path, cache="other-cache"), tmp_path)
    reads.clear()
    result = publish_source(ours, src)
    assert sorted(reads) == sorted(p.name for p in src.iterdir())  # objects gone: read again
    assert result.objects_reused == 0
    assert ours.verify().problems == []
    reads.clear()
    publish_source(ours, src)
    assert reads == []  # and trusted again once our own commit is the head


def test_garbage_collection_forgets_what_it_deleted(tmp_path: Path, src: Path,
                                                    reads: list[str],
                                                    no_racy_window: None) -> None:
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    remove_and_collect(repo, tmp_path)
    reads.clear()
    publish_source(repo, src)
    assert len(reads) == 20
    assert repo.verify().problems == []


def test_a_lost_cache_only_costs_reading_again(tmp_path: Path, src: Path, reads: list[str],
                                               no_racy_window: None) -> None:
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    shutil.rmtree(tmp_path / "cache")
    reads.clear()
    publish_source(repo, src)
    assert len(reads) == 20
    assert repo.verify().problems == []
