"""What a publish and a garbage collection ask of a real S3 server, counted on the wire
(``wiretap.py``: a recording proxy, so PUTs count whichever HTTP path sent them).

Known objects are not asked about again (no HEAD for what the content index verified in
this storage's current head), and garbage goes in ``DeleteObjects`` batches of up to 1,000
keys instead of one ``DeleteObject`` per key.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.s3 import S3Storage

from .s3kit import FQRN, published_files, write_tree


@pytest.fixture
def tapped(tapped_settings, new_repo) -> tuple[NativeRepository, S3Storage]:
    """A new repository whose every request passes the wiretap."""
    storage = S3Storage(tapped_settings, FQRN)
    repo = new_repo(storage)
    repo.create()
    return repo, storage


def many_files(tag: str, count: int) -> dict[str, bytes]:
    return {f"d{i % 10}/f{i}.txt": f"{tag} file {i}\n".encode() * (i % 7 + 1)
            for i in range(count)}


def test_republish_of_unchanged_tree_asks_nothing_per_file(tapped, wiretap, tmp_path):
    s3_repo, _ = tapped
    files = many_files("same", 300)
    src = write_tree(tmp_path / "src", files)

    def publish() -> object:
        with s3_repo.transaction() as txn:
            txn.replace("/sw/a", open_source(src)[0])
            return txn.commit()

    start = wiretap.mark()
    publish()
    assert wiretap.operations(start)["PutObject data"] >= 300  # the wire sees every PUT
    start = wiretap.mark()
    publish()
    seen = wiretap.operations(start)
    per_file = seen["HeadObject data"] + seen["PutObject data"]
    # new catalogs (the root's and the nested ones of d0..d9) and the history; never per file
    assert per_file <= 15, f"an unchanged republish asked {dict(seen)}"
    assert published_files(s3_repo, "/sw/a") == files


def test_a_new_objects_put_is_not_preceded_by_head(tapped, wiretap, tmp_path):
    """Small new objects are put without asking: a put of an existing one is harmless."""
    s3_repo, _ = tapped
    start = wiretap.mark()
    src = write_tree(tmp_path / "src", many_files("new", 50))
    with s3_repo.transaction() as txn:
        txn.replace("/sw/b", open_source(src)[0])
        result = txn.commit()
    assert result.objects_written >= 50
    seen = wiretap.operations(start)
    assert seen["PutObject data"] >= 50 and seen["HeadObject data"] == 0, dict(seen)


def test_gc_deletes_in_batches(tapped, wiretap, tmp_path):
    s3_repo, s3_storage = tapped
    for round_ in range(3):  # revision 1 is garbage: 3 is current, 2 trunk-previous
        src = write_tree(tmp_path / f"src-{uuid.uuid4().hex[:6]}", many_files(f"r{round_}", 120))
        with s3_repo.transaction() as txn:
            txn.replace("/sw/a", open_source(src)[0])
            txn.commit()
    start = wiretap.mark()
    plan = s3_repo.gc(keep_revisions=1)
    seen = wiretap.operations(start)
    assert len(plan.garbage) >= 120
    assert seen["DeleteObject data"] == 0, dict(seen)  # the lease is one DeleteObject
    assert 1 <= seen["DeleteObjects"] <= 2, dict(seen)
    assert not set(plan.garbage) & set(s3_storage.list("data/"))
    assert s3_repo.verify().ok


def test_delete_many_is_idempotent_and_ignores_missing_keys(s3_storage):
    names = [hashlib.sha1(uuid.uuid4().bytes).hexdigest() for _ in range(5)]
    keys = [f"data/{name[:2]}/{name[2:]}" for name in names]
    for key in keys:
        s3_storage.put(key, b"x")
    s3_storage.delete_many([*keys, "data/ff/" + "0" * 38])
    assert not any(s3_storage.exists(key) for key in keys)
    s3_storage.delete_many(keys)  # again: nothing there, no error
