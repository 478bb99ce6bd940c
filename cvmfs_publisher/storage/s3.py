"""A repository in an S3 bucket, laid out exactly as ``cvmfs_server``'s S3 uploader writes it.

Every key is ``[<prefix>/]<fqrn>/<repository key>`` (spec 1.4), so the bucket's public HTTP
URL plus ``[<prefix>/]<fqrn>`` is a valid ``CVMFS_SERVER_URL`` and Stratum 1 source. Objects
get the same headers as upstream (``.cvmfs*``: ``application/x-cvmfs``, ``max-age=61``; data:
``application/octet-stream``, ``max-age=259200``) and, by default, the ``public-read`` canned
ACL; with ``acl: none`` a bucket policy must grant anonymous reads instead.

What botocore already does is not redone here: request signing, retries with backoff on
throttling and 5xx (``Config(retries=...)``), connection pooling, multipart uploads (boto3's
transfer manager). Credentials come from the environment, an AWS profile or a credentials
file named in the configuration, never from command-line arguments.

The publish lock is a lease object, ``.cvmfs_publish_lease``, created with a conditional
write (``If-None-Match: *``) and renewed by a background thread with ``If-Match`` on its
ETag. A lease that its holder stopped renewing (its age by the server's own clock exceeds
its time to live) may be taken over with ``If-Match``; ``break_lock`` removes any lease.
While a lease is held, the manifest is only replaced if it is still the one that was there
when the lease was taken (``If-Match``), so even a publisher that lost its lease cannot
overwrite another one's revision. ``probe_conditional_writes`` tells whether a server
honours those headers at all.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import logging
import os
import random
import re
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.session
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from ..errors import ConfigError, ObjectNotFound, RepositoryBusy, StorageError, UsageError
from .base import MANIFEST, REFLOG, LockInfo, Storage
from .key_names import check_key

log = logging.getLogger(__name__)

LEASE = ".cvmfs_publish_lease"
PROBE_PREFIX = ".cvmfs_probe_"
MiB = 1 << 20

DOT_CVMFS_HEADERS = {"ContentType": "application/x-cvmfs", "CacheControl": "max-age=61"}
OBJECT_HEADERS = {"ContentType": "application/octet-stream", "CacheControl": "max-age=259200"}

ADDRESSING_STYLES = ("path", "virtual", "auto")
RETRY_MODES = ("standard", "adaptive", "legacy")
CHECKSUM_MODES = ("when_supported", "when_required")
SIGNATURE_VERSIONS = ("s3v4", "s3")
NO_ACL = ("", "none", "null")
_SECRET_KEYS = {"access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "session_token", "secret", "password", "token"}
_CREDENTIAL_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
                     "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidSecurity",
                     "TokenRefreshRequired"}
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_NOT_IMPLEMENTED_CODES = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")

# Tokens of leases this process created but failed to remove (server unreachable at the
# end of a publish). They are ours, so the next publish in this process may reclaim them.
_ABANDONED: set[str] = set()

T = TypeVar("T")


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach the bucket; the ``s3:`` mapping of the YAML configuration.

    ``public_url`` is the URL under which anonymous clients read the bucket's root (for
    example a CDN); by default it is derived from the endpoint and addressing style.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None
    addressing_style: str | None = None  # None: "path" with an endpoint, "virtual" on AWS
    profile: str | None = None
    credentials_file: Path | None = None
    acl: str | None = "public-read"  # None: rely on a bucket policy for anonymous reads
    public_url: str | None = None
    parallelism: int = 16
    retry_mode: str = "standard"
    max_attempts: int = 5  # in total, the first try included (AWS config semantics)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    multipart_threshold: int = 32 * MiB
    multipart_chunksize: int = 16 * MiB
    lease_seconds: int = 60
    conditional_writes: bool = True
    signature_version: str | None = None  # None: botocore's default (SigV4)
    checksums: str = "when_supported"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", _clean_prefix(self.prefix))
        if not _BUCKET.match(self.bucket or ""):
            raise ConfigError(f"invalid S3 bucket name {self.bucket!r}")
        if self.acl is not None and self.acl.strip().lower() in NO_ACL:
            object.__setattr__(self, "acl", None)
        if self.endpoint_url is not None:
            object.__setattr__(self, "endpoint_url", _clean_url(self.endpoint_url, "endpoint"))
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _clean_url(self.public_url, "public_url"))
        if self.credentials_file is not None:
            path = Path(self.credentials_file).expanduser()
            object.__setattr__(self, "credentials_file", path)
        _one_of("addressing_style", self.addressing_style, ADDRESSING_STYLES, optional=True)
        _one_of("retry_mode", self.retry_mode, RETRY_MODES)
        _one_of("checksums", self.checksums, CHECKSUM_MODES)
        _one_of("signature_version", self.signature_version, SIGNATURE_VERSIONS, optional=True)
        self._check_numbers()

    def _check_numbers(self) -> None:
        minimum = {"parallelism": 1, "max_attempts": 1, "lease_seconds": 3,
                   "multipart_chunksize": 5 * MiB, "multipart_threshold": 5 * MiB}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise ConfigError(f"s3 setting {name} must be at least {low}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("s3 timeouts must be positive")

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> S3Settings:
        """The YAML ``s3:`` mapping; ``url: s3://bucket/prefix`` may replace bucket/prefix.

        Secrets are refused here: a configuration file is copied, shared and committed far
        more often than a credentials file.
        """
        values = dict(mapping)
        refused = sorted(k for k in values if k.lower() in _SECRET_KEYS)
        if refused:
            raise ConfigError(
                f"S3 secrets are not accepted in the configuration ({', '.join(refused)}): "
                "use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an AWS profile (profile:) or a "
                "credentials file (credentials_file:)")
        if "endpoint" in values:
            values.setdefault("endpoint_url", values.pop("endpoint"))
        url = values.pop("url", None)
        if url is not None:
            bucket, prefix = parse_s3_url(str(url))
            values.setdefault("bucket", bucket)
            values.setdefault("prefix", prefix)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown s3 setting(s): {', '.join(unknown)} "
                              f"(known: endpoint, url, {', '.join(sorted(known))})")
        if "bucket" not in values:
            raise ConfigError("the s3 settings need a bucket (or url: s3://bucket/prefix)")
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> S3Settings:
        """``s3://bucket[/prefix]`` with every other setting at its default or ``overrides``."""
        bucket, prefix = parse_s3_url(url)
        return cls.from_mapping({**overrides, "bucket": bucket, "prefix": prefix})

    @classmethod
    def from_url_and_mapping(cls, url: str, mapping: Mapping[str, Any] | None) -> S3Settings:
        """The storage URL of a configured repository plus its ``s3:`` mapping."""
        bucket, prefix = parse_s3_url(url)
        values = dict(mapping or {})
        for name, value in (("bucket", bucket), ("prefix", prefix)):
            given = values.get(name)
            if given is not None and _norm(name, given) != value:
                raise ConfigError(f"s3 setting {name}={given!r} contradicts the storage URL {url}")
        values.pop("url", None)
        values.update(bucket=bucket, prefix=prefix)
        return cls.from_mapping(values)

    # -- derived values -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint as messages name it (AWS's regional one when none is configured)."""
        return self.endpoint_url or f"https://s3.{self.region or 'us-east-1'}.amazonaws.com"

    @property
    def style(self) -> str:
        return self.addressing_style or ("path" if self.endpoint_url else "virtual")

    def bucket_url(self) -> str:
        """Public HTTP URL of the bucket's root (``cvmfs_server mkfs -w``)."""
        if self.public_url:
            return self.public_url
        if not self.endpoint_url:
            return f"https://{self.bucket}.s3.{self.region or 'us-east-1'}.amazonaws.com"
        if self.style == "virtual":
            parts = urlsplit(self.endpoint_url)
            return f"{parts.scheme}://{self.bucket}.{parts.netloc}{parts.path}"
        return f"{self.endpoint_url}/{self.bucket}"

    def repository_prefix(self, fqrn: str) -> str:
        """``<prefix>/<fqrn>``: upstream's ``repo_alias``, the key prefix of every file."""
        return f"{self.prefix}/{fqrn}" if self.prefix else fqrn

    def repository_url(self, fqrn: str) -> str:
        """What clients put in ``CVMFS_SERVER_URL`` and Stratum 1s replicate from."""
        return f"{self.bucket_url()}/{self.repository_prefix(fqrn)}"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"not an S3 storage URL: {url!r} (expected s3://BUCKET[/PREFIX])")
    if not _BUCKET.match(parts.netloc):
        raise UsageError(f"invalid S3 bucket name {parts.netloc!r} in {url!r}")
    try:
        return parts.netloc, _clean_prefix(parts.path)
    except ConfigError as exc:
        raise UsageError(f"{exc} in {url!r}") from None


def _clean_prefix(prefix: str | None) -> str:
    text = (prefix or "").strip("/")
    if not text:
        return ""
    segments = text.split("/")
    for segment in segments:
        if not _SEGMENT.match(segment) or segment in (".", ".."):
            raise ConfigError(f"invalid S3 key prefix {prefix!r}: use letters, digits, "
                              "'.', '-', '_' separated by '/'")
    return "/".join(segments)


def _clean_url(url: str, what: str) -> str:
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"s3 {what} must be an http(s) URL, not {url!r}")
    return str(url).rstrip("/")


def _one_of(name: str, value: str | None, allowed: tuple[str, ...], optional: bool = False
            ) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise ConfigError(f"s3 setting {name} must be one of {', '.join(allowed)}, not {value!r}")


def _norm(name: str, value: Any) -> str:
    return _clean_prefix(str(value)) if name == "prefix" else str(value)


_INTS = {"parallelism", "max_attempts", "multipart_threshold", "multipart_chunksize",
         "lease_seconds"}
_FLOATS = {"connect_timeout", "read_timeout"}


def _coerce(name: str, value: Any) -> Any:
    """YAML and environment values to the field's type, with the setting named on error."""
    try:
        if name in _INTS:
            return int(value)
        if name in _FLOATS:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"s3 setting {name} must be a number, not {value!r}") from None
    if name == "conditional_writes":
        return _boolean(name, value)
    if name == "credentials_file":
        return None if value is None else Path(str(value))
    return None if value is None else str(value)


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"s3 setting {name} must be true or false, not {value!r}")


# -- credentials and client -------------------------------------------------------------------


def _read_cvmfs_s3_conf(path: Path) -> dict[str, str] | None:
    """The access and secret key of an upstream ``s3.conf``, or None if it is not one."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip().strip("'\"")
    if "CVMFS_S3_ACCESS_KEY" not in values:
        return None
    if "CVMFS_S3_SECRET_KEY" not in values:
        raise ConfigError(f"{path} has CVMFS_S3_ACCESS_KEY but no CVMFS_S3_SECRET_KEY")
    return {"aws_access_key_id": values["CVMFS_S3_ACCESS_KEY"],
            "aws_secret_access_key": values["CVMFS_S3_SECRET_KEY"]}


def _file_credentials(settings: S3Settings) -> tuple[str | None, dict[str, str]]:
    """(AWS shared credentials file, explicit keys from an upstream ``s3.conf``)."""
    path = settings.credentials_file
    if path is None:
        return None, {}
    try:
        mode = path.stat().st_mode
        explicit = _read_cvmfs_s3_conf(path)
    except OSError as exc:
        raise ConfigError(f"cannot read S3 credentials file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IXGRP & ~stat.S_IXOTH:
        log.warning("S3 credentials file %s is accessible to other users; chmod 600 it", path)
    if explicit is None:
        _check_ini(path)
        return str(path), {}
    if settings.profile:
        raise ConfigError(f"{path} is an s3.conf file; it cannot be combined with profile:")
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return None, {}  # the environment overrides files, as everywhere in the toolkit
    return None, explicit


def _check_ini(path: Path) -> None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        raise ConfigError(f"S3 credentials file {path} is neither an AWS credentials file "
                          "nor an upstream s3.conf") from None


def make_client(settings: S3Settings) -> Any:
    """A thread-safe boto3 S3 client with retries, timeouts and a pool sized to parallelism."""
    shared_file, explicit = _file_credentials(settings)
    core = botocore.session.Session(profile=settings.profile)
    if shared_file:
        core.set_config_variable("credentials_file", shared_file)
    config = Config(
        region_name=settings.region or "us-east-1",
        signature_version=settings.signature_version,
        s3={"addressing_style": settings.style},
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.parallelism + 4,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        request_checksum_calculation=settings.checksums,
        response_checksum_validation=settings.checksums,
        user_agent_extra="cvmfs-publisher",
        tcp_keepalive=True,
    )
    try:
        session = boto3.Session(botocore_session=core)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config,
                              **explicit)
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {settings.profile!r} not found") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot set up the S3 client for {settings.endpoint}: {exc}") from None


# -- storage ----------------------------------------------------------------------------------


class _Precondition(StorageError):
    """A conditional request was refused (HTTP 412/409): someone else changed the object."""


def _headers(key: str) -> dict[str, str]:
    """Upstream's S3 headers (``s3fanout.cc``): short expiry for ``.cvmfs*`` files."""
    return dict(DOT_CVMFS_HEADERS if key.startswith(".cvmfs") else OBJECT_HEADERS)


class S3Storage(Storage):
    """One repository below ``[<prefix>/]<fqrn>/`` in a bucket. Thread-safe."""

    def __init__(self, settings: S3Settings, fqrn: str, *, read_only: bool = False,
                 client: Any = None) -> None:
        self.settings = settings
        self.fqrn = fqrn
        self.read_only = read_only
        self.base = settings.repository_prefix(fqrn) + "/"
        self.client = client if client is not None else make_client(settings)
        self.transfer = TransferConfig(
            multipart_threshold=settings.multipart_threshold,
            multipart_chunksize=settings.multipart_chunksize,
            max_concurrency=min(4, settings.parallelism),
        )
        self._lease: _Lease | None = None

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

    # -- plain operations -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        response = self._call("GET", key, self.client.get_object, Key=self.object_key(key))
        return self._call("GET", key, response["Body"].read)

    def exists(self, key: str) -> bool:
        try:
            self._call("HEAD", key, self.client.head_object, Key=self.object_key(key))
        except ObjectNotFound:
            return False
        except _Forbidden:
            return self._exists_by_get(key)
        return True

    def _exists_by_get(self, key: str) -> bool:
        """HEAD answers carry no error code: ask with a one-byte GET to name the reason."""
        try:
            self._call("GET", key, self.client.get_object, Key=self.object_key(key),
                       Range="bytes=0-0")
        except ObjectNotFound:
            return False
        except StorageError as exc:
            if "InvalidRange" in str(exc):  # an empty object
                return True
            raise
        return True

    def put(self, key: str, data: bytes) -> None:
        self._writable()
        if self._lease is not None and key == MANIFEST:
            self._lease.put_manifest(data)
            return
        if self._lease is not None and key == REFLOG:
            self._lease.check_manifest()  # never clobber the reflog of another publisher
        self._put(key, data, _headers(key), acl=True)

    def _put(self, key: str, data: bytes, headers: dict[str, str], *, acl: bool,
             conditions: dict[str, str] | None = None) -> str:
        """Upload and return the new ETag; multipart above the threshold."""
        extra = dict(headers)
        if acl and self.settings.acl:
            extra["ACL"] = self.settings.acl
        full = self.object_key(key)
        if len(data) >= self.settings.multipart_threshold and not conditions:
            self._call("PUT", key, self.client.upload_fileobj, io.BytesIO(data),
                       self.bucket, full, ExtraArgs=extra, Config=self.transfer)
            return ""
        response = self._call("PUT", key, self.client.put_object, Key=full, Body=data,
                              **extra, **(conditions or {}))
        return str(response.get("ETag", ""))

    def delete(self, key: str) -> None:
        self._writable()
        if self._lease is not None:
            self._lease.check()  # a sweep must stop once another publisher may be uploading
        self._call("DELETE", key, self.client.delete_object, Key=self.object_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Repository keys below ``prefix``, paginated; the lease is internal, not listed."""
        for key, _size in self.list_with_sizes(prefix):
            yield key

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Keys and sizes from the listing itself (garbage collection needs no HEADs)."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.base + prefix)
        iterator = iter(pages)
        while True:
            page = self._call("LIST", prefix or "/", next, iterator, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item["Key"][len(self.base):]
                if key != LEASE and _valid_key(key):
                    yield key, int(item.get("Size", -1))

    def flush(self) -> None:
        """Nothing to do: S3 answers a PUT only once the object is durable."""

    def _writable(self) -> None:
        if self.read_only:
            self._refuse_write()

    # -- the lease lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        """Hold the lease object; machines sharing a bucket share no kernel to flock with."""
        self._writable()
        if self._lease is not None:
            raise StorageError(f"{self.location}: this process already holds the publish lease")
        lease = self._acquire(owner, wait)
        self._lease = lease
        try:
            lease.record_manifest()
            lease.start()
            yield
        finally:
            self._lease = None
            lease.release()

    def _acquire(self, owner: str, wait: bool) -> _Lease:
        delay, announced = 0.2, False
        while True:
            lease, holder = self._try_acquire(owner)
            if lease is not None:
                return lease
            message = _busy_message(self.location, holder)
            if not wait:
                raise RepositoryBusy(message + "; retry later or use --wait")
            if not announced:
                log.info("%s; waiting", message)
                announced = True
            time.sleep(delay * random.uniform(0.7, 1.3))
            delay = min(delay * 1.6, 5.0)

    def _try_acquire(self, owner: str) -> tuple[_Lease | None, LeaseState | None]:
        """One attempt: create the lease, or take over an expired one; else who holds it."""
        for _ in range(3):
            lease = _Lease.new(self, owner)
            try:
                lease.create()
                return lease, None
            except _Precondition:
                pass
            current = self.read_lease()
            if current is None:
                continue  # released between our two requests: try again at once
            if not (current.expired or current.token in _ABANDONED):
                return None, current
            try:
                lease.take_over(current)
                return lease, None
            except _Precondition:
                continue
        return None, self.read_lease()

    def read_lease(self) -> LeaseState | None:
        """The lease as stored, its age measured by the server's clock (no clock skew)."""
        try:
            response = self._call("GET", LEASE, self.client.get_object,
                                  Key=self.object_key(LEASE))
            body = self._call("GET", LEASE, response["Body"].read)
        except ObjectNotFound:
            return None
        return LeaseState.parse(body, response, self.settings.lease_seconds)

    def lock_holder(self) -> LockInfo | None:
        state = self.read_lease()
        return state.info if state is not None else None

    def break_lock(self) -> LockInfo | None:
        """Remove whatever lease is there (``unlock --force``); returns what was removed."""
        self._writable()
        for _ in range(5):
            state = self.read_lease()
            if state is None:
                return None
            try:
                self._conditional_delete(LEASE, state.etag)
            except _Precondition:
                continue  # renewed or replaced meanwhile: remove the new one
            log.warning("removed the publish lease of %s (pid %d on %s)",
                        state.info.owner, state.info.pid, state.info.host)
            return state.info
        raise StorageError(f"{self.location}: the publish lease keeps changing; is a publisher "
                           "still running?")

    # -- conditional requests ---------------------------------------------------------------------

    def _conditional_put(self, key: str, data: bytes, headers: dict[str, str], *, acl: bool,
                         if_match: str | None = None, if_none_match: bool = False) -> str:
        """PUT only if the object is absent / unchanged; emulated racily if the server can't."""
        if not self.settings.conditional_writes:
            self._emulate_condition(key, if_match, if_none_match)
            return self._put(key, data, headers, acl=acl)
        conditions = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match:
            conditions["IfMatch"] = if_match
        return self._put(key, data, headers, acl=acl, conditions=conditions)

    def _conditional_delete(self, key: str, if_match: str | None) -> None:
        if not self.settings.conditional_writes or not if_match:
            self._emulate_condition(key, if_match, False)
            self._call("DELETE", key, self.client.delete_object, Key=self.object_key(key))
            return
        self._call("DELETE", key, self.client.delete_object, Key=self.object_key(key),
                   IfMatch=if_match)

    def _emulate_condition(self, key: str, if_match: str | None, if_none_match: bool) -> None:
        """Check-then-act for servers without conditional writes: not atomic (see docs)."""
        if not if_match and not if_none_match:
            return
        etag = self.etag(key)
        if (if_none_match and etag is not None) or (if_match and etag != if_match):
            raise _Precondition(f"{self.location}: {key} changed meanwhile")

    def etag(self, key: str) -> str | None:
        try:
            response = self._call("HEAD", key, self.client.head_object, Key=self.object_key(key))
        except ObjectNotFound:
            return None
        return str(response.get("ETag", ""))

    # -- error translation ------------------------------------------------------------------------

    def _call(self, action: str, key: str, function: Callable[..., T], *args: Any,
              **kwargs: Any) -> T:
        """Run one client call; every failure becomes a one-line ``StorageError``."""
        if "Key" in kwargs and "Bucket" not in kwargs:
            kwargs["Bucket"] = self.bucket
        try:
            return function(*args, **kwargs)
        except S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            raise self._translate(cause or exc, action, key) from None
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, action, key) from None

    def _translate(self, exc: BaseException, action: str, key: str) -> Exception:
        where = f"S3 endpoint {self.settings.endpoint} (bucket {self.bucket})"
        if isinstance(exc, ClientError):
            return self._client_error(exc, where, action, key)
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageError(f"cannot reach {where}: {_connection_reason(exc)}")
        if isinstance(exc, ReadTimeoutError):
            return StorageError(f"{where} did not answer {action} {key} within "
                                f"{self.settings.read_timeout:g} s")
        if isinstance(exc, ConnectionClosedError):
            return StorageError(f"{where} closed the connection during {action} {key}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or name profile: or credentials_file: in the s3 settings")
        return StorageError(f"{where}: {action} {key} failed: {_short(str(exc))}")

    def _client_error(self, exc: ClientError, where: str, action: str, key: str) -> Exception:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code in _PRECONDITION_CODES or status == 412:
            return _Precondition(f"{where}: {action} {key} refused, the object changed ({code})")
        if code == "NoSuchBucket":
            return StorageError(f"bucket {self.bucket} does not exist at S3 endpoint "
                                f"{self.settings.endpoint}")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return ObjectNotFound(f"{key} not found in {self.location}")
        if code in _CREDENTIAL_CODES:
            return StorageError(f"{where} rejected the credentials ({code})")
        if status == 403 and code in ("403", "Forbidden"):
            return _Forbidden(f"{where} refused {action} {key} (HTTP 403)")
        if code == "AccessControlListNotSupported":
            return StorageError(f"{where} does not accept canned ACLs ({code}): set acl: none "
                                "in the s3 settings and grant anonymous reads with a bucket policy")
        if code == "AccessDenied" or status == 403:
            return StorageError(f"{where} denied {action} {key} ({code or 'HTTP 403'}): the "
                                "credentials lack permission")
        message = _short(str(error.get("Message", "")))
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            return StorageError(f"{where} failed {action} {key} after {attempts + 1} attempt(s): "
                                f"{code} (HTTP {status}) {message}".rstrip())
        return StorageError(f"{where} refused {action} {key}: {code} (HTTP {status}) "
                            f"{message}".rstrip())


class _Forbidden(StorageError):
    """HTTP 403 without an error code (HEAD); ``exists`` re-asks with GET to learn why."""


def _valid_key(key: str) -> bool:
    try:
        check_key(key)
    except UsageError:
        return False
    return True


def _connection_reason(exc: BotoCoreError) -> str:
    detail = str(getattr(exc, "kwargs", {}).get("error", "")) or str(exc)
    match = _ERRNO_TEXT.search(detail)
    if match:
        return match.group(1).strip().lower()
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    return _short(detail)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "..."


# -- lease ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseState:
    """A lease as read back: who, since when, and whether its holder stopped renewing it."""

    info: LockInfo
    token: str
    etag: str
    age: float  # seconds since the last write, by the server's clock
    ttl: float

    @property
    def expired(self) -> bool:
        return self.age > self.ttl

    @classmethod
    def parse(cls, body: bytes, response: Mapping[str, Any], default_ttl: float) -> LeaseState:
        try:
            data = json.loads(body)
            info = LockInfo(str(data["owner"]), str(data["host"]), int(data["pid"]),
                            float(data["created"]))
            token, ttl = str(data["token"]), float(data.get("ttl", default_ttl))
        except (ValueError, TypeError, KeyError):
            info, token, ttl = LockInfo("an unknown publisher", "?", 0, 0.0), "", default_ttl
        age = _server_age(response)
        if age is None:  # no Date header: fall back to our own clock
            age = time.time() - float(_json_field(body, "renewed", info.since))
        info = replace(info, expires=time.time() + ttl - age)
        return cls(info, token, str(response.get("ETag", "")), age, ttl)


def _server_age(response: Mapping[str, Any]) -> float | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    modified = response.get("LastModified")
    try:
        now = parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    if modified is None:
        return None
    return (now - modified).total_seconds()


def _json_field(body: bytes, name: str, default: float) -> float:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return float(json.loads(body)[name])
    return default


class _Lease:
    """A held lease: renewed in the background; guards the manifest write."""

    def __init__(self, storage: S3Storage, owner: str, token: str) -> None:
        self.storage = storage
        self.owner = owner
        self.token = token
        self.ttl = storage.settings.lease_seconds
        self.created = time.time()
        self.etag = ""
        self.manifest_etag: str | None = None  # None: no manifest; "": ETag unknown
        self.renewed = time.monotonic()
        self.lost: str | None = None
        self.stopping = threading.Event()
        self.mutex = threading.Lock()
        self.thread: threading.Thread | None = None

    @classmethod
    def new(cls, storage: S3Storage, owner: str) -> _Lease:
        return cls(storage, owner, secrets.token_hex(16))

    def body(self) -> bytes:
        now = time.time()
        return json.dumps({
            "owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
            "token": self.token, "created": self.created, "renewed": now,
            "expires": now + self.ttl, "ttl": self.ttl,
        }, indent=1).encode() + b"\n"

    def _write(self, **condition: Any) -> None:
        headers = {"ContentType": "application/json", "CacheControl": "no-cache"}
        self.etag = self.storage._conditional_put(LEASE, self.body(), headers, acl=False,
                                                  **condition)
        self.renewed = time.monotonic()

    def create(self) -> None:
        self._write(if_none_match=True)

    def take_over(self, stale: LeaseState) -> None:
        """Replace an expired lease, only if it is still the very one we judged expired."""
        self._write(if_match=stale.etag)
        if stale.token in _ABANDONED:
            _ABANDONED.discard(stale.token)
            log.info("reclaimed the publish lease this process could not remove earlier")
            return
        log.warning("took over the expired publish lease of %s (pid %d on %s), "
                    "idle for %.0f s", stale.info.owner, stale.info.pid, stale.info.host,
                    stale.age)

    def record_manifest(self) -> None:
        """Remember which manifest we start from: only that one may be replaced."""
        self.manifest_etag = self.storage.etag(MANIFEST)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._renew_loop, daemon=True,
                                       name=f"cvmfs-lease-{self.storage.fqrn}")
        self.thread.start()

    def _renew_loop(self) -> None:
        while not self.stopping.wait(self.ttl / 3):
            self.renew()

    def renew(self) -> None:
        with self.mutex:
            if self.lost:
                return
            try:
                self._write(if_match=self.etag)
            except _Precondition:
                self.lost = "another publisher replaced or removed it"
            except StorageError as exc:
                log.warning("cannot renew the publish lease: %s", exc)
                if time.monotonic() - self.renewed > self.ttl:
                    self.lost = f"it could not be renewed for {self.ttl} s"

    def check(self) -> None:
        """Refuse to go on once the lease may belong to someone else."""
        if self.lost is None and time.monotonic() - self.renewed > self.ttl:
            self.lost = f"it was last renewed more than {self.ttl} s ago"
        if self.lost:
            raise StorageError(f"{self.storage.location}: lost the publish lease ({self.lost}); "
                               "nothing was published, run the publish again")

    def check_manifest(self) -> None:
        """Before the reflog: the lease still ours and the manifest still the one we started
        from. Check-then-act, but it keeps a publisher that lost its lease from replacing
        the reflog of the one that took over; the manifest write itself is conditional."""
        with self.mutex:
            self.check()
            current = self.storage.etag(MANIFEST)
        if self.manifest_etag != "" and current != self.manifest_etag:
            raise StorageError(self._changed_message())

    def _changed_message(self) -> str:
        return (f"{self.storage.location}: the manifest changed while this publish held the "
                "lease (another publisher took it over?); nothing was published")

    def put_manifest(self, data: bytes) -> None:
        """The atomic switch, made conditional on the manifest we started from."""
        with self.mutex:
            self.check()
            condition: dict[str, Any] = {"if_match": self.manifest_etag}
            if self.manifest_etag is None:
                condition = {"if_none_match": True}
            try:
                etag = self.storage._conditional_put(MANIFEST, data, _headers(MANIFEST),
                                                     acl=True, **condition)
            except _Precondition:
                raise StorageError(self._changed_message()) from None
            self.manifest_etag = etag or self.storage.etag(MANIFEST)

    def release(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        with self.mutex:
            if self.lost:
                log.warning("the publish lease was lost (%s)", self.lost)
            try:
                self.storage._conditional_delete(LEASE, self.etag)
            except _Precondition:
                log.warning("the publish lease was taken over before it was released")
            except StorageError as exc:
                _ABANDONED.add(self.token)
                log.warning("could not remove the publish lease (%s); it expires within %d s, "
                            "or run 'cvmfs-publisher unlock --force'", exc, self.ttl)


def _busy_message(location: str, state: LeaseState | None) -> str:
    if state is None:
        return f"repository {location} is busy: another publisher holds its lease"
    info = state.info
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.since))
    left = max(0, round(state.ttl - state.age))
    return (f"repository {location} is busy: {info.owner} (pid {info.pid} on {info.host}) "
            f"has been publishing since {started}; its lease expires in {left} s unless renewed")


# -- probing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionalWriteSupport:
    """What a server does with ``If-None-Match: *`` and ``If-Match`` on PutObject."""

    if_none_match: bool
    if_match: bool

    @property
    def ok(self) -> bool:
        """Both are needed: creating a lease, and renewing or taking one over."""
        return self.if_none_match and self.if_match

    def describe(self) -> str:
        if self.ok:
            return "the S3 server honours conditional writes (If-None-Match, If-Match)"
        missing = [n for n, ok in (("If-None-Match", self.if_none_match),
                                   ("If-Match", self.if_match)) if not ok]
        return (f"the S3 server ignores {' and '.join(missing)} on PutObject: the publish "
                "lease cannot keep two publishers apart; run a single publisher")


def probe_conditional_writes(storage: S3Storage) -> ConditionalWriteSupport:
    """Write a probe key twice with ``If-None-Match: *``; a second success means "ignored".

    Always sends the real headers (regardless of ``conditional_writes``) and removes the
    probe. ``init`` calls this to warn or refuse before anyone relies on the lease.
    """
    storage._writable()
    key = PROBE_PREFIX + secrets.token_hex(8)
    headers = {"ContentType": "text/plain", "CacheControl": "no-cache"}
    try:
        if not _probe(storage, key, b"1", headers, {"IfNoneMatch": "*"}):
            storage._put(key, b"1", headers, acl=False)
            none_match = False
        else:
            none_match = not _probe(storage, key, b"2", headers, {"IfNoneMatch": "*"})
        match = not _probe(storage, key, b"3", headers, {"IfMatch": '"00000000000000000000"'})
    finally:
        with contextlib.suppress(StorageError):
            storage.delete(key)
    return ConditionalWriteSupport(none_match, match)


def _probe(storage: S3Storage, key: str, body: bytes, headers: dict[str, str],
           conditions: dict[str, str]) -> bool:
    """True if the write went through, False if refused as a precondition or unsupported."""
    try:
        storage._put(key, body, headers, acl=False, conditions=conditions)
        return True
    except _Precondition:
        return False
    except StorageError as exc:
        if any(code in str(exc) for code in _NOT_IMPLEMENTED_CODES):
            return False
        raise


__all__ = ["LEASE", "ConditionalWriteSupport", "LeaseState", "S3Settings", "S3Storage",
           "make_client", "parse_s3_url", "probe_conditional_writes"]
