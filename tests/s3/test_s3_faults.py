"""The S3 server goes away in the middle of a publish.

The publish must fail with a one-line message naming the endpoint and bucket; after a
restart the previous revision must still verify, and running the publish again must
produce the new revision, which verifies too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from cvmfs_publisher.entries import Entry
from cvmfs_publisher.errors import StorageError
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.s3 import S3Storage
from cvmfs_publisher.storage.wrappers import StorageWrapper

from .s3kit import BUCKET, FQRN, published_files, sample_files, write_tree


class StopBeforeManifest(StorageWrapper):
    """Stops the server at the durability barrier: reflog written, manifest not yet."""

    server = None

    def flush(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        super().flush()


def stop_after(entries: Iterator[Entry], count: int, stop) -> Iterator[Entry]:
    """Pass ``count`` entries through, stop the server, then go on with the rest."""
    for n, entry in enumerate(entries):
        if n == count:
            stop()
        yield entry


@pytest.mark.parametrize("moment", ["objects", "manifest"])
def test_server_stops_during_publish(seaweed, s3_settings, new_repo, publish, tmp_path, moment):
    storage = StopBeforeManifest(S3Storage(s3_settings, FQRN))
    repo = new_repo(storage)
    repo.create()
    first = sample_files("first")
    publish(repo, "/sw/a", first, tag="v1")
    second = sample_files("second", count=30)
    src = write_tree(tmp_path / "second", second)

    entries, _ = open_source(src)
    if moment == "objects":
        entries = stop_after(entries, 12, seaweed.stop)
    else:
        storage.server = seaweed
    with pytest.raises(StorageError) as failure, repo.transaction() as txn:
        txn.replace("/sw/b", entries)
        txn.commit(tag="v2")
    message = str(failure.value)
    assert "\n" not in message
    assert f"S3 endpoint {seaweed.endpoint} (bucket {BUCKET})" in message, message

    # While it is down, a new publish says exactly what is wrong.
    expected = (f"cannot reach S3 endpoint {seaweed.endpoint} (bucket {BUCKET}): "
                "connection refused")
    with pytest.raises(StorageError, match=f"^{re.escape(expected)}$"), repo.transaction():
        pass

    seaweed.start()
    assert repo.head().manifest.revision == 1
    assert published_files(repo, "/sw/a") == first
    report = repo.verify()
    assert report.ok, report.problems

    # The lease of the failed run could not be removed while the server was down; this
    # process knows it was its own and reclaims it without waiting for it to expire.
    entries, _ = open_source(src)
    with repo.transaction(wait=False) as txn:
        txn.replace("/sw/b", entries)
        result = txn.commit(tag="v2")
    assert result.revision == 2
    assert published_files(repo, "/sw/b") == second
    assert published_files(repo, "/sw/a") == first
    report = repo.verify()
    assert report.ok, report.problems
    assert storage.lock_holder() is None
