"""Read-only access to any repository by URL, the way a client or a Stratum 1 reads it."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import ObjectNotFound, StorageError
from .base import Storage
from .key_names import check_key

TIMEOUT = (10, 60)


class HttpStorage(Storage):
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
        try:
            response = self.session.get(self._url(key), timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise StorageError(f"cannot reach {self.base_url}: {_reason(exc)}") from None
        if response.status_code == 404:
            raise ObjectNotFound(f"{key} not found at {self.base_url}")
        if response.status_code != 200:
            raise StorageError(f"GET {self._url(key)} answered HTTP {response.status_code}")
        return response.content

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


def _session() -> requests.Session:
    """Retries with backoff on connection errors and 5xx, as urllib3 implements them."""
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=("GET", "HEAD"))
    session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
    session.headers["User-Agent"] = "cvmfs-publisher"
    return session


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
