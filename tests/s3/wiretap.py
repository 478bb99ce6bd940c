"""A recording HTTP proxy in front of the real S3 server, for what tests must see on the wire.

The storage under test talks to the tap's endpoint; the tap writes down every request
(method, path, query, headers) and forwards it unchanged, ``Host`` included, so SigV4
signatures still verify at SeaweedFS. ``answer`` may reply in the server's place (a 503
``SlowDown``, a refusal) to show how the client takes what a real server can send but this
one will not on demand. It sees every request, whichever HTTP library the client used.
"""

from __future__ import annotations

import collections
import http.client
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "expect", "transfer-encoding", "te", "trailer",
              "upgrade", "proxy-authorization", "proxy-authenticate"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # unquoted, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case

    @property
    def operation(self) -> str:
        """The S3 API call this request is, for the calls a publish and gc make."""
        if self.method == "POST" and "delete" in self.query:
            return "DeleteObjects"
        if self.method == "GET" and "list-type" in self.query:
            return "ListObjectsV2"
        names = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
                 "DELETE": "DeleteObject", "POST": "Post"}
        return names.get(self.method, self.method)


Answer = Callable[[Seen], tuple[int, bytes] | None]


def slow_down(seen: Seen) -> tuple[int, bytes]:
    del seen
    return 503, (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                 b"<Message>Please reduce your request rate.</Message></Error>")


class Wiretap:
    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seen: list[Seen] = []
        self.answer: Answer | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.server.block_on_close = False  # pooled client connections stay open
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Wiretap:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def mark(self) -> int:
        """Where the record stands now: ``operations(since=mark())`` counts what follows."""
        with self.lock:
            return len(self.seen)

    def operations(self, since: int = 0) -> collections.Counter[str]:
        """Operation name -> requests; one on a key under ``data/`` also as "<name> data"."""
        with self.lock:
            seen = self.seen[since:]
        counts: collections.Counter[str] = collections.Counter()
        for request in seen:
            counts[request.operation] += 1
            if "/data/" in request.path:
                counts[f"{request.operation} data"] += 1
        return counts

    def record(self, seen: Seen) -> tuple[int, bytes] | None:
        with self.lock:
            self.seen.append(seen)
            answer = self.answer
        return answer(seen) if answer is not None else None


def _handler(tap: Wiretap) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
        disable_nagle_algorithm = True  # headers and body leave as separate writes

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urllib.parse.urlsplit(self.path)
            seen = Seen(self.command, urllib.parse.unquote(split.path),
                        urllib.parse.parse_qs(split.query, keep_blank_values=True),
                        {k.lower(): v for k, v in self.headers.items()})
            reply = tap.record(seen)
            if reply is not None:
                self._send(reply[0], [("Content-Type", "application/xml")], reply[1])
                return
            upstream = http.client.HTTPConnection(*tap.upstream, timeout=60)
            try:
                upstream.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        upstream.putheader(name, value)
                upstream.endheaders(body)
                response = upstream.getresponse()
                data = response.read()
                headers = [(k, v) for k, v in response.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
                self._send(response.status, headers, data,
                           response.getheader("Content-Length"))
            finally:
                upstream.close()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
                  length: str | None = None) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", length if self.command == "HEAD" and length
                             else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    return Handler
