"""The web view's requests: route, read, answer with HTML, JSON or a file's bytes.

``WebApp.respond`` is all the HTTP server calls, for every request outside ``/cvmfs/``.
Only GET and HEAD exist (anything else is 405); nothing here can change a repository.
HTML pages carry a Content-Security-Policy that allows scripts and styles from this
server only (``script-src 'self'``), so even a name that slipped past escaping could not
run; downloads are attachments under a sandbox policy.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import logging
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

from ..engine.repository import NativeRepository
from ..errors import (
    InvalidPath,
    KeyMaterialError,
    PathNotFound,
    PublisherError,
    RepositoryNotFound,
    SignatureError,
    StorageError,
    TagError,
    UsageError,
)
from ..watch.state import AreaStatus, statuses
from . import api, render, urls

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
COMMON = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
          ("X-Frame-Options", "DENY"), ("Cross-Origin-Resource-Policy", "same-origin")]
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
ALLOWED = "GET, HEAD"


@dataclass
class Response:
    """What the server sends: a status, headers, and the body in blocks (closed after)."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes] = ()
    on_close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
        for action in self.on_close:
            action()


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_of(error: Exception) -> HTTPStatus:
    if isinstance(error, HttpError):
        return error.status
    if isinstance(error, PathNotFound | TagError):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, InvalidPath | UsageError):
        return HTTPStatus.BAD_REQUEST
    if isinstance(error, StorageError | SignatureError | KeyMaterialError | RepositoryNotFound):
        return HTTPStatus.BAD_GATEWAY  # the repository behind us is unreachable or untrusted
    return HTTPStatus.INTERNAL_SERVER_ERROR  # FormatError: damaged data


def _json(doc: object) -> bytes:
    return json.dumps(doc, indent=1, ensure_ascii=True).encode("ascii") + b"\n"


def _integer(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values and values[-1] != "" else None


class WebApp:
    """The read-only web view of some repositories (``name -> NativeRepository``)."""

    def __init__(self, repositories: dict[str, NativeRepository], *,
                 clock: Callable[[], dt.datetime] | None = None,
                 watch_statuses: Callable[[str], list[AreaStatus]] = statuses) -> None:
        self.served = {name: api.Served(name, repo) for name, repo in repositories.items()}
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.watch_statuses = watch_statuses

    # -- entry point ----------------------------------------------------------------------------

    def respond(self, method: str, target: str) -> Response:
        split = urllib.parse.urlsplit(target)
        is_api = split.path == urls.API or split.path.startswith(urls.API + "/")
        if method not in ("GET", "HEAD"):
            return self._error(HttpError(HTTPStatus.METHOD_NOT_ALLOWED,
                                         f"{method} is not allowed: this view is read-only"),
                               is_api, [("Allow", ALLOWED)])
        try:
            query = urllib.parse.parse_qs(split.query, keep_blank_values=True,
                                          max_num_fields=20)
        except ValueError:
            return self._error(HttpError(HTTPStatus.BAD_REQUEST, "too many query fields"),
                               is_api)
        try:
            parts = urls.components(split.path)
            if is_api:
                parts = parts[1:]
            return self._route(parts, query, is_api)
        except (PublisherError, HttpError, sqlite3.Error) as exc:
            status = _status_of(exc)
            if status >= 500:
                log.warning("%s %s: %s", method, target, exc)
            return self._error(exc, is_api)
        except Exception:
            log.exception("%s %s failed", method, target)
            return self._error(HttpError(HTTPStatus.INTERNAL_SERVER_ERROR,
                                         "internal error (see the server log)"), is_api)

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, parts: list[str], query: dict[str, list[str]], is_api: bool) -> Response:
        if not parts:
            return self._index(is_api)
        if parts[0] == "static" and len(parts) == 2 and not is_api:
            return self._static(parts[1])
        if parts[0] != "repos":
            raise HttpError(HTTPStatus.NOT_FOUND, "no such page")
        if len(parts) == 1:
            return self._index(is_api)
        served = self.served.get(parts[1])
        if served is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no repository {parts[1]!r} is served here")
        rest = parts[2:]
        page = rest[0] if rest else ""
        if page == "raw" and len(rest) >= 2:
            return self._raw(served, rest[1], urls.catalog_path(rest[2:]))
        view = api.View(served, self.clock())
        try:
            response = self._page(view, page, rest, query, is_api)
        except BaseException:
            view.close()
            raise
        response.on_close.append(view.close)
        return response

    def _page(self, view: api.View, page: str, rest: list[str], query: dict[str, list[str]],
              is_api: bool) -> Response:
        name = view.name
        if page == "" and len(rest) == 0:
            doc = api.overview(view, self.watch_statuses)
            return self._document(doc, is_api, "overview.html", urls.repo(name, True))
        if page == "history" and len(rest) == 1:
            doc = api.history(view)
            return self._document(doc, is_api, "history.html", urls.history(name, True))
        if page == "tree" and len(rest) == 1 and not is_api:
            # the revision picker of a page (a GET form): on to the canonical address
            spec = _one(query, "rev") or "trunk"
            path = urls.catalog_path(urls.components(_one(query, "path") or "/"))
            return self._redirect(urls.tree(name, spec, path))
        if page == "tree" and len(rest) >= 2:
            spec, path = rest[1], urls.catalog_path(rest[2:])
            doc = api.tree(view, spec, path, _integer(query, "offset", 0),
                           _integer(query, "limit", api.LISTING_LIMIT))
            directory = doc["entry"]["type"] == "dir"
            choices = [] if is_api else api.history(view)["revisions"]
            return self._document(doc, is_api, "tree.html" if directory else "file.html",
                                  urls.tree(name, spec, path, True, directory),
                                  choices=choices)
        if page == "diff" and len(rest) == 1:
            old, new = _one(query, "from"), _one(query, "to") or "trunk"
            doc = {"repository": name, "form": True}
            if old is not None:
                doc = api.diff(view, old, new)
            elif is_api:
                raise HttpError(HTTPStatus.BAD_REQUEST, "give the revision to compare with "
                                "as ?from=TAG|N (and optionally &to=TAG|N, default trunk)")
            choices = [] if is_api else api.history(view)["revisions"]
            return self._document(doc, is_api, "diff.html", urls.diff(name, old, new, True),
                                  choices=choices, old=old, new=new)
        if page == "catalogs" and len(rest) in (1, 2):
            spec = rest[1] if len(rest) == 2 else "trunk"
            by = _one(query, "by") or "entries"
            if by not in ("entries", "bytes"):
                raise HttpError(HTTPStatus.BAD_REQUEST, "by must be 'entries' or 'bytes'")
            doc = api.catalogs(view, spec)
            arcs = [] if is_api else render.sunburst.arcs(doc["catalogs"], by)
            return self._document(doc, is_api, "catalogs.html",
                                  urls.catalogs(name, spec, api=True), by=by, arcs=arcs)
        raise HttpError(HTTPStatus.NOT_FOUND, "no such page")

    # -- answers ---------------------------------------------------------------------------------

    def _document(self, doc: dict, is_api: bool, template: str, api_url: str,
                  **extra: object) -> Response:
        if is_api:
            return self._bytes(HTTPStatus.OK, _json(doc), "application/json")
        html = render.page(template, doc=doc, api_url=api_url, names=list(self.served),
                           **extra)
        return self._html(HTTPStatus.OK, html)

    def _index(self, is_api: bool) -> Response:
        items = []
        for name, served in self.served.items():
            item: dict = {"repository": name, "url": urls.repo(name),
                          "api": urls.repo(name, True)}
            try:
                view = api.View(served, self.clock())
                try:
                    manifest = view.head.manifest
                    root = view.reader.root_catalog()
                    item.update(revision=manifest.revision, published=root.last_modified,
                                published_utc=api.iso(root.last_modified),
                                whitelist_expired=view.expired, problem=None)
                finally:
                    view.close()
            except (PublisherError, sqlite3.Error) as exc:
                item.update(revision=None, published=None, published_utc=None,
                            whitelist_expired=None, problem=str(exc))
            items.append(item)
        doc = {"repositories": items}
        if is_api:
            return self._bytes(HTTPStatus.OK, _json(doc), "application/json")
        return self._html(HTTPStatus.OK, render.page("index.html", doc=doc, api_url="/api/",
                                                     names=list(self.served)))

    def _raw(self, served: api.Served, spec: str, path: str) -> Response:
        view = api.View(served, self.clock())
        try:
            entry, blocks = api.open_file(view, spec, path)
            first = next(blocks, b"")  # a damaged first object fails before the status line
        except BaseException:
            view.close()
            raise
        name = path.rsplit("/", 1)[-1]
        fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_"
                           for c in name) or "download"
        headers = [("Content-Type", "application/octet-stream"),
                   ("Content-Length", str(entry.size)),
                   ("Content-Disposition", f"attachment; filename=\"{fallback}\"; "
                                           f"filename*=UTF-8''{urls.q(name)}"),
                   ("Content-Security-Policy", "default-src 'none'; sandbox"),
                   ("Cache-Control", "no-cache"), *COMMON]

        def body() -> Iterator[bytes]:
            if first:
                yield first
            yield from blocks

        return Response(HTTPStatus.OK, headers, body(), [blocks.close, view.close])

    def _redirect(self, location: str) -> Response:
        return Response(HTTPStatus.SEE_OTHER, [("Location", location), ("Content-Length", "0"),
                                               ("Cache-Control", "no-cache"), *COMMON])

    def _static(self, name: str) -> Response:
        kind = STATIC.get(name)
        if kind is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "no such file")
        data = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(HTTPStatus.OK, [("Content-Type", kind),
                                        ("Content-Length", str(len(data))),
                                        ("Cache-Control", "public, max-age=300"), *COMMON],
                        [data])

    def _bytes(self, status: int, data: bytes, kind: str,
               extra: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, [("Content-Type", kind), ("Content-Length", str(len(data))),
                                 ("Cache-Control", "no-cache"),
                                 ("Content-Security-Policy", CSP), *COMMON, *(extra or [])],
                        [data])

    def _html(self, status: int, html: str, extra: list[tuple[str, str]] | None = None
              ) -> Response:
        return self._bytes(status, html.encode("utf-8", "surrogateescape"),
                           "text/html; charset=utf-8", extra)

    def _error(self, error: Exception, is_api: bool,
               extra: list[tuple[str, str]] | None = None) -> Response:
        status = _status_of(error)
        message = str(error)
        if isinstance(error, sqlite3.Error):
            message = f"a catalog could not be read: {error}"
        if is_api:
            doc = {"error": {"status": int(status), "reason": status.phrase,
                             "message": message}}
            return self._bytes(status, _json(doc), "application/json", extra)
        html = render.page("error.html", status=int(status), reason=status.phrase,
                           message=message, names=list(self.served), api_url=None)
        return self._html(status, html, extra)

