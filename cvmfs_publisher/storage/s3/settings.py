"""Where and how to reach a bucket: the ``s3:`` mapping of the configuration, and s3:// URLs.

``SETTINGS`` is the table of that mapping (kind, range, description); the configuration
checks a repository's mapping against it when it loads, and ``S3Settings`` converts with
it, so both accept and refuse the same values with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigError, UsageError
from ...values import (
    Choice,
    Flag,
    HttpUrl,
    Integer,
    Invalid,
    Number,
    PathText,
    Setting,
    Text,
    checked_text,
    unknown_key,
)

MiB = 1 << 20
GiB = 1 << 30

ADDRESSING_STYLES = ("path", "virtual", "auto")
RETRY_MODES = ("standard", "adaptive", "legacy")
CHECKSUM_MODES = ("when_supported", "when_required")
SIGNATURE_VERSIONS = ("s3v4", "s3")
NO_ACL = ("", "none", "null")
_SECRET_KEYS = {"access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "session_token", "secret", "password", "token"}
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
ALIASES = {"endpoint": "endpoint_url"}  # what the configuration says -> the field


@dataclass(frozen=True)
class _Prefix:
    expected: str = "a key prefix of letters, digits, '.', '-', '_' separated by '/'"

    def parse(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(self.expected)
        try:
            return _clean_prefix(value)
        except ConfigError:
            raise Invalid(self.expected) from None


@dataclass(frozen=True)
class _Acl:
    expected: str = "a canned ACL such as public-read, or none"

    def parse(self, value: Any) -> str | None:
        if isinstance(value, str) and value.strip().lower() in NO_ACL:
            return None
        return checked_text(value, self.expected)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("bucket", Text("a bucket name of 3 to 255 letters, digits, '.', '-', '_'", _BUCKET),
            "the bucket (from the s3:// storage URL)"),
    Setting("prefix", _Prefix(), "key prefix of the Stratum 0 root (from the storage URL)"),
    Setting("endpoint_url", HttpUrl(), "S3 endpoint, written 'endpoint'; default: AWS",
            optional=True),
    Setting("region", Text(), "S3 region", optional=True),
    Setting("addressing_style", Choice(ADDRESSING_STYLES),
            "default: path with an endpoint, virtual on AWS", optional=True),
    Setting("profile", Text(), "AWS profile holding the credentials", optional=True),
    Setting("credentials_file", PathText("a file path"),
            "AWS credentials file or upstream s3.conf", optional=True),
    Setting("acl", _Acl(), "canned ACL on every file; none: a bucket policy allows reads",
            optional=True),
    Setting("public_url", HttpUrl(), "URL of the bucket root for clients; default derived",
            optional=True),
    Setting("parallelism", Integer(1), "HTTP connection pool size"),
    Setting("retry_mode", Choice(RETRY_MODES), "botocore's retry mode"),
    Setting("max_attempts", Integer(1, 100), "tries per request, the first included"),
    Setting("connect_timeout", Number(0, 600), "seconds to connect"),
    Setting("read_timeout", Number(0, 3600), "seconds to wait for a response"),
    Setting("multipart_threshold", Integer(5 * MiB, 5 * 1024 * GiB),
            "bytes above which uploads go multipart"),
    Setting("multipart_chunksize", Integer(5 * MiB, 5 * GiB), "bytes per multipart part"),
    Setting("lease_seconds", Integer(3, 86400), "publish lease lifetime, renewed every third"),
    Setting("conditional_writes", Flag(), "false only for servers refusing If-None-Match"),
    Setting("signature_version", Choice(SIGNATURE_VERSIONS), "default: botocore's (SigV4)",
            optional=True),
    Setting("checksums", Choice(CHECKSUM_MODES), "when_required for servers refusing CRC32"),
)}


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
        """Every field through ``SETTINGS``, whichever constructor made it."""
        for name, setting in SETTINGS.items():
            object.__setattr__(self, name, setting.check(getattr(self, name), "s3"))
        if self.credentials_file is not None:
            object.__setattr__(self, "credentials_file", Path(self.credentials_file).expanduser())

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "s3") -> S3Settings:
        """The YAML ``s3:`` mapping; ``url: s3://bucket/prefix`` may replace bucket/prefix.

        Secrets are refused here: a configuration file is copied, shared and committed far
        more often than a credentials file. Errors start with ``where``.
        """
        refused = sorted(str(k) for k in mapping if str(k).lower() in _SECRET_KEYS)
        if refused:
            raise ConfigError(
                f"{where}: S3 secrets are not accepted in the configuration "
                f"({', '.join(refused)}): use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an AWS "
                "profile (profile:) or a credentials file (credentials_file:)")
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            name = ALIASES.get(key, key)
            if name not in SETTINGS and key != "url":
                raise unknown_key(where, "s3 setting", key, [*ALIASES, "url", *SETTINGS])
            if key != "url":
                values.setdefault(name, SETTINGS[name].check(value, where, key))
        url = mapping.get("url")
        if url is not None:
            bucket, prefix = parse_s3_url(str(url))
            values.setdefault("bucket", bucket)
            values.setdefault("prefix", prefix)
        if "bucket" not in values:
            raise ConfigError(f"{where}: the s3 settings need a bucket (or url: "
                              "s3://bucket/prefix)")
        return cls(**values)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> S3Settings:
        """``s3://bucket[/prefix]`` with every other setting at its default or ``overrides``."""
        bucket, prefix = parse_s3_url(url)
        return cls.from_mapping({**overrides, "bucket": bucket, "prefix": prefix})

    @classmethod
    def from_url_and_mapping(cls, url: str, mapping: Mapping[str, Any] | None,
                             where: str = "s3") -> S3Settings:
        """The storage URL of a configured repository plus its ``s3:`` mapping."""
        bucket, prefix = parse_s3_url(url)
        values = dict(mapping or {})
        for name, value in (("bucket", bucket), ("prefix", prefix)):
            given = values.get(name)
            if given is not None and _norm(name, given) != value:
                raise ConfigError(f"{where}: {name}={given!r} contradicts the storage URL {url}")
        values.pop("url", None)
        values.update(bucket=bucket, prefix=prefix)
        return cls.from_mapping(values, where)

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


def _norm(name: str, value: Any) -> str:
    return _clean_prefix(str(value)) if name == "prefix" else str(value)
