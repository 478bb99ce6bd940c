"""PutObject for the many objects of a publish, without botocore's per-call machinery.

One boto3 ``put_object`` costs about 1.5 ms of client CPU (event hooks, endpoint rules,
parameter validation, response parsing) plus an ``Expect: 100-continue`` round trip. With
the server on the same two cores, the client set the pace: about 550 PUT/s. Here the request
is signed by botocore's own SigV4 signer and sent by urllib3, which retries what botocore's
standard mode retries (connection errors, 429, 5xx) with backoff: about 0.6 ms, 1,100 PUT/s
(``bench/s3.py``). Anything this path cannot do as boto3 would is left to boto3:
``for_storage`` returns None for proxies, other signature versions and adaptive retries, and
an answer other than success or a retryable failure raises ``Declined`` so the caller can
send the same request through boto3.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ElementTree
from typing import Any

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpchecksum import Crc32Checksum
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies
from urllib3.exceptions import ConnectTimeoutError as Urllib3ConnectTimeout
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout
from urllib3.exceptions import SSLError as Urllib3SSLError

from ... import __version__
from .settings import S3Settings

# PutObject parameters as HTTP headers (what ``headers_for`` and the ACL setting give)
HEADERS = {"ContentType": "Content-Type", "CacheControl": "Cache-Control", "ACL": "x-amz-acl"}
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})  # botocore's standard mode, by status
MAX_BACKOFF = 20.0  # seconds, as botocore's standard mode
ERROR_BODY = 64 << 10  # bytes of an error answer read for its code and message
PROBE_KEY = "cvmfs-publisher-probe"


class Declined(Exception):
    """The server answered in a way only boto3 handles (a redirect, a 4xx): resend there."""


class DirectPut:
    """PUT to ``<bucket URL>/<key>`` with the client's credentials, region and settings."""

    def __init__(self, bucket_url: str, region: str, credentials: Credentials,
                 settings: S3Settings, ca_bundle: str | None) -> None:
        self.bucket_url = bucket_url.rstrip("/")
        self.path = urllib.parse.urlsplit(self.bucket_url).path
        self.region = region
        self.credentials = credentials
        self.checksums = settings.checksums == "when_supported"
        timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
        self.pool = urllib3.connection_from_url(
            self.bucket_url, maxsize=settings.parallelism + 4, timeout=timeout,
            **({"ca_certs": ca_bundle or get_cert_path(True)}
               if self.bucket_url.startswith("https:") else {}))
        self.retries = urllib3.Retry(
            total=settings.max_attempts - 1, redirect=0, raise_on_redirect=False,
            status_forcelist=RETRIED_STATUS, allowed_methods=None, raise_on_status=False,
            backoff_factor=0.5, backoff_max=MAX_BACKOFF, backoff_jitter=0.5,
            respect_retry_after_header=False)

    @classmethod
    def for_storage(cls, client: Any, credentials: Credentials | None, settings: S3Settings,
                    ca_bundle: str | None) -> DirectPut | None:
        """The direct path for ``client``'s bucket, or None where boto3 must do every PUT."""
        config = client.meta.config
        if (credentials is None or settings.signature_version not in (None, "s3v4")
                or settings.retry_mode == "adaptive" or config.proxies):
            return None
        probe = client.generate_presigned_url(
            "put_object", Params={"Bucket": settings.bucket, "Key": PROBE_KEY})
        url = urllib.parse.urlsplit(probe)._replace(query="").geturl()
        if not url.endswith("/" + PROBE_KEY) or get_environ_proxies(url):
            return None
        return cls(url[: -len(PROBE_KEY)], client.meta.region_name, credentials, settings,
                   ca_bundle)

    def put(self, key: str, data: bytes, parameters: dict[str, str]) -> str:
        """Store ``data`` at bucket key ``key``; the ETag. Failures are botocore's exceptions,
        as boto3 raises them, so ``S3Calls`` words them the same way."""
        quoted = urllib.parse.quote(key, safe="/~")
        url = f"{self.bucket_url}/{quoted}"
        headers = {HEADERS[name]: value for name, value in parameters.items()}
        if self.checksums:
            headers["x-amz-checksum-crc32"] = Crc32Checksum().handle(data)
            headers["x-amz-sdk-checksum-algorithm"] = "CRC32"
        request = AWSRequest("PUT", url, data=data, headers=headers)
        S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region
                    ).add_auth(request)
        sent = dict(request.headers.items())
        sent["User-Agent"] = f"cvmfs-publisher/{__version__}"
        try:
            response = self.pool.urlopen("PUT", f"{self.path}/{quoted}", body=data, headers=sent,
                                         retries=self.retries, preload_content=False)
            try:
                return _answer(response)
            finally:
                response.drain_conn()
                response.release_conn()
        except MaxRetryError as exc:
            raise _connection_error(url, exc.reason) from None
        except HTTPError as exc:
            raise _connection_error(url, exc) from None


def _answer(response: urllib3.BaseHTTPResponse) -> str:
    """The ETag of a success; a retried failure as boto3's ``ClientError``; else Declined."""
    if 200 <= response.status < 300:
        return str(response.headers.get("ETag", ""))
    code, message = _error_of(response)
    if response.status not in RETRIED_STATUS:
        raise Declined(f"HTTP {response.status} {code}".rstrip())
    attempts = len(response.retries.history) if response.retries else 0
    raise ClientError({"Error": {"Code": code or str(response.status), "Message": message},
                       "ResponseMetadata": {"HTTPStatusCode": response.status,
                                            "RetryAttempts": attempts}}, "PutObject")


def _error_of(response: urllib3.BaseHTTPResponse) -> tuple[str, str]:
    """(Code, Message) of an S3 error answer; empty where it has none."""
    body = response.read(ERROR_BODY)
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", ""
    return root.findtext("Code") or "", root.findtext("Message") or ""


def _connection_error(url: str, reason: BaseException | None) -> Exception:
    """urllib3's failure as the botocore exception boto3 would have raised for it."""
    if isinstance(reason, NewConnectionError):  # a subclass of the connect timeout
        return EndpointConnectionError(endpoint_url=url, error=reason)
    if isinstance(reason, Urllib3ConnectTimeout):
        return ConnectTimeoutError(endpoint_url=url, error=reason)
    if isinstance(reason, Urllib3ReadTimeout):
        return ReadTimeoutError(endpoint_url=url, error=reason)
    if isinstance(reason, Urllib3SSLError):
        return SSLError(endpoint_url=url, error=reason)
    if isinstance(reason, ProtocolError):
        return ConnectionClosedError(endpoint_url=url)
    return EndpointConnectionError(endpoint_url=url, error=reason)
