"""The Storage contract as LocalStorage keeps it: the manifest switch, streams, listing, locks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvmfs_publisher.errors import InvalidPath, ObjectNotFound, RepositoryBusy, StorageError
from cvmfs_publisher.storage import Capabilities
from cvmfs_publisher.storage.base import MANIFEST
from cvmfs_publisher.storage.local import LocalStorage

OBJECT = "data/ab/" + "c" * 38


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "repo")


def test_put_never_switches_the_manifest(local: LocalStorage) -> None:
    with pytest.raises(InvalidPath, match="only replaced with put_manifest"):
        local.put(MANIFEST, b"by accident")
    assert not local.exists(MANIFEST)


def test_put_manifest_is_compare_and_swap(local: LocalStorage) -> None:
    local.put_manifest(b"one", None)
    with pytest.raises(StorageError, match="the manifest changed since this publish started"):
        local.put_manifest(b"two", None)
    with pytest.raises(StorageError, match="the manifest changed since this publish started"):
        local.put_manifest(b"two", b"something else")
    assert local.get(MANIFEST) == b"one"
    with local.lock("me"):
        local.put_manifest(b"two", b"one")
        local.put_manifest(b"three", b"two")
    assert local.get(MANIFEST) == b"three"
    assert list((local.root / "data" / "txn").glob("*.tmp")) == []


def test_put_manifest_outside_the_lock_refuses_while_another_publishes(
        local: LocalStorage) -> None:
    local.put_manifest(b"one", None)
    with LocalStorage(local.root).lock("the other publisher"), \
            pytest.raises(RepositoryBusy, match="the other publisher"):
        local.put_manifest(b"two", b"one")
    assert local.get(MANIFEST) == b"one"


def test_read_only_refuses_every_write(local: LocalStorage) -> None:
    local.put(OBJECT, b"x")
    reader = LocalStorage(local.root, read_only=True)
    for write in (lambda: reader.put(OBJECT, b"y"), lambda: reader.put_manifest(b"m", None),
                  lambda: reader.delete(OBJECT), lambda: reader.lock("me").__enter__()):
        with pytest.raises(StorageError, match="read-only"):
            write()
    assert reader.get(OBJECT) == b"x"
    assert reader.capabilities().lock == "none"


def test_open_streams_the_file_with_its_size(local: LocalStorage) -> None:
    data = os.urandom(3 << 20)
    local.put(OBJECT, data)
    with local.open(OBJECT) as stream:
        assert stream.size == len(data)
        stream.skip(1000)
        assert stream.read(10) == data[1000:1010]
        assert b"".join(stream) == data[1010:]
    with pytest.raises(ObjectNotFound):
        local.open("data/00/" + "0" * 38)


def test_list_hides_staging_and_the_lock(local: LocalStorage) -> None:
    local.put(OBJECT, b"x")
    with local.lock("me"):
        (local.root / "data" / "txn" / "half-written.tmp").write_bytes(b"partial")
        assert list(local.list()) == [OBJECT]
        assert list(local.list_with_sizes("data/")) == [(OBJECT, 1)]


def test_capabilities(local: LocalStorage) -> None:
    assert local.capabilities() == Capabilities(parallelism=None, conditional_writes=True,
                                                lock="flock", listable=True)
    assert local.check_locking() is None


def test_lock_is_not_reentrant_and_busy_names_the_holder(local: LocalStorage) -> None:
    with local.lock("first"):
        with pytest.raises(StorageError, match="already holds"), local.lock("again"):
            pass
        assert local.lock_holder().owner == "first"
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; "
             "from cvmfs_publisher.storage.local import LocalStorage; "
             "LocalStorage(Path(sys.argv[1])).lock('second').__enter__()", str(local.root)],
            capture_output=True, text=True, timeout=60)
        assert "RepositoryBusy" in other.stderr and "first" in other.stderr
    assert local.lock_holder() is None
