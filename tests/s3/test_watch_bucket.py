"""A bucket prefix as a drop area (``watch s3://...``), against the real SeaweedFS server.

Users drop with any S3 client: the watcher polls the listing, publishes once it is quiet,
and the repository path follows uploads, overwrites and deletes. Keys that would escape
(``..``, empty components) are reported and never published; a multipart upload counts
only once it is completed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from publishers import make_native
from watchkit import (
    FAST,
    GRANT,
    NAME,
    Tree,
    WatcherThread,
    published_tree,
    sha,
    status_after_publish,
    status_of,
    wait_for,
    wait_published,
)

from cvmfs_publisher.watch.area import AreaSync, Grant
from cvmfs_publisher.watch.bucket import BucketSource

from .s3kit import BUCKET, SeaweedServer


@pytest.fixture
def bucket_area(seaweed: SeaweedServer, s3_env: None, tmp_path: Path, isolated_home: Path,
                monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """(client, prefix, url, publisher): an empty prefix of the shared bucket and a local
    repository; the S3 credentials come from the environment (``s3_env``)."""
    if seaweed.process is None or seaweed.process.poll() is not None:
        seaweed.start()  # a fault test may have left it stopped
    monkeypatch.setenv("XDG_STATE_HOME", str(isolated_home / "state"))
    client = boto3.client("s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
                          config=BotoConfig(s3={"addressing_style": "path"}))
    prefix = f"drop-{uuid.uuid4().hex[:10]}"
    return client, prefix, f"s3://{BUCKET}/{prefix}", make_native(tmp_path, NAME)


def expected_tree(objects: dict[str, bytes], folders: tuple[str, ...] = ()) -> Tree:
    """What the repository path must hold for these objects (rel key -> content)."""
    tree: Tree = {"": ("dir", 0o755, 0, "")}
    for rel in [*objects, *(f"{f}/" for f in folders)]:
        parts = rel.rstrip("/").split("/")
        for depth in range(1, len(parts) if not rel.endswith("/") else len(parts) + 1):
            tree["/".join(parts[:depth])] = ("dir", 0o755, 0, "")
    for rel, data in objects.items():
        tree[rel] = ("file", 0o644, len(data), sha(data))
    return tree


class WithKeys:
    """The watcher's real S3 client, with ``extra`` keys added to every listing.

    For keys AWS S3 stores but SeaweedFS refuses at PUT (``..``, ``.``; it also folds
    ``//``): the listing is what an AWS bucket would return, the rest is the real server.
    """

    def __init__(self, client: Any, extra: list[str]) -> None:
        self.client, self.extra = client, extra

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_paginator(self, operation: str) -> Any:
        real, extra = self.client.get_paginator(operation), self.extra

        class Paginator:
            def paginate(self, **kwargs: Any) -> Iterator[dict]:
                yield from real.paginate(**kwargs)
                now = dt.datetime.now(dt.UTC)
                yield {"Contents": [{"Key": key, "Size": 7, "ETag": '"0123abcd"',
                                     "LastModified": now} for key in list(extra)]}

        return Paginator()


def test_bucket_area_follows_the_bucket(bucket_area, cli) -> None:  # type: ignore[no-untyped-def]
    client, prefix, url, publisher = bucket_area
    endpoint = client.meta.endpoint_url
    objects: dict[str, bytes] = {}
    folders: tuple[str, ...] = ()

    def put(rel: str, data: bytes) -> None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rel}", Body=data)
        objects[rel] = data

    def follows(what: str) -> None:
        wait_published(publisher, expected_tree(objects, folders), what)
        result = cli("verify", "--repo", NAME)
        assert result.code == 0, result.out + result.err

    client.put_object(Bucket=BUCKET, Key=f"{prefix}/", Body=b"")  # a console's marker
    extra: list[str] = []
    source = BucketSource(url, {"endpoint": endpoint, "region": "us-east-1"})
    source.client = WithKeys(source.client, extra)
    area = AreaSync(source, Grant(NAME, GRANT), publisher)
    with WatcherThread([area], FAST):
        follows("the empty prefix")

        put("a.txt", b"first\n")
        put("docs/guide.md", b"# guide\n")
        put("docs/img/logo.png", os.urandom(70_000))
        follows("uploads")

        put("a.txt", b"other\n")  # same size, new content: a new ETag
        follows("an overwrite")

        client.delete_object(Bucket=BUCKET, Key=f"{prefix}/docs/img/logo.png")
        del objects["docs/img/logo.png"]
        follows("a delete (and its now empty directory)")

        # keys that would escape: refused at PUT by SeaweedFS, accepted by AWS S3, so they
        # join the real listing through the client (see ``WithKeys``)
        hostile = ["../escape.txt", "x/../../escape.txt", "a//b.txt", "./dot.txt", ".."]
        extra.extend(f"{prefix}/{key}" for key in hostile)
        put("ok.txt", b"ok\n")
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/docs/empty/", Body=b"")
        folders = ("docs/empty",)
        follows("valid keys next to keys that would escape")
        problems = status_after_publish().problems
        for key in hostile:
            assert any(repr(f"{prefix}/{key}") in p for p in problems), (key, problems)
        assert not any(repr(f"{prefix}/") in p for p in problems), problems
        everything = published_tree(publisher, "") or {}
        assert not [p for p in everything if "escape" in p or p.endswith("dot.txt")]
        extra.clear()

        # a multipart upload in progress is not listed, so not published, until completed
        key = f"{prefix}/big.bin"
        parts = [os.urandom(5 << 20), os.urandom(1 << 20)]
        upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        etags = [client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n,
                                    Body=data)["ETag"] for n, data in enumerate(parts, 1)]
        put("marker.txt", b"uploaded after the parts\n")
        follows("the marker, not the unfinished upload")
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n}
                                       for n, e in enumerate(etags, 1)]})
        objects["big.bin"] = b"".join(parts)
        follows("the completed multipart upload")
    status = json.loads(cli("watch-status", "--repo", NAME, "--json").out)
    assert [s["area"] for s in status] == [url] and status[0]["last_error"] == ""


def test_bucket_area_from_the_command_line(bucket_area, cli) -> None:  # type: ignore[no-untyped-def]
    client, prefix, url, publisher = bucket_area
    data = {"bin/tool": b"#!/bin/sh\n", "share/readme": b"read me\n"}
    for rel, content in data.items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rel}", Body=content)
    result = cli("watch", url, "--endpoint", client.meta.endpoint_url, "--region", "us-east-1",
                 "--repo", NAME, "--path", "/users/bob", "--once")
    assert result.code == 0, result.err
    assert "revision 1" in result.out
    assert published_tree(publisher, "/users/bob") == expected_tree(data)
    assert cli("verify", "--repo", NAME).code == 0
    wait_for(lambda: status_of(NAME, "/users/bob"), "the status of the bucket area")
