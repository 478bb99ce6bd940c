"""The publish lease across machines: exclusion, renewal, takeover, break, concurrency."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest

from cvmfs_publisher.errors import InvalidPath, RepositoryBusy, StorageError
from cvmfs_publisher.storage.base import MANIFEST
from cvmfs_publisher.storage.s3 import (
    LEASE,
    LeaseState,
    S3Settings,
    S3Storage,
    probe_conditional_writes,
)

from .s3kit import FQRN, published_files, sample_files, write_tree

WORKER = Path(__file__).with_name("s3_worker.py")


def settings_file(settings: S3Settings, path: Path) -> Path:
    values = {k: (str(v) if isinstance(v, Path) else v)
              for k, v in dataclasses.asdict(settings).items()}
    path.write_text(json.dumps(values))
    return path


def worker(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_live_lease_blocks_others(s3_settings):
    holder, other = S3Storage(s3_settings, FQRN), S3Storage(s3_settings, FQRN)
    assert other.lock_holder() is None
    with holder.lock("alice publishing sw.example.org"):
        info = other.lock_holder()
        assert info is not None and info.owner == "alice publishing sw.example.org"
        assert info.pid == os.getpid() and info.host == socket.gethostname()
        assert info.expires is not None and info.expires > time.time()
        with pytest.raises(RepositoryBusy) as busy, other.lock("bob"):
            pass
        message = str(busy.value)
        assert message.startswith(f"repository s3://cvmfs/{s3_settings.prefix}/{FQRN} is busy: "
                                  f"alice publishing sw.example.org (pid {os.getpid()} on ")
        assert message.endswith("retry later or use --wait")
    assert other.lock_holder() is None
    with other.lock("bob"):
        assert other.lock_holder().owner == "bob"
    assert LEASE not in set(other.list())


def test_renewed_lease_outlives_its_ttl_and_waiters_get_it_after(s3_settings):
    """A 3 s lease held past its ttl stays valid (renewed); a waiter gets it once released."""
    settings = dataclasses.replace(s3_settings, lease_seconds=3)
    holder, waiter = S3Storage(settings, FQRN), S3Storage(settings, FQRN)
    acquired: list[float] = []

    def wait_for_lease() -> None:
        with waiter.lock("waiter", wait=True):
            acquired.append(time.monotonic())

    with holder.lock("holder"):
        first = waiter.read_lease()
        thread = threading.Thread(target=wait_for_lease)
        thread.start()
        state = wait_until(lambda: _outlived(waiter.read_lease(), settings.lease_seconds))
        assert state.etag != first.etag, "only a renewal rewrites the lease"
        assert not state.expired, f"renewed {state.age:.1f} s ago, ttl {state.ttl:.0f} s"
        with pytest.raises(RepositoryBusy), waiter.lock("impatient"):
            pass
        assert not acquired
        released = time.monotonic()
    thread.join(20)
    assert acquired and acquired[0] >= released


def _outlived(state: LeaseState | None, ttl: float) -> LeaseState | None:
    """The lease, once it was created more than ``ttl`` seconds ago."""
    return state if state is not None and time.time() - state.info.since > ttl + 0.5 else None


def test_killed_publishers_lease_expires_and_is_taken_over(s3_settings, tmp_path, caplog):
    """Expiry is judged by the server's clock, here moved on in the answers' Date header."""
    config = settings_file(s3_settings, tmp_path / "settings.json")  # 60 s lease
    proc = worker("die-holding", config, tmp_path)
    proc.communicate(timeout=60)
    assert proc.returncode == -9 and (tmp_path / "holding").exists()
    storage = S3Storage(s3_settings, FQRN)
    clock = ServerClock(storage)
    with pytest.raises(RepositoryBusy, match="ghost publisher"), storage.lock("me"):
        pass
    clock.offset = s3_settings.lease_seconds - 10  # old, but not yet expired
    soon = r"its lease expires in (10|[5-9]) s"
    with pytest.raises(RepositoryBusy, match=soon), storage.lock("me"):
        pass

    got: list[str] = []

    def wait_for_lease() -> None:
        with storage.lock("me", wait=True):
            got.append(storage.lock_holder().owner)

    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=wait_for_lease)
        reads = clock.reads
        thread.start()
        wait_until(lambda: clock.reads > reads + 1)  # the waiter looked, and looked again
        assert not got, "the lease is not expired yet"
        clock.offset = s3_settings.lease_seconds + 1
        thread.join(30)
    assert got == ["me"]
    assert "took over the expired publish lease of ghost publisher" in caplog.text


class ServerClock:
    """Moves the ``Date`` of the server's GetObject answers ``offset`` seconds ahead."""

    def __init__(self, storage: S3Storage) -> None:
        self.offset = 0.0
        self.reads = 0
        storage.client.meta.events.register("after-call.s3.GetObject", self._shift)

    def _shift(self, parsed: dict, **_kwargs: object) -> None:
        headers = parsed.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if "date" in headers:
            self.reads += 1
            moved = parsedate_to_datetime(headers["date"]) + timedelta(seconds=self.offset)
            headers["date"] = format_datetime(moved, usegmt=True)


def wait_until(condition, timeout: float = 30):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {condition}")


def test_break_lock_removes_any_lease(s3_settings, tmp_path):
    config = settings_file(s3_settings, tmp_path / "settings.json")  # 60 s lease
    proc = worker("die-holding", config, tmp_path)
    proc.communicate(timeout=60)
    storage = S3Storage(s3_settings, FQRN)
    with pytest.raises(RepositoryBusy), storage.lock("me"):
        pass
    removed = storage.break_lock()
    assert removed is not None and removed.owner == "ghost publisher" and removed.pid == proc.pid
    assert storage.break_lock() is None
    with storage.lock("me"):
        pass


def test_publisher_whose_lease_was_broken_cannot_publish(s3_repo, s3_settings, new_repo,
                                                         publish, tmp_path):
    """unlock --force on a live publisher: the other one's revision wins, nothing is mixed."""
    from cvmfs_publisher.sources import open_source

    src = write_tree(tmp_path / "late", {"late.txt": b"late\n"})
    with s3_repo.transaction() as txn:
        entries, _ = open_source(src)
        txn.replace("/late", entries)
        rescuer = new_repo(S3Storage(s3_settings, FQRN))
        assert rescuer.storage.break_lock().owner.endswith(f"publishing {FQRN}")
        publish(rescuer, "/rescue", {"r.txt": b"rescue\n"})
        with pytest.raises(StorageError, match="manifest changed since this publish started"):
            txn.commit()
    head = rescuer.head().manifest
    assert head.revision == 1
    assert published_files(rescuer, "/rescue") == {"r.txt": b"rescue\n"}
    report = rescuer.verify()
    assert report.ok, report.problems
    assert rescuer.storage.lock_holder() is None


def test_manifest_write_is_conditional_while_holding(s3_settings):
    a, b = S3Storage(s3_settings, FQRN), S3Storage(s3_settings, FQRN)
    with a.lock("a"):
        a.put_manifest(b"first", None)
        a.put_manifest(b"second", b"first")  # our own switches keep the condition up to date
    with a.lock("a"):
        b.put_manifest(b"sneaked in without the lease", b"second")
        # a's own bytes check passes (it started from "second"): the server's If-Match refuses
        with pytest.raises(StorageError, match="manifest changed since this publish started"):
            a.put_manifest(b"third", b"second")
        with pytest.raises(StorageError, match="manifest changed since this publish started"):
            a.put_manifest(b"third", b"sneaked in without the lease")
    assert b.get(MANIFEST) == b"sneaked in without the lease"


def test_manifest_switch_without_the_lease_is_compare_and_swap(s3_settings):
    storage = S3Storage(s3_settings, FQRN)
    with pytest.raises(InvalidPath, match="only replaced with put_manifest"):
        storage.put(MANIFEST, b"by accident")
    storage.put_manifest(b"one", None)
    with pytest.raises(StorageError, match="manifest changed"):
        storage.put_manifest(b"two", None)  # If-None-Match: there is one already
    with pytest.raises(StorageError, match="manifest changed"):
        storage.put_manifest(b"two", b"not the current one")
    storage.put_manifest(b"two", b"one")
    assert storage.get(MANIFEST) == b"two"


def test_probe_conditional_writes(s3_storage):
    support = probe_conditional_writes(s3_storage)
    assert support.if_none_match and support.if_match and support.ok
    assert "honours" in support.describe()
    assert [k for k in s3_storage.list() if k.startswith(".cvmfs_probe")] == []


def test_probe_detects_a_server_that_ignores_them(s3_storage):
    """Strip the headers on the wire, as a proxy or an old server would ignore them."""

    def strip(request, **_kwargs):
        for name in ("If-None-Match", "If-Match"):
            if name in request.headers:
                del request.headers[name]

    s3_storage.client.meta.events.register_first("before-sign.s3.PutObject", strip)
    support = probe_conditional_writes(s3_storage)
    assert not support.if_none_match and not support.if_match and not support.ok
    assert "ignores If-None-Match and If-Match" in support.describe()


def test_emulated_lease_without_conditional_writes(s3_settings):
    settings = dataclasses.replace(s3_settings, conditional_writes=False)
    a, b = S3Storage(settings, FQRN), S3Storage(settings, FQRN)
    with a.lock("a"):
        with pytest.raises(RepositoryBusy), b.lock("b"):
            pass
        a.put_manifest(b"m", None)
    with b.lock("b"):
        pass


def test_four_publishers_at_once(s3_repo, s3_settings, tmp_path):
    """Separate processes, one bucket: serialized by the lease, every path in the result.

    The first holder keeps the lease until the three others have each been refused once."""
    config = settings_file(s3_settings, tmp_path / "settings.json")
    for i in range(4):
        write_tree(tmp_path / f"src{i}", sample_files(f"publisher {i}", count=3))
    procs = [worker("publish", config, tmp_path, i) for i in range(4)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline, [p.poll() for p in procs]
        time.sleep(0.02)
    (tmp_path / "go").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["revision"] for r in results) == [1, 2, 3, 4]
    assert sorted(r["busy"] for r in results) == [False, True, True, True]  # 3 waited
    spans = sorted((r["acquired"], r["committed"]) for r in results)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two publishers held the lease at the same time"
    for i in range(4):
        expected = sample_files(f"publisher {i}", count=3)
        assert published_files(s3_repo, f"/p{i}") == expected
    assert s3_repo.head().manifest.revision == 4
    report = s3_repo.verify()
    assert report.ok, report.problems
