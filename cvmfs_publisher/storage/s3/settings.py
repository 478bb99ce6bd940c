"""Where and how to reach a bucket: the ``s3:`` mapping of the configuration, and s3:// URLs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigError, UsageError
from ...values import to_bool, to_float, to_int

MiB = 1 << 20

ADDRESSING_STYLES = ("path", "virtual", "auto")
RETRY_MODES = ("standard", "adaptive", "legacy")
CHECKSUM_MODES = ("when_supported", "when_required")
SIGNATURE_VERSIONS = ("s3v4", "s3")
NO_ACL = ("", "none", "null")
_SECRET_KEYS = {"access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "session_token", "secret", "password", "token"}
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_INTS = {"parallelism", "max_attempts", "multipart_threshold", "multipart_chunksize",
         "lease_seconds"}
_FLOATS = {"connect_timeout", "read_timeout"}


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


def _coerce(name: str, value: Any) -> Any:
    """YAML and environment values to the field's type, with the setting named on error."""
    what = f"s3 setting {name}"
    if name in _INTS:
        return to_int(value, what)
    if name in _FLOATS:
        return to_float(value, what)
    if name == "conditional_writes":
        return to_bool(value, what)
    if name == "credentials_file":
        return None if value is None else Path(str(value))
    return None if value is None else str(value)
