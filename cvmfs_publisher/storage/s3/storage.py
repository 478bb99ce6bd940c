"""``S3Storage``: one repository in a bucket, laid out as ``cvmfs_server``'s S3 uploader writes it.

Every key is ``[<prefix>/]<fqrn>/<repository key>`` (spec 1.4), so the bucket's public HTTP
URL plus ``[<prefix>/]<fqrn>`` is a valid ``CVMFS_SERVER_URL`` and Stratum 1 source. Objects
get the same headers as upstream (``.cvmfs*``: ``application/x-cvmfs``, ``max-age=61``; data:
``application/octet-stream``, ``max-age=259200``) and, by default, the ``public-read`` canned
ACL; with ``acl: none`` a bucket policy must grant anonymous reads instead. Large objects go
up as multipart uploads (boto3's transfer manager); the publish lock is a lease
(``lease.py``); failures become one-line messages (``boto_errors.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError

from ...errors import ObjectNotFound, StorageError, UsageError
from ..base import MANIFEST, REFLOG, Capabilities, LockInfo, ObjectStream, Storage
from ..key_names import check_key, check_put_key
from . import lease as leases
from .boto_errors import Forbidden, PreconditionFailed, S3Calls
from .client import Connection, connect
from .direct_put import Declined, DirectPut
from .probe import probe_conditional_writes
from .settings import S3Settings

DOT_CVMFS_HEADERS = {"ContentType": "application/x-cvmfs", "CacheControl": "max-age=61"}
OBJECT_HEADERS = {"ContentType": "application/octet-stream", "CacheControl": "max-age=259200"}
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes

log = logging.getLogger(__name__)


def headers_for(key: str) -> dict[str, str]:
    """Upstream's S3 headers (``s3fanout.cc``): short expiry for ``.cvmfs*`` files."""
    return dict(DOT_CVMFS_HEADERS if key.startswith(".cvmfs") else OBJECT_HEADERS)


class S3Storage(Storage):
    """One repository below ``[<prefix>/]<fqrn>/`` in a bucket. Thread-safe.

    ``list`` hides the lease object and any key that is not a repository key.
    """

    def __init__(self, settings: S3Settings, fqrn: str, *, read_only: bool = False,
                 client: Any = None) -> None:
        self.settings = settings
        self.fqrn = fqrn
        self.read_only = read_only
        self.base = settings.repository_prefix(fqrn) + "/"
        self.connection = Connection(client, None, None) if client is not None else connect(
            settings)
        self.client = self.connection.client
        self.transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=settings.multipart_chunksize,
            max_concurrency=min(4, settings.parallelism),
        )
        self.call = S3Calls(settings, self.location)
        self._lease: leases.Lease | None = None
        self._direct: DirectPut | None = None  # None: boto3 does every PUT
        self._direct_tried = False
        self._direct_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: S3Settings, fqrn: str, *, read_only: bool = False
                      ) -> S3Storage:
        return cls(settings, fqrn, read_only=read_only)

    @property
    def location(self) -> str:
        return f"s3://{self.settings.bucket}/{self.base.rstrip('/')}"

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    def public_url(self) -> str | None:
        return self.settings.repository_url(self.fqrn)

    def object_key(self, key: str) -> str:
        """The bucket key of a repository key, as ``cvmfs_server`` names it."""
        return self.base + check_key(key)

    def capabilities(self) -> Capabilities:
        return Capabilities(parallelism=self.settings.parallelism,
                            conditional_writes=self.settings.conditional_writes,
                            lock="none" if self.read_only else "lease", listable=True)

    def check_locking(self) -> str | None:
        """Probe the server: the lease is only as good as its conditional writes."""
        if self.read_only:
            return None
        if not self.settings.conditional_writes:
            return ("conditional_writes is off: the publish lease is emulated with "
                    "HEAD-then-PUT checks, which cannot keep two publishers that start at the "
                    "same moment apart; run a single publisher")
        support = probe_conditional_writes(self)
        return None if support.ok else support.describe()

    # -- reading ----------------------------------------------------------------------------------

    def fetch(self, key: str) -> tuple[bytes, dict[str, Any]]:
        """The object's bytes and the GetObject answer (ETag, dates) they came with."""
        response = self.call("GET", key, self.client.get_object, Key=self.object_key(key))
        return self.call("GET", key, response["Body"].read), response

    def get(self, key: str) -> bytes:
        return self.fetch(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        body, response = self.fetch(key)
        return body, str(response.get("ETag", ""))

    def open(self, key: str) -> ObjectStream:
        """GetObject's streaming body; ``size`` from its ``Content-Length``."""
        response = self.call("GET", key, self.client.get_object, Key=self.object_key(key))
        length = response.get("ContentLength")
        return ObjectStream(_Body(self, key, response["Body"]),
                            None if length is None else int(length), f"{key} in {self.location}")

    def exists(self, key: str) -> bool:
        try:
            self.call("HEAD", key, self.client.head_object, Key=self.object_key(key))
        except ObjectNotFound:
            return False
        except Forbidden:
            return self._exists_by_get(key)
        return True

    def _exists_by_get(self, key: str) -> bool:
        """HEAD answers carry no error code: ask with a one-byte GET to name the reason."""
        try:
            self.call("GET", key, self.client.get_object, Key=self.object_key(key),
                      Range="bytes=0-0")
        except ObjectNotFound:
            return False
        except StorageError as exc:
            if "InvalidRange" in str(exc):  # an empty object
                return True
            raise
        return True

    def etag(self, key: str) -> str | None:
        try:
            response = self.call("HEAD", key, self.client.head_object, Key=self.object_key(key))
        except ObjectNotFound:
            return None
        return str(response.get("ETag", ""))

    def list(self, prefix: str = "") -> Iterator[str]:
        for key, _size in self.list_with_sizes(prefix):
            yield key

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Keys and sizes from the listing itself (garbage collection needs no HEADs)."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.base + prefix)
        iterator = iter(pages)
        while True:
            page = self.call("LIST", prefix or "/", next, iterator, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item["Key"][len(self.base):]
                if key != leases.LEASE and _valid_key(key):
                    yield key, int(item.get("Size", -1))

    # -- writing ----------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.check_writable()
        check_put_key(key)
        if self._lease is not None and key == REFLOG:
            self._lease.check_manifest()  # never clobber the reflog of another publisher
        self.upload(key, data, headers_for(key), acl=True)

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        """A conditional PUT: ``If-Match`` on the ETag of ``previous``, ``If-None-Match: *``
        for a first manifest. Under the lease, ``previous`` must be the manifest recorded
        when the lease was taken; without it, the one stored now."""
        self.check_writable()
        if self._lease is not None:
            self._lease.put_manifest(data, previous)
            return
        try:
            current: tuple[bytes, str] | None = self.get_with_etag(MANIFEST)
        except ObjectNotFound:
            current = None
        self.switch_manifest(data, previous, current)

    def switch_manifest(self, data: bytes, previous: bytes | None,
                        current: tuple[bytes, str] | None) -> tuple[bytes, str]:
        """Replace ``current`` (bytes, ETag) by ``data`` if it is ``previous``; the new pair."""
        if (current[0] if current is not None else None) != previous:
            raise StorageError(self.manifest_changed())
        try:
            etag = self.conditional_put(MANIFEST, data, headers_for(MANIFEST), acl=True,
                                        if_match=current[1] if current else None,
                                        if_none_match=current is None)
        except PreconditionFailed:
            raise StorageError(self.manifest_changed()) from None
        return data, etag or self.etag(MANIFEST) or ""

    def manifest_changed(self) -> str:
        return (f"{self.location}: the manifest changed since this publish started (did "
                "another publisher take the lease over?); nothing was published")

    def upload(self, key: str, data: bytes, headers: dict[str, str], *, acl: bool,
               conditions: dict[str, str] | None = None) -> str:
        """Upload and return the new ETag; multipart above the threshold."""
        extra = dict(headers)
        if acl and self.settings.acl:
            extra["ACL"] = self.settings.acl
        full = self.object_key(key)
        if len(data) >= self.settings.multipart_threshold and not conditions:
            self.call("PUT", key, self.client.upload_fileobj, io.BytesIO(data),
                      self.bucket, full, ExtraArgs=extra, Config=self.transfer)
            return ""
        direct = self._direct_put() if not conditions else None
        declined = None
        if direct is not None:
            try:
                return self.call("PUT", key, direct.put, full, data, extra)
            except Declined as exc:
                declined = exc
        response = self.call("PUT", key, self.client.put_object, Key=full, Body=data,
                             **extra, **(conditions or {}))
        if declined is not None:  # boto3 could: this server wants what only boto3 does
            log.info("%s answered a direct PUT with %s and accepted boto3's: every PUT goes "
                     "through boto3 from now on", self.call.where, declined)
            self._direct = None
        return str(response.get("ETag", ""))

    def _direct_put(self) -> DirectPut | None:
        """The lean PUT path (``direct_put``), set up on first use: it needs a presigned
        URL, hence credentials, which a read-only storage may never have."""
        with self._direct_lock:
            if not self._direct_tried:
                self._direct_tried = True
                connection = self.connection
                try:
                    self._direct = DirectPut.for_storage(
                        connection.client, connection.credentials, self.settings,
                        connection.ca_bundle)
                except (BotoCoreError, ValueError) as exc:
                    log.debug("no direct PUTs to %s: %s", self.call.where, exc)
            return self._direct

    def delete(self, key: str) -> None:
        self.check_writable()
        if self._lease is not None:
            self._lease.check()  # a sweep must stop once another publisher may be uploading
        self.call("DELETE", key, self.client.delete_object, Key=self.object_key(key))

    def delete_many(self, keys: list[str]) -> None:
        """``DeleteObjects``: up to 1,000 keys a request (quiet: only failures answered)."""
        self.check_writable()
        failed: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            if self._lease is not None:
                self._lease.check()
            objects = [{"Key": self.object_key(key)} for key in batch]
            response = self.call("DELETE", f"{len(batch)} keys", self.client.delete_objects,
                                 Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            failed += [f"{str(e.get('Key', ''))[len(self.base):]} ({e.get('Code', '?')})"
                       for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if failed:
            raise StorageError(f"{self.location}: {len(failed)} of {len(keys)} deletions "
                               f"failed, the first: {failed[0]}")

    def flush(self) -> None:
        """Nothing to do: S3 answers a PUT only once the object is durable."""

    def check_writable(self) -> None:
        if self.read_only:
            self._refuse_write()

    # -- conditional requests ---------------------------------------------------------------------

    def conditional_put(self, key: str, data: bytes, headers: dict[str, str], *, acl: bool,
                        if_match: str | None = None, if_none_match: bool = False) -> str:
        """PUT only if the object is absent / unchanged; emulated racily if the server can't."""
        if not self.settings.conditional_writes:
            self._emulate_condition(key, if_match, if_none_match)
            return self.upload(key, data, headers, acl=acl)
        conditions = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match:
            conditions["IfMatch"] = if_match
        return self.upload(key, data, headers, acl=acl, conditions=conditions)

    def conditional_delete(self, key: str, if_match: str | None) -> None:
        if not self.settings.conditional_writes or not if_match:
            self._emulate_condition(key, if_match, False)
            self.call("DELETE", key, self.client.delete_object, Key=self.object_key(key))
            return
        self.call("DELETE", key, self.client.delete_object, Key=self.object_key(key),
                  IfMatch=if_match)

    def _emulate_condition(self, key: str, if_match: str | None, if_none_match: bool) -> None:
        """Check-then-act for servers without conditional writes: not atomic (see docs)."""
        if not if_match and not if_none_match:
            return
        etag = self.etag(key)
        if (if_none_match and etag is not None) or (if_match and etag != if_match):
            raise PreconditionFailed(f"{self.location}: {key} changed meanwhile")

    # -- the lease lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        """Hold the lease object; machines sharing a bucket share no kernel to flock with."""
        self.check_writable()
        if self._lease is not None:
            raise StorageError(f"{self.location}: this process already holds the publish lease")
        lease = leases.acquire(self, owner, wait)
        self._lease = lease
        try:
            lease.record_manifest()
            lease.start()
            yield
        finally:
            self._lease = None
            lease.release()

    def read_lease(self) -> leases.LeaseState | None:
        return leases.read_lease(self)

    def lock_holder(self) -> LockInfo | None:
        state = self.read_lease()
        return state.info if state is not None else None

    def break_lock(self) -> LockInfo | None:
        self.check_writable()
        return leases.break_lease(self)


class _Body:
    """GetObject's streaming body, failing with ``StorageError`` like every other call."""

    def __init__(self, storage: S3Storage, key: str, body: Any) -> None:
        self.storage = storage
        self.key = key
        self.body = body

    def read(self, n: int = -1) -> bytes:
        return self.storage.call("GET", self.key, self.body.read, None if n < 0 else n)

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0, /) -> int:
        raise io.UnsupportedOperation("an S3 response body cannot seek")

    def close(self) -> None:
        self.body.close()


def _valid_key(key: str) -> bool:
    try:
        check_key(key)
    except UsageError:
        return False
    return True
