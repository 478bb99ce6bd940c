"""A misbehaving proxy in front of a real registry, for retry and integrity tests.

Usage: ``python mischief.py PORT UPSTREAM MODE``. Modes:
- ``429``: every other manifest request gets 429 with ``Retry-After: 1``;
- ``corrupt``: blob bodies have one byte flipped;
- ``cut``: the first answer for each blob breaks off after half of it (Range works).
Each request is logged to stdout as one line.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP = {"connection", "transfer-encoding", "keep-alive", "content-encoding"}


def main() -> None:
    port, upstream, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _count(self, key: str) -> int:
            with lock:
                counts[key] = counts.get(key, 0) + 1
                return counts[key]

        def _forward(self, method: str) -> None:
            print(f"{method} {self.path} range={self.headers.get('Range')}", flush=True)
            n = self._count(f"{method} {self.path}")
            if mode == "429" and "/manifests/" in self.path and n % 2 == 1:
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            r = requests.request(method, upstream + self.path, headers=headers, timeout=30,
                                 allow_redirects=False)
            body = r.content
            blob = "/blobs/sha256:" in self.path and r.status_code == 200 and method == "GET"
            if mode == "corrupt" and blob and body:
                body = bytes([body[0] ^ 1]) + body[1:]
            cut = mode == "cut" and blob and n == 1 and len(body) > 2
            self.send_response(r.status_code)
            for key, value in r.headers.items():
                if key.lower() not in HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "HEAD":
                return
            if cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_HEAD(self) -> None:
            self._forward("HEAD")

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
