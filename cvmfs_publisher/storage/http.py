"""Read-only access to any repository by URL, the way a client or a Stratum 1 reads it."""

from __future__ import annotations

import io

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import ObjectNotFound, StorageError
from .base import Capabilities, ObjectStream, Storage
from .key_names import check_key

TIMEOUT = (10, 60)


class HttpStorage(Storage):
    """What a client sees: GET and HEAD only, no listing, no lock. Thread-safe."""

    read_only = True

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or _session()

    @property
    def location(self) -> str:
        return self.base_url

    def public_url(self) -> str | None:
        return self.base_url

    def _url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"

    def get(self, key: str) -> bytes:
        response = self._get(key, stream=False)
        return response.content

    def open(self, key: str) -> ObjectStream:
        """The response body as it arrives; ``size`` from ``Content-Length`` (unless the
        server compressed the body on the way, which makes that the compressed size)."""
        response = self._get(key, stream=True)
        length = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        size = int(length) if length.isdigit() and not encoded else None
        return ObjectStream(_Body(response, self._url(key)), size, self._url(key))

    def _get(self, key: str, *, stream: bool) -> requests.Response:
        try:
            response = self.session.get(self._url(key), timeout=TIMEOUT, stream=stream)
        except requests.RequestException as exc:
            raise StorageError(f"cannot reach {self.base_url}: {_reason(exc)}") from None
        if response.status_code != 200:
            response.close()
        if response.status_code == 404:
            raise ObjectNotFound(f"{key} not found at {self.base_url}")
        if response.status_code != 200:
            raise StorageError(f"GET {self._url(key)} answered HTTP {response.status_code}")
        return response

    def exists(self, key: str) -> bool:
        try:
            response = self.session.head(self._url(key), timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise StorageError(f"cannot reach {self.base_url}: {_reason(exc)}") from None
        if response.status_code in (403, 404):
            return False
        if response.status_code != 200:
            raise StorageError(f"HEAD {self._url(key)} answered HTTP {response.status_code}")
        return True

    def capabilities(self) -> Capabilities:
        return Capabilities(lock="none")


class _Body:
    """A streamed response body that fails with ``StorageError`` like every other read."""

    def __init__(self, response: requests.Response, url: str) -> None:
        self.response = response
        self.url = url

    def read(self, n: int = -1) -> bytes:
        try:
            return self.response.raw.read(None if n < 0 else n, decode_content=True)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise StorageError(f"reading {self.url} failed: {_reason(exc)}") from None

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0, /) -> int:
        raise io.UnsupportedOperation("a response body cannot seek")

    def close(self) -> None:
        self.response.close()


def _session() -> requests.Session:
    """Retries with backoff on connection errors and 5xx, as urllib3 implements them."""
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "HEAD"))
    session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    session.headers["User-Agent"] = "cvmfs-publisher"
    return session


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
