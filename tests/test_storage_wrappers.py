"""Storage wrappers and the factory hook, around a real LocalStorage in a temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import InvalidPath, ObjectNotFound, RepositoryBusy, StorageError
from cvmfs_publisher.storage import Storage, add_wrapper, open_storage, wrapped_by
from cvmfs_publisher.storage.base import MANIFEST, REFLOG
from cvmfs_publisher.storage.local import LocalStorage
from cvmfs_publisher.storage.wrappers import (
    DryRunStorage,
    FaultInjectingStorage,
    RecordedWrite,
    RetryingStorage,
    StorageWrapper,
    WriteEvent,
    WriteSequence,
)

OBJECT = "data/ab/" + "c" * 38
OTHER = "data/ab/" + "d" * 38
NAME = "sw.example.org"


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "repo")


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes: what "nothing was written" compares."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- the base wrapper ---------------------------------------------------------------------------


def test_wrapper_delegates_every_method_of_the_interface() -> None:
    """A method the wrapper forgot would silently fall back to the base class's default."""
    interface = {name for name in dir(Storage) if not name.startswith("_")}
    assert interface - set(vars(StorageWrapper)) == set()


def test_wrapper_passes_everything_through(local: LocalStorage) -> None:
    wrapped = StorageWrapper(StorageWrapper(local))
    assert wrapped.unwrap() is local
    assert wrapped.location == local.location
    assert wrapped.capabilities() == local.capabilities()
    wrapped.put(OBJECT, b"object")
    assert local.get(OBJECT) == b"object" and wrapped.exists(OBJECT)
    with wrapped.open(OBJECT) as stream:
        assert (stream.size, stream.read()) == (6, b"object")
    with wrapped.lock("tester"):
        assert wrapped.lock_holder().owner == "tester"
        wrapped.put_manifest(b"m1", None)
    assert wrapped.lock_holder() is None
    assert list(wrapped.list_with_sizes("data/")) == [(OBJECT, 6)]
    wrapped.delete(OBJECT)
    assert not local.exists(OBJECT)
    wrapped.read_only = True  # the CLI re-enables writes on an opened storage like this
    assert local.read_only
    with pytest.raises(StorageError, match="read-only"):
        wrapped.put(OBJECT, b"x")


# -- retries ------------------------------------------------------------------------------------


class Flaky(StorageWrapper):
    """Fails the first ``failures`` calls of each operation with StorageError."""

    def __init__(self, inner: Storage, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.calls[op] <= self.failures:
            raise StorageError(f"{op} failed (call {self.calls[op]})")

    def get(self, key: str) -> bytes:
        self._maybe_fail("get")
        return super().get(key)

    def exists(self, key: str) -> bool:
        self._maybe_fail("exists")
        return super().exists(key)

    def put(self, key: str, data: bytes) -> None:
        self._maybe_fail("put")
        super().put(key, data)

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        self._maybe_fail("put_manifest")
        super().put_manifest(data, previous)

    def delete(self, key: str) -> None:
        self._maybe_fail("delete")
        super().delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        self._maybe_fail("list")
        yield from super().list(prefix)


def retrying(inner: Storage, attempts: int = 4) -> tuple[RetryingStorage, list[float]]:
    waits: list[float] = []
    return RetryingStorage(inner, attempts=attempts, delay=0.5, max_delay=1.5,
                           sleep=waits.append), waits


def test_retries_idempotent_operations_with_exponential_backoff(local: LocalStorage) -> None:
    local.put(OBJECT, b"object")
    flaky = Flaky(local, failures=3)
    storage, waits = retrying(flaky)
    assert storage.get(OBJECT) == b"object"
    assert flaky.calls["get"] == 4 and waits == [0.5, 1.0, 1.5]  # capped at max_delay
    assert storage.exists(OBJECT)
    storage.put(OTHER, b"other")  # a content-addressed object: same name, same bytes
    assert local.get(OTHER) == b"other"
    storage.delete(OTHER)
    assert not local.exists(OTHER)
    assert list(storage.list("data/")) == [OBJECT]
    assert flaky.calls == {"get": 4, "exists": 4, "put": 4, "delete": 4, "list": 4}


def test_gives_up_after_the_last_attempt(local: LocalStorage) -> None:
    flaky = Flaky(local, failures=10)
    storage, waits = retrying(flaky, attempts=3)
    with pytest.raises(StorageError, match=r"get failed \(call 3\)"):
        storage.get(OBJECT)
    assert flaky.calls["get"] == 3 and len(waits) == 2


def test_never_retries_answers_or_unsafe_writes(local: LocalStorage) -> None:
    flaky = Flaky(local, failures=1)
    storage, waits = retrying(flaky)
    with pytest.raises(ObjectNotFound):
        storage.get(OBJECT)  # the first call fails, the retry answers "not found": no third
    assert flaky.calls["get"] == 2
    with pytest.raises(StorageError, match="put failed"):
        storage.put(REFLOG, b"named files are replaced, a late retry could win over a newer one")
    with pytest.raises(StorageError, match="put_manifest failed"):
        storage.put_manifest(b"m", None)
    assert (flaky.calls["put"], flaky.calls["put_manifest"]) == (1, 1)
    assert not local.exists(REFLOG) and not local.exists(MANIFEST)
    retried = RetryingStorage(local, sleep=waits.append)
    with LocalStorage(local.root).lock("someone"), pytest.raises(RepositoryBusy), \
            retried.lock("me"):
        pass
    assert len(waits) == 1  # only the get above waited


def test_a_listing_is_not_restarted_once_it_produced_keys(local: LocalStorage) -> None:
    local.put(OBJECT, b"1")
    local.put(OTHER, b"2")

    class BreaksMidway(StorageWrapper):
        def list(self, prefix: str = "") -> Iterator[str]:
            keys = self.inner.list(prefix)
            yield next(keys)
            raise StorageError("connection lost while listing")

    storage, waits = retrying(BreaksMidway(local))
    seen: list[str] = []
    with pytest.raises(StorageError, match="connection lost"):
        seen.extend(storage.list("data/"))
    assert seen == [OBJECT] and waits == []


# -- dry runs -----------------------------------------------------------------------------------


def test_dry_run_records_writes_and_reads_them_back(local: LocalStorage) -> None:
    local.put(OBJECT, b"real")
    local.put_manifest(b"m0", None)
    before = tree(local.root)
    dry = DryRunStorage(local)
    dry.put(OTHER, b"would be written")
    dry.delete(OBJECT)
    with pytest.raises(StorageError, match="the manifest changed since this publish started"):
        dry.put_manifest(b"m1", b"not what is there")
    with pytest.raises(InvalidPath):
        dry.put(MANIFEST, b"m1")
    dry.put_manifest(b"m1", b"m0")
    assert tree(local.root) == before
    assert dry.writes == [RecordedWrite("put", OTHER, 16), RecordedWrite("delete", OBJECT, -1),
                          RecordedWrite("put_manifest", MANIFEST, 2)]
    assert dry.get(OTHER) == b"would be written" and dry.exists(OTHER)
    assert not dry.exists(OBJECT)
    with pytest.raises(ObjectNotFound):
        dry.get(OBJECT)
    assert dry.get(MANIFEST) == b"m1"
    assert set(dry.list()) == {OTHER, MANIFEST}
    assert dry.location.endswith("(dry run)")


def test_dry_run_lock_writes_nothing_but_sees_a_real_holder(local: LocalStorage) -> None:
    local.put(OBJECT, b"x")
    before = tree(local.root)
    dry = DryRunStorage(local)
    with dry.lock("dry"):
        assert local.lock_holder() is None
    assert tree(local.root) == before
    with LocalStorage(local.root).lock("real publisher"), \
            pytest.raises(RepositoryBusy, match="real publisher"), dry.lock("dry"):
        pass


def test_dry_run_publish_leaves_the_repository_untouched(tmp_path: Path) -> None:
    options = EngineOptions(cache_dir=tmp_path / "cache", workers=2)
    real = NativeRepository(LocalStorage(tmp_path / NAME), NAME, keys_dir=tmp_path / "keys",
                            options=options)
    real.create()
    before = tree(tmp_path / NAME)
    dry = DryRunStorage(LocalStorage(tmp_path / NAME))
    repository = NativeRepository(dry, NAME, keys_dir=tmp_path / "keys", options=options)
    with repository.transaction() as txn:
        txn.replace("/sw/a", iter([Entry("", Kind.DIR, 0o755),
                                   Entry("f.txt", Kind.FILE, size=4,
                                         content=BytesContent(b"new\n"))]))
        assert txn.commit().revision == 1
    assert tree(tmp_path / NAME) == before
    assert dry.writes[-1].op == "put_manifest"
    assert any(w.key.startswith("data/") for w in dry.writes)
    assert repository.head().manifest.revision == 1  # reads see the dry run's own writes
    assert real.head().manifest.revision == 0


# -- fault injection ----------------------------------------------------------------------------


def test_fault_injection_sees_every_write_before_and_after(local: LocalStorage) -> None:
    events: list[WriteEvent] = []
    storage = FaultInjectingStorage(local, events.append)
    storage.put(OBJECT, b"1")
    storage.put_manifest(b"m", None)
    storage.delete(OBJECT)
    assert storage.get(MANIFEST) == b"m" and storage.writes == 3
    assert [(e.number, e.op, e.key, e.when) for e in events] == [
        (1, "put", OBJECT, "before"), (1, "put", OBJECT, "after"),
        (2, "put_manifest", MANIFEST, "before"), (2, "put_manifest", MANIFEST, "after"),
        (3, "delete", OBJECT, "before"), (3, "delete", OBJECT, "after"),
    ]


def test_a_shared_sequence_numbers_the_writes_of_several_storages(tmp_path: Path) -> None:
    numbers: list[tuple[int, str]] = []
    sequence = WriteSequence()
    first, second = (FaultInjectingStorage(LocalStorage(tmp_path / name),
                                           lambda e: numbers.append((e.number, e.when)),
                                           sequence=sequence) for name in ("a", "b"))
    first.put(OBJECT, b"1")
    second.put(OBJECT, b"2")
    first.delete(OBJECT)
    assert [n for n, when in numbers if when == "after"] == [1, 2, 3]
    assert first.writes == second.writes == 3


def fail_at(number: int, when: str) -> Callable[[WriteEvent], None]:
    def on_write(event: WriteEvent) -> None:
        if (event.number, event.when) == (number, when):
            raise StorageError(f"injected at write {number} {when}")

    return on_write


def test_an_injected_failure_before_a_write_prevents_it(local: LocalStorage) -> None:
    storage = FaultInjectingStorage(local, fail_at(2, "before"))
    storage.put(OBJECT, b"1")
    with pytest.raises(StorageError, match="injected at write 2 before"):
        storage.put(OTHER, b"2")
    assert local.exists(OBJECT) and not local.exists(OTHER)


def test_an_injected_failure_after_a_write_comes_after_it(local: LocalStorage) -> None:
    storage = FaultInjectingStorage(local, fail_at(1, "after"))
    with pytest.raises(StorageError, match="injected at write 1 after"):
        storage.put_manifest(b"m", None)
    assert local.get(MANIFEST) == b"m"


def test_writes_from_threads_are_serialized_around_the_callback(local: LocalStorage) -> None:
    events: list[tuple[int, str]] = []
    storage = FaultInjectingStorage(local, lambda e: events.append((e.number, e.when)))
    keys = [f"data/{i:02x}/" + "e" * 38 for i in range(40)]
    threads = [threading.Thread(target=storage.put, args=(key, b"x")) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events == [(n, when) for n in range(1, 41) for when in ("before", "after")]


# -- the factory and its hook -------------------------------------------------------------------


def test_open_storage_picks_the_backend(tmp_path: Path) -> None:
    local = open_storage(str(tmp_path / "repo"))
    assert local.capabilities().lock == "flock" and local.location == str(tmp_path / "repo")
    assert open_storage(str(tmp_path), read_only=True).capabilities().lock == "none"
    http = open_storage("http://127.0.0.1:9/cvmfs/sw.example.org")
    assert http.public_url() == "http://127.0.0.1:9/cvmfs/sw.example.org"
    assert not http.capabilities().listable
    with pytest.raises(StorageError, match="read-only"):
        http.put(OBJECT, b"x")
    with pytest.raises(Exception, match="needs the repository name"):
        open_storage("s3://bucket/prefix")


def test_wrappers_apply_to_every_storage_opened_while_registered(tmp_path: Path) -> None:
    order: list[str] = []

    def tag(name: str) -> Callable[[Storage], Storage]:
        def wrap(storage: Storage) -> Storage:
            order.append(name)
            return StorageWrapper(storage)

        return wrap

    with wrapped_by(tag("inner")):
        remove = add_wrapper(tag("outer"))
        storage = open_storage(str(tmp_path))
        remove()
        assert order == ["inner", "outer"]
        assert isinstance(storage, StorageWrapper)
        assert isinstance(storage.inner, StorageWrapper)
        assert isinstance(storage.unwrap(), LocalStorage)
        once = open_storage(str(tmp_path))
        assert isinstance(once, StorageWrapper) and not isinstance(once.inner, StorageWrapper)
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
