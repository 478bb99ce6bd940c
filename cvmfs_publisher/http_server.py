"""Serving repositories over HTTP the way a Stratum 0 web server does.

URLs are ``/cvmfs/<fqrn>/<key>``. Like upstream's Apache configuration, ``.cvmfs*`` files
get a short lifetime (so updates propagate through proxies) and content-addressed objects
a long one; no ETag or Last-Modified (Squid bugs). Only keys a client may request are
served, so nothing outside a repository (staging files, locks, other paths) is reachable.

Every answered request can be reported as one Common Log Format line to an ``access_log``
callback (the ``serve`` command prints them; ``--quiet`` turns that off); nothing here
prints.

With a web view (``serve --ui``, ``cvmfs_publisher/web``) every request whose path does not
start with ``/cvmfs/`` goes to it instead of being refused; ``/cvmfs/`` is answered exactly
as without one, so clients and browsers share a port without noticing each other.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO, Protocol

from .errors import ObjectNotFound, PublisherError, StorageError
from .storage import ObjectStream, Storage
from .storage.base import BLOCK
from .storage.key_names import is_public_key

log = logging.getLogger(__name__)

SHORT_LIFETIME = 61
LONG_LIFETIME = 259200
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def headers_for(key: str) -> dict[str, str]:
    if key.startswith(".cvmfs"):
        return {"Content-Type": "application/x-cvmfs",
                "Cache-Control": f"public, max-age={SHORT_LIFETIME}"}
    return {"Content-Type": "application/octet-stream",
            "Cache-Control": f"public, max-age={LONG_LIFETIME}"}


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range as (start, end inclusive); None if unsatisfiable or malformed."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            return None
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


class WebResponse(Protocol):
    """What a web view answers: sent as it is, then closed."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]

    def close(self) -> None: ...


class WebView(Protocol):
    def respond(self, method: str, target: str) -> WebResponse: ...


class RepositoryHandler(BaseHTTPRequestHandler):
    server_version = "cvmfs-publisher"
    sys_version = ""
    repositories: dict[str, Storage] = {}
    ui: WebView | None = None
    access_log: Callable[[str], None] | None = None
    _status: object = None
    _length = "-"

    def log_message(self, fmt: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), fmt % args)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._length = str(value)
        super().send_header(keyword, value)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Called as the status line goes out: remembered until the answer is complete."""
        self._status = getattr(code, "value", code)

    def handle_one_request(self) -> None:
        """One request; then its Common Log Format line, to ``access_log`` if set."""
        self._status, self._length = None, "-"
        super().handle_one_request()
        if self.access_log is not None and self._status is not None:
            when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
            self.access_log(f'{self.client_address[0]} - - [{when}] "{self.requestline}" '
                            f"{self._status} {self._length}")

    def do_HEAD(self) -> None:
        if self._for_ui():
            self._serve_ui(body=False)
            return
        self._serve(body=False)

    def do_GET(self) -> None:
        if self._for_ui():
            self._serve_ui(body=True)
            return
        self._serve(body=True)

    def do_POST(self) -> None:
        """Other methods: the web view refuses them itself (405); elsewhere, as before, 501."""
        if self._for_ui():
            self._drain()
            self._serve_ui(body=True)
            return
        self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_POST

    def _drain(self) -> None:
        """Read a small request body before refusing it (closing on unread bytes resets
        the connection before the client reads our answer); hang up on a large one."""
        self.close_connection = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= 1 << 16:
            self.rfile.read(length)

    def _for_ui(self) -> bool:
        if self.ui is None:
            return False
        path = urllib.parse.urlsplit(self.path).path
        return path != "/cvmfs" and not path.startswith("/cvmfs/")

    def _serve_ui(self, body: bool) -> None:
        assert self.ui is not None
        response = self.ui.respond(self.command, self.path)
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if body:
                for block in response.body:
                    self.wfile.write(block)
        except PublisherError as exc:  # the status line is out: all we can do is hang up
            log.warning("serving %s failed midway: %s", self.path, exc)
            self.close_connection = True
        except ConnectionError as exc:
            log.info("%s hung up during %s (%s)", self.address_string(), self.path,
                     exc.strerror or type(exc).__name__)
            self.close_connection = True
        finally:
            response.close()

    def _resolve(self) -> tuple[Storage, str] | None:
        raw = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw)
        parts = path.split("/")
        if len(parts) < 4 or parts[0] != "" or parts[1] != "cvmfs" or "" in parts[2:]:
            return None
        storage = self.repositories.get(parts[2])
        key = "/".join(parts[3:])
        if storage is None or ".." in parts or not is_public_key(key):
            return None
        return storage, key

    def _serve(self, body: bool) -> None:
        target = self._resolve()
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        storage, key = target
        try:
            stream = _sized(storage.open(key))
        except ObjectNotFound:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        except StorageError as exc:
            log.warning("serving %s failed: %s", key, exc)
            self.send_error(HTTPStatus.BAD_GATEWAY)
            return
        with stream:
            self._send(stream, key, body)

    def _send(self, stream: ObjectStream, key: str, body: bool) -> None:
        """Headers, then the requested bytes straight from the stream."""
        assert stream.size is not None
        start, end = self._start_response(key, stream.size)
        if not body or end < start:
            return
        try:
            stream.skip(start)
            _copy_exact(stream, self.wfile, end - start + 1)
        except StorageError as exc:  # the status line is out: all we can do is hang up
            log.warning("serving %s failed midway: %s", key, exc)
            self.close_connection = True
        except ConnectionError as exc:  # the client went away: routine for caches and clients
            log.info("%s hung up during %s (%s)", self.address_string(), key,
                     exc.strerror or type(exc).__name__)
            self.close_connection = True

    def _start_response(self, key: str, size: int) -> tuple[int, int]:
        start, end, status = 0, size - 1, HTTPStatus.OK
        header = self.headers.get("Range")
        if header is not None:
            parsed = parse_range(header, size)
            if parsed is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 0, -1
            (start, end), status = parsed, HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        for name, value in headers_for(key).items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(max(0, end - start + 1)))
        self.end_headers()
        return start, end


def _sized(stream: ObjectStream) -> ObjectStream:
    """A stream whose size is known, reading it into memory only when the backend can't tell."""
    if stream.size is not None:
        return stream
    with stream:
        data = stream.read()
    return ObjectStream(io.BytesIO(data), len(data), stream.name)


def _copy_exact(source: ObjectStream, sink: BinaryIO, length: int) -> None:
    """``length`` bytes, or fewer if the object is shorter than it said (then we hang up)."""
    remaining = length
    while remaining > 0:
        block = source.read(min(remaining, BLOCK))
        if not block:
            raise StorageError(f"{source.name} ended {remaining} bytes early")
        sink.write(block)
        remaining -= len(block)


class RepositoryServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple) -> None:
        """One log line for a connection that broke; a traceback only for our own bugs."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.info("%s: connection closed (%s)", client_address[0], error)
        else:
            log.exception("serving %s failed", client_address[0])


class RepositoryServer6(RepositoryServer):
    """The same on an IPv6 address (``--bind ::`` or ``::1``)."""

    address_family = socket.AF_INET6


def make_server(repositories: dict[str, Storage], host: str, port: int,
                ui: WebView | None = None,
                access_log: Callable[[str], None] | None = None) -> ThreadingHTTPServer:
    """A threaded server for the given ``fqrn -> storage`` map (port 0 picks a free one);
    with ``ui``, a web view answers every path outside ``/cvmfs/``; ``access_log`` gets a
    line per request. ``OSError`` if the address cannot be bound (in use, not local)."""
    handler = type("Handler", (RepositoryHandler,), {
        "repositories": dict(repositories), "ui": ui,
        "access_log": staticmethod(access_log) if access_log else None})
    server_class = RepositoryServer6 if ":" in host else RepositoryServer
    return server_class((host, port), handler)

