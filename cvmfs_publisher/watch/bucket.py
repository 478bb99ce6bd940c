"""An S3 bucket (or a prefix of one) as a drop area: polled, never written to.

Users drop with rclone, a web console or any S3 client. A listing gives each object's
size, ETag and time; an object appears only once its upload completed (multipart uploads
in progress are not listed), and a key counts as settled once it kept its ETag and size
for the quiet period, like any polled area. Content is fetched with ``If-Match`` on the
ETag that was judged settled, so a later overwrite fails the sync instead of slipping in.
Keys that break the name rules (``..``, empty components, over-long names) are reported
in the area's status and never published. Folder markers (``docs/``, zero-byte keys that web
consoles create) are directories.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..cvmfs.names import check_name
from ..entries import Entry, Kind, OpenerContent
from ..errors import InvalidPath, SourceError
from .snapshot import FileState, Snapshot


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, ``prefix/`` or "")."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidPath(f"{url!r} names no bucket")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class BucketSource:
    polling = True

    def __init__(self, url: str, settings: Mapping[str, Any] | None = None,
                 client: Any = None) -> None:
        self.name = url
        self.bucket, self.prefix = parse_bucket_url(url)
        self.client = client or _client(settings or {})

    def scan(self) -> Snapshot:
        snapshot = Snapshot()
        newest = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    newest = max(newest, self._add(snapshot, item))
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"cannot list {self.name}: {exc}") from None
        snapshot.paths[""] = FileState(Kind.DIR, 0, newest, 0o755)
        return snapshot

    def _add(self, snapshot: Snapshot, item: Mapping[str, Any]) -> int:
        rel = str(item["Key"])[len(self.prefix):]
        mtime = int(item["LastModified"].timestamp()) * 1_000_000_000
        if not rel.rstrip("/"):
            return 0  # the prefix's own folder marker (web consoles make them)
        parts = rel.rstrip("/").split("/")
        try:
            for part in parts:
                check_name(part, "a bucket key component")
        except InvalidPath as exc:
            snapshot.problems.append(f"key {item['Key']!r} not published: {exc}")
            return 0
        folder = rel.endswith("/")  # "docs/empty/": an empty directory made in a console
        for depth in range(1, len(parts) + 1 if folder else len(parts)):
            parent = "/".join(parts[:depth])
            old = snapshot.paths.get(parent)
            if old is not None and old.kind is not Kind.DIR:
                snapshot.problems.append(f"key {item['Key']!r} lies below file {parent}")
                return 0
            newer = max(mtime, old.mtime_ns if old else 0)  # as new as its newest object
            snapshot.paths[parent] = FileState(Kind.DIR, 0, newer, 0o755)
        if not folder:
            snapshot.paths[rel] = FileState(Kind.FILE, int(item["Size"]), mtime, 0o644,
                                            etag=str(item["ETag"]).strip('"'))
        return mtime

    def content(self) -> Callable[[str, FileState], Entry]:
        def entry(rel: str, state: FileState) -> Entry:
            def opener():  # type: ignore[no-untyped-def]
                return self._get(rel, state.etag)["Body"]

            return Entry(rel, Kind.FILE, state.mode, os.geteuid(), os.getegid(),
                         state.mtime_ns // 1_000_000_000, state.size, OpenerContent(opener))

        return entry

    def _get(self, rel: str, etag: str) -> Mapping[str, Any]:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel,
                                          IfMatch=f'"{etag}"')
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"{self.name}/{rel} changed or vanished while publishing "
                              f"({exc}); it is retried") from None

    def sha256(self, rel: str) -> str | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel)["Body"]
        except (BotoCoreError, ClientError):
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


def _client(settings: Mapping[str, Any]) -> Any:
    """Credentials from the environment, a profile or a credentials file, never arguments."""
    session = boto3.session.Session(profile_name=settings.get("profile"))
    return session.client(
        "s3", endpoint_url=settings.get("endpoint"), region_name=settings.get("region"),
        config=BotoConfig(s3={"addressing_style": settings.get("addressing", "path")},
                          retries={"mode": "standard", "max_attempts": 5}))
