"""A registry v2 client on ``requests``: auth challenges, retries, verified manifests and blobs.

Auth follows the registry's ``WWW-Authenticate`` challenge, as a ``requests`` auth handler
(the pattern of ``requests.auth.HTTPDigestAuth``): Basic with stored credentials, or a
Bearer token fetched from the challenge's realm (with credentials when we have them,
anonymously otherwise), cached per registry and scope until 80 % of its lifetime, and
refreshed once when the registry answers 401. Retries with back-off, including 429 and
``Retry-After``, are urllib3's ``Retry`` on the session's adapter. Credentials come from a
docker-style ``config.json`` or the environment, never from arguments, and are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from .errors import AuthError, DigestMismatch, RegistryError
from .manifests import ACCEPT
from .reference import ImageRef

log = logging.getLogger(__name__)

MAX_MANIFEST = 4 << 20
MAX_CONFIG = 16 << 20
READ_BLOCK = 1 << 20
TOKEN_DEFAULT_LIFETIME = 60
TOKEN_REFRESH_FRACTION = 0.8
_REPO_PATH = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags)/")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def _registry_key(name: str) -> str:
    """``https://index.docker.io/v1/`` and ``host:port`` alike become ``host[:port]``."""
    text = name.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    return text.split("/", 1)[0].lower()


@dataclass
class CredentialStore:
    """Credentials per registry host, from files and variables the container tools use.

    Sources, first match wins: DUCC-style variables (``DUCC_AUTH_REGISTRIES=a,b`` with
    ``DUCC_<n>_IDENT`` a substring of the registry, ``DUCC_<n>_USER``, ``DUCC_<n>_PASS``),
    then ``auths`` of the auth file (``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``,
    ``~/.docker/config.json``, ``$XDG_RUNTIME_DIR/containers/auth.json``).
    """

    by_host: dict[str, Credentials] = field(default_factory=dict)
    by_substring: list[tuple[str, Credentials]] = field(default_factory=list)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None,
                         auth_file: Path | None = None) -> CredentialStore:
        env = os.environ if env is None else env
        store = cls()
        for path in _auth_files(env, auth_file):
            store.by_host.update(_read_auth_file(path))
        for name in filter(None, (n.strip() for n in env.get("DUCC_AUTH_REGISTRIES", "")
                                  .split(","))):
            ident, user = env.get(f"DUCC_{name}_IDENT"), env.get(f"DUCC_{name}_USER")
            if ident and user is not None:
                store.by_substring.append(
                    (ident, Credentials(user, env.get(f"DUCC_{name}_PASS", ""))))
        return store

    def lookup(self, registry: str) -> Credentials | None:
        for ident, creds in self.by_substring:
            if ident in registry:
                return creds
        return self.by_host.get(_registry_key(registry))


def _auth_files(env: Mapping[str, str], explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    candidates = []
    if env.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("DOCKER_CONFIG"):
        candidates.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    candidates.append(Path(env.get("HOME", os.path.expanduser("~"))) / ".docker/config.json")
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "containers/auth.json")
    return [p for p in candidates if p.is_file()]


def _read_auth_file(path: Path) -> dict[str, Credentials]:
    """``{"auths": {host: {"auth": base64(user:pass)} | {"username", "password"}}}``."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read registry auth file {path}: {exc}") from None
    result: dict[str, Credentials] = {}
    auths = doc.get("auths") if isinstance(doc, dict) else None
    for host, item in (auths or {}).items():
        if not isinstance(item, dict):
            continue
        if item.get("auth"):
            try:
                user, _, password = base64.b64decode(item["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuthError(f"{path}: the auth entry for {host} is not base64 "
                                "of user:password") from None
        elif "username" in item:
            user, password = str(item["username"]), str(item.get("password", ""))
        else:
            continue  # credential helpers are not supported
        result[_registry_key(host)] = Credentials(user, password)
    return result


# -- auth flow ------------------------------------------------------------------------------


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


@dataclass
class _Token:
    header: str
    refresh_at: float


class _ChallengeAuth(AuthBase):
    """Adds cached credentials to a request and answers one 401 challenge per request."""

    def __init__(self, client: RegistryClient, registry: str, scope: str | None) -> None:
        self.client, self.registry, self.scope = client, registry, scope

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        header = self.client._cached_header(self.registry, self.scope)
        if header:
            request.headers["Authorization"] = header
        request.register_hook("response", self._handle_401)
        return request

    def _handle_401(self, response: requests.Response, **kwargs) -> requests.Response:
        if response.status_code != 401 or getattr(response.request, "_challenged", False):
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        header = self.client._answer_challenge(self.registry, self.scope, challenge)
        if header is None:
            return response
        response.content  # noqa: B018 - drain so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = header
        retry._challenged = True  # type: ignore[attr-defined]
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again


def _is_loopback(registry: str) -> bool:
    host = urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_retry(total: int = 5) -> Retry:
    """Back-off 0.5 s doubling to 30 s; 429 and 5xx retried, ``Retry-After`` honoured."""
    return Retry(total=total, connect=total, read=total, status=total, backoff_factor=0.5,
                 backoff_max=30, backoff_jitter=0.25,
                 status_forcelist=(429, 500, 502, 503, 504),
                 allowed_methods=frozenset({"GET", "HEAD"}),
                 respect_retry_after_header=True, raise_on_status=False)


class RegistryClient:
    """One HTTP session for all registries of a run; thread-safe token cache."""

    def __init__(self, credentials: CredentialStore | None = None, *,
                 insecure: Iterable[str] = (), retry: Retry | None = None,
                 timeout: tuple[float, float] = (10.0, 120.0),
                 blob_attempts: int = 3) -> None:
        self.credentials = credentials or CredentialStore.from_environment()
        self.insecure = {_registry_key(h) for h in insecure}
        self.timeout = timeout
        self.blob_attempts = blob_attempts
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "cvmfs-publisher-unpacker"
        adapter = HTTPAdapter(max_retries=retry or default_retry(), pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._tokens: dict[tuple[str, str | None], _Token] = {}
        self._basic: set[str] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- urls and requests ------------------------------------------------------------------

    def base_url(self, ref: ImageRef) -> str:
        """Plain HTTP only for loopback hosts or hosts the caller named as insecure."""
        plain_ok = _is_loopback(ref.registry) or _registry_key(ref.registry) in self.insecure
        if ref.scheme == "http" and not plain_ok:
            raise RegistryError(f"{ref}: plain HTTP is only used for loopback registries or "
                                "registries named as insecure")
        scheme = ref.scheme or ("http" if plain_ok else "https")
        return f"{scheme}://{ref.registry}"

    def request(self, method: str, ref: ImageRef, path: str, *, stream: bool = False,
                headers: dict[str, str] | None = None, url: str | None = None
                ) -> requests.Response:
        url = url or self.base_url(ref) + path
        scope = f"repository:{ref.repository}:pull"
        auth = _ChallengeAuth(self, ref.registry, scope)
        try:
            response = self.session.request(method, url, headers=headers, auth=auth,
                                            stream=stream, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"{method} {_safe(url)} failed: {exc}") from None
        if response.status_code == 401:
            response.close()
            raise AuthError(f"{ref.registry} refused access to {ref.repository} "
                            f"({method} {_safe(url)}: 401); check the registry credentials")
        return response

    # -- auth internals ----------------------------------------------------------------------

    def _cached_header(self, registry: str, scope: str | None) -> str | None:
        with self._lock:
            token = self._tokens.get((registry, scope))
            if token is not None and time.monotonic() < token.refresh_at:
                return token.header
            basic = registry in self._basic
        creds = self.credentials.lookup(registry) if basic else None
        return creds.basic_header() if creds else None

    def _answer_challenge(self, registry: str, scope: str | None, challenge: str
                          ) -> str | None:
        kind, params = parse_challenge(challenge)
        creds = self.credentials.lookup(registry)
        if kind == "basic":
            if creds is None:
                raise AuthError(f"{registry} wants Basic credentials and none are configured "
                                "(docker config.json auths, or DUCC_<n>_USER/PASS)")
            with self._lock:
                self._basic.add(registry)
            return creds.basic_header()
        if kind != "bearer" or "realm" not in params:
            raise AuthError(f"{registry} sent an auth challenge we do not understand: "
                            f"{kind or 'none'}")
        token = self._fetch_token(registry, params, creds)
        with self._lock:
            self._tokens[(registry, scope)] = token
        return token.header

    def _fetch_token(self, registry: str, params: dict[str, str],
                     creds: Credentials | None) -> _Token:
        realm = params["realm"]
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        started = time.monotonic()
        response = self._token_request(realm, query, creds)
        if response.status_code in (401, 403) and creds is not None:
            log.warning("token server of %s refused our credentials; trying anonymously",
                        registry)
            response = self._token_request(realm, query, None)
        if response.status_code != 200:
            raise AuthError(f"token server {_safe(realm)} for {registry} answered "
                            f"{response.status_code}")
        try:
            doc = response.json()
            value = doc.get("token") or doc.get("access_token")
            lifetime = int(doc.get("expires_in") or TOKEN_DEFAULT_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            raise AuthError(f"token server {_safe(realm)} sent no usable token") from None
        if not isinstance(value, str) or not value:
            raise AuthError(f"token server {_safe(realm)} sent no token")
        return _Token(f"Bearer {value}", started + lifetime * TOKEN_REFRESH_FRACTION)

    def _token_request(self, realm: str, query: dict[str, str], creds: Credentials | None
                       ) -> requests.Response:
        auth = (creds.username, creds.password) if creds else None
        try:
            return self.session.get(realm, params=query, auth=auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AuthError(f"token server {_safe(realm)} failed: {exc}") from None

    # -- registry operations -----------------------------------------------------------------

    def list_tags(self, ref: ImageRef) -> list[str]:
        """All tags, following ``Link: <...>; rel="next"`` pagination."""
        tags: list[str] = []
        url: str | None = self.base_url(ref) + f"/v2/{ref.repository}/tags/list"
        pages = 0
        while url and pages < 1000:
            response = self.request("GET", ref, "", url=url)
            _check(response, ref, "tags list")
            tags.extend(response.json().get("tags") or [])
            nxt = response.links.get("next", {}).get("url")
            url = requests.compat.urljoin(url, nxt) if nxt else None
            pages += 1
        return tags

    def head_manifest(self, ref: ImageRef) -> str | None:
        """The digest a tag points at now (one cheap request), or None if not reported."""
        response = self.request("HEAD", ref, f"/v2/{ref.repository}/manifests/{ref.reference}",
                                headers={"Accept": ACCEPT})
        _check(response, ref, "manifest")
        return response.headers.get("Docker-Content-Digest")

    def get_manifest(self, ref: ImageRef, reference: str | None = None
                     ) -> tuple[bytes, str, str]:
        """(body, content type, digest), the digest checked against the body."""
        reference = reference or ref.reference
        response = self.request("GET", ref, f"/v2/{ref.repository}/manifests/{reference}",
                                headers={"Accept": ACCEPT})
        _check(response, ref, "manifest")
        body = response.content
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"{ref}: manifest of {len(body)} bytes is too large")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        claimed = response.headers.get("Docker-Content-Digest", "")
        if reference.startswith("sha256:") and reference != digest:
            raise DigestMismatch(f"{ref}: manifest {reference} has digest {digest}")
        if claimed.startswith("sha256:") and claimed != digest:
            raise DigestMismatch(f"{ref}: registry says manifest digest {claimed}, "
                                 f"body hashes to {digest}")
        return body, response.headers.get("Content-Type", ""), digest

    def get_blob_bytes(self, ref: ImageRef, digest: str, limit: int = MAX_CONFIG) -> bytes:
        """A small blob (an image config) read whole and verified."""
        parts, total = [], 0
        with self.open_blob(ref, digest, None) as blob:
            while block := blob.read(READ_BLOCK):
                total += len(block)
                if total > limit:
                    raise RegistryError(f"{ref}: blob {digest} is larger than {limit} bytes")
                parts.append(block)
        return b"".join(parts)

    def open_blob(self, ref: ImageRef, digest: str, size: int | None) -> BlobReader:
        return BlobReader(self, ref, digest, size)


def _check(response: requests.Response, ref: ImageRef, what: str) -> None:
    if response.status_code in (200, 206):
        return
    detail = ""
    try:
        errors = response.json().get("errors") or []
        detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    except (ValueError, AttributeError):
        pass
    response.close()
    raise RegistryError(f"{ref}: {what} request answered {response.status_code}"
                        + (f" ({detail})" if detail else ""))


def _safe(url: str) -> str:
    """A URL for messages: no user info, no query (which may carry upload state)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}" \
           f"{parts.path}"


class BlobReader(io.RawIOBase):
    """A blob as a file object that hashes while it streams and checks the digest at EOF.

    A connection that breaks mid-blob is resumed with ``Range: bytes=<offset>-`` (registries
    serve ranges), up to ``blob_attempts`` times, so a long layer is not restarted.
    """

    def __init__(self, client: RegistryClient, ref: ImageRef, digest: str, size: int | None
                 ) -> None:
        super().__init__()
        if not digest.startswith("sha256:"):
            raise RegistryError(f"{ref}: blob digest {digest} is not sha256")
        self.client, self.ref, self.digest, self.size = client, ref, digest, size
        self.hash = hashlib.sha256()
        self.offset = 0
        self.attempts = 0
        self.verified = False
        self.response: requests.Response | None = None
        self._open()

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else None
        response = self.client.request("GET", self.ref,
                                       f"/v2/{self.ref.repository}/blobs/{self.digest}",
                                       stream=True, headers=headers)
        _check(response, self.ref, f"blob {self.digest}")
        if self.offset and response.status_code != 206:
            response.close()
            raise RegistryError(f"{self.ref}: blob {self.digest} broke off at {self.offset} "
                                "bytes and the registry cannot resume it")
        self.response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while True:
            assert self.response is not None
            try:
                data = self.response.raw.read(min(len(buffer), READ_BLOCK),
                                              decode_content=False)
                break
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._resume(exc)
        if not data:
            self._finish()
            return 0
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.offset += n
        return n

    def _resume(self, exc: Exception) -> None:
        self.attempts += 1
        if self.attempts >= self.client.blob_attempts:
            raise RegistryError(f"{self.ref}: reading blob {self.digest} failed at "
                                f"{self.offset} bytes: {exc}") from None
        log.warning("%s: blob %s broke off at %d bytes (%s); resuming", self.ref,
                    self.digest[:19], self.offset, exc)
        assert self.response is not None
        self.response.close()
        time.sleep(min(0.2 * 2 ** (self.attempts - 1), 10))
        self._open()

    def _finish(self) -> None:
        if self.verified:
            return
        actual = "sha256:" + self.hash.hexdigest()
        if self.size is not None and self.offset != self.size:
            raise DigestMismatch(f"{self.ref}: blob {self.digest} has {self.offset} bytes, "
                                 f"the manifest says {self.size}")
        if actual != self.digest:
            raise DigestMismatch(f"{self.ref}: blob {self.digest} hashes to {actual}")
        self.verified = True

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        super().close()
