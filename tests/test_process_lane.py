"""Small files stored by worker processes (``engine/procpool.py``): same objects as the
threads make, and a failure in a worker fails the publish, which then publishes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from publishers import engine_repository

from cvmfs_publisher.cvmfs.compression import PRESETS
from cvmfs_publisher.engine import pipeline
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.entries import Entry
from cvmfs_publisher.errors import SourceError, StorageError
from cvmfs_publisher.sources import open_source

NAME = "lane.example.org"
FILES = 300


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen]:
    """The lane from the 9th small file on; the worker processes it started."""
    monkeypatch.setattr(pipeline, "MIN_FILES", 8)
    started: list[subprocess.Popen] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, args, *rest, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(args, *rest, **kwargs)
            if "cvmfs_publisher.engine.procpool" in args:
                started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return started


def make_repo(tmp_path: Path, preset: str = "balanced") -> NativeRepository:
    return engine_repository(tmp_path, NAME, compression=preset)


def make_src(root: Path) -> dict[str, bytes]:
    files = {f"d{i % 5}/f{i:03d}": f"small file {i}\n".encode() * (i % 40 + 1)
             for i in range(FILES)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


@pytest.mark.parametrize("preset", PRESETS)
def test_workers_store_what_threads_store(tmp_path: Path, workers: list, preset: str) -> None:
    files = make_src(tmp_path / "src")
    repo = make_repo(tmp_path, preset)
    with repo.transaction() as txn:
        txn.replace("/sw", open_source(tmp_path / "src")[0])
        result = txn.commit()
    assert len(workers) >= 1
    assert all(w.wait(timeout=10) == 0 for w in workers)  # ended when the publish did
    assert result.objects_written >= FILES
    reader = repo.reader()
    for rel, data in files.items():
        assert b"".join(reader.read(f"/sw/{rel}")) == data
    assert repo.verify().problems == []
    # the same tree through threads only: the very same root catalog content and objects
    threads = make_repo(tmp_path / "threads", preset)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "MIN_FILES", 10**9)
        with threads.transaction() as txn:
            txn.replace("/sw", open_source(tmp_path / "src")[0])
            txn.commit()
    ours, theirs = data_objects(repo), data_objects(threads)
    assert sorted(ours.values()) == sorted(theirs.values())  # the same contents, once each
    if preset != "fast":  # ISA-L does not promise the same bytes twice (see data_objects)
        assert ours.keys() == theirs.keys()


def data_objects(repo: NativeRepository) -> dict[str, bytes]:
    """Object name -> inflated content, catalogs, history and certificate left out.

    ISA-L's match finder may start from what the same process compressed before: seen
    once in ~12 runs, a worker stored a 26-byte file without the one match the threads
    found (a valid stream, one byte longer), so only the contents are compared for it.
    """
    keys = [k for k in repo.storage.list("data/") if not k.endswith(("C", "H", "X"))]
    return {k: zlib.decompress(repo.storage.get(k)) for k in keys}


def changing(entries: Iterator[Entry], at: int, change) -> Iterator[Entry]:  # type: ignore[no-untyped-def]
    """The walk's entries; before the ``at``-th file is handed on, ``change`` runs."""
    files = 0
    for entry in entries:
        if entry.content is not None:
            files += 1
            if files == at:
                change(entry)
        yield entry


def unchanged_head(repo: NativeRepository) -> int:
    return repo.head().manifest.revision


def test_a_file_that_cannot_be_read_fails_the_publish(tmp_path: Path, workers: list) -> None:
    make_src(tmp_path / "src")
    repo = make_repo(tmp_path)

    def replace_by_directory(entry: Entry) -> None:
        path = entry.content.path  # type: ignore[union-attr]
        os.unlink(path)
        os.mkdir(path)

    entries = changing(open_source(tmp_path / "src")[0], 150, replace_by_directory)
    with (pytest.raises(SourceError, match=r"cannot read .*/f\d{3}: Is a directory"),
          repo.transaction() as txn):
        txn.replace("/sw", entries)
        txn.commit()
    assert workers and unchanged_head(repo) == 0
    assert all(w.wait(timeout=10) is not None for w in workers)


def test_a_worker_killed_fails_the_publish(tmp_path: Path, workers: list) -> None:
    make_src(tmp_path / "src")
    repo = make_repo(tmp_path)

    def kill_workers(_entry: Entry) -> None:
        assert workers, "the lane should have started by now"
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()

    entries = changing(open_source(tmp_path / "src")[0], 100, kill_workers)
    with (pytest.raises(StorageError, match=r"worker process .* ended \(exit status -9\)"),
          repo.transaction() as txn):
        txn.replace("/sw", entries)
        txn.commit()
    assert unchanged_head(repo) == 0
    assert repo.verify().problems == []
