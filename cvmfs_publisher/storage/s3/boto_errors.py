"""botocore failures turned into one-line ``StorageError`` messages a user can act on.

Every message names the endpoint and bucket and, for S3 error answers, the error code; it
never contains credentials. Conditional requests refused by the server become
``PreconditionFailed`` so the lease and the manifest switch can tell "someone else changed
it" from a broken storage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from ...errors import ObjectNotFound, StorageError
from .settings import S3Settings

T = TypeVar("T")

_CREDENTIAL_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken",
                     "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidSecurity",
                     "TokenRefreshRequired"}
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
NOT_IMPLEMENTED_CODES = {"NotImplemented", "501", "InvalidArgument", "InvalidRequest"}
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class PreconditionFailed(StorageError):
    """A conditional request was refused (HTTP 412/409): someone else changed the object."""


class Forbidden(StorageError):
    """HTTP 403 without an error code (HEAD); ``exists`` re-asks with GET to learn why."""


class S3Calls:
    """Runs client calls for one repository; every failure leaves as a ``StorageError``."""

    def __init__(self, settings: S3Settings, location: str) -> None:
        self.settings = settings
        self.location = location
        self.where = f"S3 endpoint {settings.endpoint} (bucket {settings.bucket})"

    def __call__(self, action: str, key: str, function: Callable[..., T], *args: Any,
                 **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` with the bucket filled in for keyed requests."""
        if "Key" in kwargs and "Bucket" not in kwargs:
            kwargs["Bucket"] = self.settings.bucket
        try:
            return function(*args, **kwargs)
        except S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            raise self.translate(cause or exc, action, key) from None
        except (ClientError, BotoCoreError) as exc:
            raise self.translate(exc, action, key) from None

    def translate(self, exc: BaseException, action: str, key: str) -> Exception:
        where = self.where
        if isinstance(exc, ClientError):
            return self._client_error(exc, action, key)
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
        return StorageError(f"{where}: {action} {key} failed: {short(str(exc))}")

    def _client_error(self, exc: ClientError, action: str, key: str) -> Exception:
        where = self.where
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code in _PRECONDITION_CODES or status == 412:
            return PreconditionFailed(f"{where}: {action} {key} refused, the object changed "
                                      f"({code})")
        if code == "NoSuchBucket":
            return StorageError(f"bucket {self.settings.bucket} does not exist at S3 endpoint "
                                f"{self.settings.endpoint}")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return ObjectNotFound(f"{key} not found in {self.location}")
        if code in _CREDENTIAL_CODES:
            return StorageError(f"{where} rejected the credentials ({code})")
        if status == 403 and code in ("403", "Forbidden"):
            return Forbidden(f"{where} refused {action} {key} (HTTP 403)")
        if code == "AccessControlListNotSupported":
            return StorageError(f"{where} does not accept canned ACLs ({code}): set acl: none "
                                "in the s3 settings and grant anonymous reads with a bucket policy")
        if code == "AccessDenied" or status == 403:
            return StorageError(f"{where} denied {action} {key} ({code or 'HTTP 403'}): the "
                                "credentials lack permission")
        message = short(str(error.get("Message", "")))
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            return StorageError(f"{where} failed {action} {key} after {attempts + 1} attempt(s): "
                                f"{code} (HTTP {status}) {message}".rstrip())
        return StorageError(f"{where} refused {action} {key}: {code} (HTTP {status}) "
                            f"{message}".rstrip())


def _connection_reason(exc: BotoCoreError) -> str:
    detail = str(getattr(exc, "kwargs", {}).get("error", "")) or str(exc)
    match = _ERRNO_TEXT.search(detail)
    if match:
        return match.group(1).strip().lower()
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    return short(detail)


def short(text: str) -> str:
    """One line of at most about 200 characters."""
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + "..."
