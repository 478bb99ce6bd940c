"""The web view's HTTP contract (``serve --ui``), with the standard library's client.

Status codes, JSON shapes, 404s, no way out of a repository, no write methods, security
headers, names rendered as text, and the ``/cvmfs/`` client contract on the same port.
The repository is ``webkit.build``'s; the browser tests use the same one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import webkit
from fixturedata import FIXTURE_NAME, FIXTURE_VALID_AT
from webkit import NAME

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.storage import open_storage
from cvmfs_publisher.web import WebApp
from cvmfs_publisher.web.render import visible
from cvmfs_publisher.web.urls import q

REPO = f"/repos/{NAME}"
API = f"/api/repos/{NAME}"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> webkit.WebRepo:
    return webkit.build(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def server(web: webkit.WebRepo) -> Iterator[webkit.Server]:
    with webkit.serving(web) as running:
        yield running


class Answer:
    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = body

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> dict:
        assert self.header("Content-Type") == "application/json", self.header("Content-Type")
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def request(port: int, path: str, method: str = "GET", body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return Answer(response, response.read())
    finally:
        conn.close()


def get(server: webkit.Server, path: str, status: int = 200) -> Answer:
    answer = request(server.port, path)
    assert answer.status == status, (path, answer.status, answer.body[:500])
    return answer


def tree_url(rev: str, path: str, api: bool = True) -> str:
    return f"{API if api else REPO}/tree/{q(rev)}" + "".join(
        "/" + q(part) for part in path.split("/")[1:])


# -- documents -------------------------------------------------------------------------------


def test_index_lists_the_served_repositories(server: webkit.Server) -> None:
    for path in ("/api/", "/api", "/api/repos"):
        doc = get(server, path).json()
        assert doc == {"repositories": [{
            "repository": NAME, "url": f"/repos/{NAME}/", "api": f"/api/repos/{NAME}/",
            "revision": 4, "published": doc["repositories"][0]["published"],
            "published_utc": doc["repositories"][0]["published_utc"],
            "whitelist_expired": False, "problem": None}]}
    page = get(server, "/")
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert f'href="/repos/{NAME}/"' in page.text


def test_overview(server: webkit.Server, web: webkit.WebRepo) -> None:
    doc = get(server, f"{API}/").json()
    assert set(doc) == {"repository", "revision", "published", "published_utc", "root_hash",
                        "ttl", "garbage_collectable", "storage", "whitelist", "content",
                        "objects", "tags", "publishers", "lock"}
    head = web.repository.head()
    assert (doc["repository"], doc["revision"]) == (NAME, 4)
    assert doc["root_hash"] == str(head.manifest.root_catalog)
    assert doc["storage"]["location"] == str(web.root)
    assert doc["whitelist"]["expired"] is False and doc["whitelist"]["warning"] is False
    assert 29 * 86400 < doc["whitelist"]["seconds_left"] <= 30 * 86400
    # /sw/a/data.txt, /sw/1.0: .cvmfscatalog and flat/ (with the .cvmfscatalog of its
    # automatic split), /sw/2.0: .cvmfscatalog and new.txt, /big.bin, /links/a and b,
    # /hostile: the names and the file below SCRIPT_DIR, /users/alice, /images/busybox
    files = 1 + 1 + webkit.FLAT_FILES + 1 + 2 + 1 + 2 + len(webkit.HOSTILE) + 1 + 1 + 1
    assert doc["content"] == {"files": files, "directories": doc["content"]["directories"],
                              "symlinks": 2, "special": 1,
                              "bytes": doc["content"]["bytes"], "chunked_files": 1,
                              "catalogs": 4}
    objects = [p for p in (web.root / "data").rglob("*")
               if p.is_file() and "txn" not in p.relative_to(web.root).parts]
    assert doc["objects"] == {"count": len(objects),
                              "bytes": sum(p.stat().st_size for p in objects), "note": None}
    assert doc["tags"] == 2  # v1.0 and <b>bold</b>; generic-* and trunk* are automatic
    assert doc["lock"] is None
    publishers = {p["front_end"]: p for p in doc["publishers"]}
    assert list(publishers) == ["cli", "ci", "watch", "unpacker"]
    assert {k: p["last_publish"]["revision"] for k, p in publishers.items()} == \
        {"cli": 2, "ci": 1, "watch": 3, "unpacker": 4}
    assert publishers["ci"]["last_publish"]["message"] == "release 1.0 of sw"
    assert publishers["ci"]["last_publish"]["tag"] == "v1.0"
    assert publishers["watch"]["state"] == "error"
    assert publishers["watch"]["errors"] == [
        "alice-drop: quota of 10 files exceeded (2 failed attempts in a row)"]
    assert publishers["watch"]["areas"][0]["path"] == "/users/alice"
    assert [publishers[k]["state"] for k in ("cli", "ci", "unpacker")] == ["ok"] * 3
    html = get(server, f"{REPO}/").text
    assert "quota of 10 files exceeded" in html and 'id="whitelist-warning"' not in html


@pytest.mark.parametrize(("days", "expired"), [(25, False), (31, True)])
def test_whitelist_warning_and_expiry(web: webkit.WebRepo, days: int, expired: bool) -> None:
    """Within 7 days of expiry a warning; once expired an alert, and the pages still read."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    with webkit.serving(web, now=later) as running:
        whitelist = get(running, f"{API}/").json()["whitelist"]
        assert whitelist["warning"] is True and whitelist["expired"] is expired
        assert (whitelist["seconds_left"] < 0) is expired
        html = get(running, f"{REPO}/").text
        banner = re.search(r'<p class="banner (\w+)" id="whitelist-warning"[^>]*>([^<]*)', html)
        assert banner is not None
        assert banner.group(1) == ("bad" if expired else "warn")
        assert ("expired on" if expired else "expires on") in banner.group(2)
        assert get(running, "/api/").json()["repositories"][0]["whitelist_expired"] is expired
        assert get(running, tree_url("trunk", "/sw/a/data.txt")).json()["entry"]["size"] == 20


def test_history_with_provenance(server: webkit.Server) -> None:
    doc = get(server, f"{API}/history").json()
    assert doc["current_revision"] == 4
    revisions = doc["revisions"]
    assert [r["revision"] for r in revisions] == [4, 3, 2, 1]
    assert [r["front_end"] for r in revisions] == ["unpacker", "watch", "cli", "ci"]
    assert [r["current"] for r in revisions] == [True, False, False, False]
    assert set(revisions[0]) == {"revision", "timestamp", "published_utc", "root_hash",
                                 "current", "front_end", "tags"}
    (release,) = revisions[3]["tags"]
    assert release == {
        "name": "v1.0", "automatic": False, "description": webkit.CI_DESCRIPTION,
        "message": "release 1.0 of sw", "front_end": "ci",
        "provenance": {"signer": "0123456789ABCDEF", "git": "a" * 40, "ref": "v1.0",
                       "pipeline": "https://ci.example.org/sw/-/pipelines/42"}}
    (evil,) = revisions[2]["tags"]
    assert evil["name"] == webkit.EVIL_TAG
    assert evil["message"] == "<script>alert(2)</script>"
    assert evil["provenance"] == {"sha256": "c" * 64, "source": "javascript:alert(3)"}
    assert all(t["automatic"] and t["name"].startswith("generic")
               for r in revisions[:2] for t in r["tags"])
    html = get(server, f"{REPO}/history").text
    assert 'href="https://ci.example.org/sw/-/pipelines/42"' in html
    assert "javascript:alert(3)" in html and 'href="javascript' not in html


def test_directory_listing(server: webkit.Server) -> None:
    doc = get(server, tree_url("trunk", "/links") + "/").json()
    assert doc["revision"]["revision"] == 4 and doc["revision"]["spec"] == "trunk"
    assert doc["entry"]["type"] == "dir" and doc["entry"]["path"] == "/links"
    assert doc["catalog"]["mountpoint"] == "/" and doc["catalog"]["nested"] is False
    assert (doc["total"], doc["offset"], doc["limit"]) == (4, 0, 1000)
    entries = {e["name"]: e for e in doc["entries"]}
    assert list(entries) == ["a", "b", "latest", "pipe"]
    keys = {"name", "path", "type", "mode", "mode_string", "uid", "gid", "mtime", "mtime_utc",
            "size", "target", "device", "link_count", "hardlink_group", "nested_catalog",
            "chunked", "external", "content_hash", "hash_algorithm", "compression"}
    assert all(set(e) == keys for e in doc["entries"])
    assert entries["a"]["hardlink_group"] == entries["b"]["hardlink_group"] is not None
    assert entries["a"]["link_count"] == 2 and entries["a"]["size"] == 15
    assert entries["latest"]["type"] == "symlink" and entries["latest"]["target"] == "../sw/1.0"
    assert entries["pipe"]["type"] == "fifo" and entries["pipe"]["mode_string"] == "prw-------"
    assert get(server, tree_url("trunk", "/links")).json() == doc  # trailing slash or not


def test_paging(server: webkit.Server) -> None:
    doc = get(server, tree_url("trunk", "/sw/1.0/flat") + "/?offset=5&limit=10").json()
    names = [".cvmfscatalog", *(f"f{i:03d}" for i in range(webkit.FLAT_FILES))]
    assert doc["total"] == len(names)
    assert [e["name"] for e in doc["entries"]] == names[5:15]
    for bad in ("limit=0", "limit=10001", "offset=-1", "offset=abc"):
        error = get(server, tree_url("trunk", "/sw/1.0/flat") + f"/?{bad}", 400).json()
        assert error["error"]["status"] == 400


def test_file_details(server: webkit.Server, web: webkit.WebRepo) -> None:
    doc = get(server, tree_url("trunk", "/big.bin")).json()
    entry = doc["entry"]
    assert (entry["type"], entry["size"], entry["mode"], entry["uid"], entry["gid"]) == \
        ("file", webkit.CHUNKED_SIZE, "0640", 1234, 567)
    assert entry["mode_string"] == "-rw-r-----" and entry["chunked"] is True
    assert len(doc["chunks"]) > 1
    assert sum(c["size"] for c in doc["chunks"]) == webkit.CHUNKED_SIZE
    assert [c["offset"] for c in doc["chunks"]] == \
        [sum(c["size"] for c in doc["chunks"][:i]) for i in range(len(doc["chunks"]))]
    assert doc["hardlinks"] == [] and doc["xattrs"] == {}
    plain = get(server, tree_url("trunk", "/sw/a/data.txt")).json()
    assert plain["entry"]["content_hash"] and plain["entry"]["chunked"] is False
    assert plain["entry"]["hash_algorithm"] == "sha1" and plain["chunks"] == []
    assert get(server, tree_url("trunk", "/links/a")).json()["hardlinks"] == ["/links/b"]
    link = get(server, tree_url("trunk", "/hostile/evil-link")).json()["entry"]
    assert link["target"] == webkit.SCRIPT_TARGET and link["size"] is None


def test_nested_catalog_of_a_path(server: webkit.Server) -> None:
    catalog = get(server, tree_url("trunk", "/sw/1.0/flat/f001")).json()["catalog"]
    assert catalog["mountpoint"] == "/sw/1.0/flat" and catalog["nested"] is True
    assert catalog["rows"] == webkit.FLAT_FILES + 2  # its root row and .cvmfscatalog
    mountpoint = get(server, tree_url("trunk", "/sw/1.0")).json()
    assert mountpoint["catalog"]["mountpoint"] == "/sw/1.0"
    assert mountpoint["entry"]["nested_catalog"] is True
    listing = get(server, tree_url("trunk", "/sw")).json()
    assert {e["name"]: e["nested_catalog"] for e in listing["entries"]} == \
        {"1.0": True, "2.0": True, "a": False}
    assert listing["catalog"]["mountpoint"] == "/"


def test_any_revision(server: webkit.Server, web: webkit.WebRepo) -> None:
    for rev in ("v1.0", "1"):
        doc = get(server, tree_url(rev, "/sw/a/data.txt")).json()
        assert doc["revision"]["revision"] == 1 and doc["entry"]["size"] == 12
    old = get(server, tree_url("v1.0", "/")).json()
    assert "removed-later.txt" in [e["name"] for e in old["entries"]]
    assert "removed-later.txt" not in [e["name"] for e in
                                       get(server, tree_url("trunk", "/")).json()["entries"]]
    evil = get(server, tree_url(webkit.EVIL_TAG, "/sw")).json()
    assert evil["revision"] == {**evil["revision"], "revision": 2, "tag": webkit.EVIL_TAG,
                                "spec": webkit.EVIL_TAG}
    assert get(server, tree_url("4", "/")).json()["revision"]["tag"] is None


def test_download(server: webkit.Server, web: webkit.WebRepo) -> None:
    for path, data in web.files.items():
        answer = get(server, f"{API}/raw/trunk" + "".join("/" + q(p) for p in
                                                          path.split("/")[1:]))
        assert answer.body == data, path
        assert answer.header("Content-Length") == str(len(data))
        assert answer.header("Content-Type") == "application/octet-stream"
        name = path.rsplit("/", 1)[1]
        assert answer.header("Content-Disposition") == \
            f"attachment; filename=\"{name}\"; filename*=UTF-8''{q(name)}"
        assert answer.header("Content-Security-Policy") == "default-src 'none'; sandbox"
        assert answer.header("X-Content-Type-Options") == "nosniff"
    old = get(server, f"{API}/raw/v1.0/removed-later.txt")
    assert old.body == web.old_files["/removed-later.txt"]
    head = request(server.port, f"{API}/raw/trunk/big.bin", "HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.header("Content-Length") == str(webkit.CHUNKED_SIZE)
    hostile = get(server, f"{API}/raw/trunk/hostile/{q(webkit.HOSTILE[2])}")
    assert hostile.body == webkit.HOSTILE[2].encode()
    assert "\n" not in hostile.header("Content-Disposition")
    assert hostile.header("Content-Disposition").startswith('attachment; filename="line1_line2"')
    for path in ("/links", "/links/latest", "/links/pipe", "/nothing"):
        error = get(server, f"{API}/raw/trunk{path}", 404).json()
        assert error["error"]["status"] == 404
    assert get(server, f"{API}/raw/trunk/removed-later.txt", 404)


def test_diff(server: webkit.Server) -> None:
    doc = get(server, f"{API}/diff?from=v1.0&to=trunk").json()
    assert set(doc) == {"repository", "from", "to", "summary", "changes", "truncated", "limit"}
    assert (doc["from"]["revision"], doc["to"]["revision"]) == (1, 4)
    changes = {c["path"]: c for c in doc["changes"]}
    assert {p: c["change"] for p, c in changes.items()} == {
        "/images": "added", "/removed-later.txt": "removed", "/sw": "changed",
        "/sw/2.0": "added", "/sw/a/data.txt": "changed", "/users": "added"}
    data = changes["/sw/a/data.txt"]
    assert (data["old_size"], data["new_size"], data["size_delta"]) == (12, 20, 8)
    assert set(data["fields"]) >= {"size", "content"} and data["type"] == "file"
    assert (changes["/removed-later.txt"]["old_size"], changes["/users"]["new_size"]) == (19, 8)
    assert changes["/sw/2.0"]["new_size"] == 11  # a nested catalog: from its counters
    assert changes["/sw"]["old_size"] is None and changes["/sw"]["fields"] == ["mtime"]
    assert doc["summary"] == {"added": 3, "removed": 1, "changed": 2,
                              "bytes_added": 10 + 11 + 8 + 8, "bytes_removed": 19}
    assert doc["truncated"] is False
    assert get(server, f"{API}/diff?from=2").json()["to"]["spec"] == "trunk"
    same = get(server, f"{API}/diff?from=4&to=trunk").json()
    assert same["changes"] == [] and same["summary"]["added"] == 0
    assert get(server, f"{API}/diff", 400).json()["error"]["status"] == 400
    assert get(server, f"{API}/diff?from=nope", 404).json()["error"]["status"] == 404
    html = get(server, f"{REPO}/diff?from=v1.0").text
    assert 'id="changes"' in html and "/removed-later.txt" in html
    assert 'id="changes"' not in get(server, f"{REPO}/diff").text  # only the form


def test_catalog_map(server: webkit.Server) -> None:
    doc = get(server, f"{API}/catalogs/trunk").json()
    assert doc["limits"] == {"autocatalog_max": webkit.AUTOCATALOG_MAX,
                             "autocatalog_min": webkit.AUTOCATALOG_MIN}
    catalogs = {c["mountpoint"]: c for c in doc["catalogs"]}
    assert list(catalogs) == ["/", "/sw/1.0", "/sw/1.0/flat", "/sw/2.0"]
    assert {m: c["flags"] for m, c in catalogs.items()} == {
        "/": [], "/sw/1.0": ["below_min"], "/sw/1.0/flat": ["above_max"],
        "/sw/2.0": ["below_min"]}
    assert doc["flagged"] == 3
    assert catalogs["/sw/1.0/flat"]["rows"] > webkit.AUTOCATALOG_MAX
    assert catalogs["/"]["subtree_rows"] == sum(c["rows"] for c in doc["catalogs"])
    assert catalogs["/"]["subtree_bytes"] == sum(c["bytes"] for c in doc["catalogs"])
    assert [(c["depth"], c["parent"]) for c in doc["catalogs"]] == \
        [(0, None), (1, "/"), (2, "/sw/1.0"), (1, "/")]
    assert catalogs["/"]["children"] == ["/sw/1.0", "/sw/2.0"]
    old = get(server, f"{API}/catalogs/v1.0").json()
    assert [c["mountpoint"] for c in old["catalogs"]] == ["/", "/sw/1.0", "/sw/1.0/flat"]
    for by, drawn in (("entries", 4), ("bytes", 3)):  # /sw/2.0's 11 B are too thin to draw
        html = get(server, f"{REPO}/catalogs/trunk?by={by}").text
        svg = html[html.index("<svg"):html.index("</svg>")]
        assert svg.count("<path ") == drawn
        assert svg.count('class="flagged"') == drawn - 1
        assert html.count('<tr id="catalog-') == 4  # the table lists every catalog
    assert get(server, f"{REPO}/catalogs/trunk?by=colour", 400)
    assert get(server, f"{REPO}/catalogs").text.count("<path ") == 4  # trunk by default


# -- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/nothing", "/repos/other.example.org/", "/api/repos/other.example.org/history",
    f"{API}/nothing", f"{API}/history/more", f"{API}/tree/nope/", f"{API}/tree/99/",
    f"{API}/tree/trunk/nothing", f"{API}/tree/trunk/sw/a/data.txt/below",
    f"{API}/catalogs/nope", "/static/nothing.js", "/api/static/app.js",
])
def test_not_found(server: webkit.Server, path: str) -> None:
    answer = get(server, path, 404)
    if path.startswith("/api/"):
        error = answer.json()["error"]
        assert (error["status"], error["reason"]) == (404, "Not Found") and error["message"]
    else:
        assert answer.header("Content-Type") == "text/html; charset=utf-8"
        assert "404 Not Found" in answer.text


@pytest.mark.parametrize("path", [
    f"{API}/tree/trunk/../../../etc/passwd",
    f"{API}/tree/trunk/sw/../../etc/passwd",
    f"{API}/tree/trunk/%2e%2e/%2e%2e/etc/passwd",
    f"{API}/tree/trunk/sw%2f..%2f..%2fetc%2fpasswd",
    f"{API}/tree/trunk/./sw",
    f"{API}/tree/trunk//etc/passwd",
    f"{API}/tree/trunk/sw%00/a",
    f"{API}/tree/trunk/%ff%fe",
    f"{API}/raw/trunk/../../etc/passwd",
    f"{API}/raw/trunk/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    f"{API}/raw/%2e%2e/sw/a/data.txt",
    "/api/repos/%2e%2e/tree/trunk/",
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
    f"{REPO}/tree/trunk/..", f"{REPO}/tree?path=/../../etc&rev=trunk",
    "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
])
def test_no_path_escape(server: webkit.Server, path: str) -> None:
    answer = request(server.port, path)
    assert answer.status in (400, 404), (path, answer.status)
    assert b"root:" not in answer.body and b"import" not in answer.body
    assert answer.header("Location") is None


def test_bad_requests_are_400(server: webkit.Server) -> None:
    error = get(server, f"{API}/tree/trunk/%2e%2e/etc", 400).json()["error"]
    assert error["status"] == 400 and "'..'" in error["message"]
    assert get(server, f"{API}/tree/trunk/a%2Fb", 400)
    assert get(server, f"{API}/tree/trunk/{'x' * 256}", 400)
    assert get(server, f"{API}/tree/trunk/?" + "&".join(f"k{i}=1" for i in range(30)), 400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_no_write_methods(server: webkit.Server, web: webkit.WebRepo, method: str) -> None:
    manifest = (web.root / ".cvmfspublished").read_bytes()
    for path in ("/", f"{REPO}/", f"{API}/", f"{API}/tree/trunk/sw/a/data.txt",
                 f"{API}/raw/trunk/sw/a/data.txt", "/static/app.js", "/anything"):
        answer = request(server.port, path, method, body=b"x=1")
        assert answer.status == 405, (method, path, answer.status)
        assert answer.header("Allow") == "GET, HEAD"
    # below /cvmfs/ exactly as without the web view
    assert request(server.port, f"/cvmfs/{NAME}/.cvmfspublished", method).status == 501
    assert (web.root / ".cvmfspublished").read_bytes() == manifest


def test_head_matches_get(server: webkit.Server) -> None:
    for path in ("/", f"{REPO}/", f"{API}/history", "/static/style.css"):
        full, head = request(server.port, path), request(server.port, path, "HEAD")
        assert (head.status, head.body) == (full.status, b"")
        assert head.header("Content-Length") == full.header("Content-Length") == \
            str(len(full.body))


PAGES = ["/", f"{REPO}/", f"{REPO}/history", f"{REPO}/tree/trunk/",
         f"{REPO}/tree/trunk/hostile/", f"{REPO}/tree/trunk/links/a",
         f"{REPO}/tree/trunk/big.bin", f"{REPO}/tree/trunk/hostile/evil-link",
         f"{REPO}/tree/{q(webkit.EVIL_TAG)}/hostile/{q(webkit.SCRIPT_DIR)}/{q(webkit.SCRIPT_FILE)}",
         f"{REPO}/diff", f"{REPO}/diff?from=v1.0", f"{REPO}/catalogs/trunk", "/nothing"]


@pytest.mark.parametrize("path", PAGES)
def test_security_headers(server: webkit.Server, path: str) -> None:
    answer = request(server.port, path)
    csp = answer.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("Content-Type") == "text/html; charset=utf-8"
    assert get(server, f"{API}/").header("X-Content-Type-Options") == "nosniff"


class Markup(HTMLParser):
    """Every element and attribute of a page, to find anything a name could have injected."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("path", PAGES)
def test_pages_hold_no_injected_markup(server: webkit.Server, path: str) -> None:
    parser = Markup()
    parser.feed(request(server.port, path).text)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"img", "b", "iframe", "object", "embed", "style", "base"}, tags
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"src": "/static/app.js", "defer": None}]
    for tag, attrs in parser.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        for name in ("href", "src", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:text")), (tag, attrs)


def test_hostile_names_are_text(server: webkit.Server) -> None:
    listing = get(server, tree_url("trunk", "/hostile")).json()
    assert sorted(e["name"] for e in listing["entries"]) == \
        sorted([*webkit.HOSTILE, webkit.SCRIPT_DIR, "evil-link"])  # exact in JSON
    parser = Markup()
    parser.feed(get(server, f"{REPO}/tree/trunk/hostile/").text)
    text = "".join(parser.text)
    for name in webkit.HOSTILE:
        assert visible(name) in text, name
    assert visible("line1\nline2") == "line1\\nline2" and "line1\nline2" not in text
    assert visible("\x1b[31mred") == "\\x1b[31mred" and "\x1b" not in text
    assert visible("rtl-\u202egnp.exe") == "rtl-\\u202egnp.exe" and "\u202e" not in text
    assert visible(webkit.MARKUP) == webkit.MARKUP  # printable: shown exactly
    assert webkit.SCRIPT_TARGET in text
    assert visible("back\\slash") == "back\\\\slash"
    page = get(server, f"{REPO}/tree/trunk/hostile/{q(webkit.SCRIPT_DIR)}/{q(webkit.SCRIPT_FILE)}")
    assert "&lt;script&gt;alert(1)&lt;" in page.text and "<script>alert" not in page.text


# -- the same port for clients ------------------------------------------------------------------


def test_clients_and_the_web_view_share_the_port(server: webkit.Server, web: webkit.WebRepo,
                                                 cli) -> None:
    """What ``tests/test_serve.py`` checks of ``/cvmfs/``, with the web view switched on."""
    root = web.root
    published = request(server.port, f"/cvmfs/{NAME}/.cvmfspublished")
    assert published.status == 200
    assert published.body == (root / ".cvmfspublished").read_bytes()
    assert published.header("Content-Type") == "application/x-cvmfs"
    assert published.header("Cache-Control") == "public, max-age=61"
    assert published.header("Content-Security-Policy") is None  # untouched by the view
    key = next(p for p in (root / "data").rglob("*") if p.is_file() and "txn" not in
               p.parts).relative_to(root).as_posix()
    obj = request(server.port, f"/cvmfs/{NAME}/{key}")
    assert (obj.status, obj.body) == (200, (root / key).read_bytes())
    assert obj.header("Cache-Control") == "public, max-age=259200"
    for path in (f"/cvmfs/{NAME}/", f"/cvmfs/{NAME}/../../etc/passwd", "/cvmfs/", "/cvmfs",
                 f"/cvmfs/{NAME}/data/txn/publish.lock", f"/cvmfs/{NAME}/api/"):
        answer = request(server.port, path)
        assert answer.status == 404, path
        assert answer.header("Content-Security-Policy") is None, path  # not the web view
    url = server.url(f"/cvmfs/{NAME}")
    pub = root.parent / "keys" / f"{NAME}.pub"
    content = cli("cat", "/sw/a/data.txt", "--repo", url, "--key", pub)
    assert (content.code, content.out) == (0, web.files["/sw/a/data.txt"].decode())
    assert get(server, f"{REPO}/").header("Content-Type") == "text/html; charset=utf-8"


def test_serve_command_with_ui(web: webkit.WebRepo, tmp_path: Path) -> None:
    """The real command: ``serve --ui`` on loopback; without ``--ui`` no page exists."""
    pub = web.root.parent / "keys" / f"{NAME}.pub"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for ui in (True, False):
        args = [sys.executable, "-m", "cvmfs_publisher.cli", "serve", "--repo", str(web.root),
                "--fqrn", NAME, "--key", str(pub), "--port", "0", *(["--ui"] if ui else [])]
        process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/cvmfs/", line)
            assert match, line
            port = int(match.group(1))
            if ui:
                assert process.stderr.readline().strip() == f"web view at http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 20
            while True:
                try:
                    answer = request(port, "/api/")
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            assert request(port, f"/cvmfs/{NAME}/.cvmfspublished").status == 200
            if ui:
                assert answer.json()["repositories"][0]["revision"] == 4
                assert request(port, f"{REPO}/history").status == 200
            else:
                assert answer.status == 404 and request(port, "/").status == 404
                assert request(port, "/", "POST").status == 501
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_upstream_fixture(fixture_dir: Path, tmp_path: Path) -> None:
    """A repository written by cvmfs_server reads in the view like ours (as of a date in
    its whitelist's validity)."""
    storage = open_storage(str(fixture_dir / "storage"), read_only=True)
    repository = NativeRepository(storage, FIXTURE_NAME, public_keys=[
        fixture_dir / "keys" / f"{FIXTURE_NAME}.pub"],
        options=EngineOptions(cache_dir=tmp_path / "cache"))
    app = WebApp({FIXTURE_NAME: repository}, clock=lambda: FIXTURE_VALID_AT,
                 watch_statuses=lambda name: [])
    base = f"/api/repos/{FIXTURE_NAME}"

    def doc(path: str) -> dict:
        response = app.respond("GET", path)
        try:
            assert response.status == 200, (path, b"".join(response.body)[:300])
            return json.loads(b"".join(response.body))
        finally:
            response.close()

    overview = doc(f"{base}/")
    assert overview["whitelist"]["expired"] is False
    history = doc(f"{base}/history")
    assert history["revisions"][0]["revision"] == overview["revision"]
    names = [t["name"] for r in history["revisions"] for t in r["tags"]]
    assert "pkg-1.0" in names
    client_view = json.loads((fixture_dir / "client-view.json").read_text())
    files = [item for item in client_view if item["type"] == "file"]
    assert files
    for item in files:
        path = urllib.parse.quote("/" + item["path"])
        entry = doc(f"{base}/tree/trunk{path}")["entry"]
        assert (entry["size"], entry["mode"]) == (item["size"], f"{int(item['mode'], 8):04o}")
        response = app.respond("GET", f"{base}/raw/trunk{path}")
        try:
            assert hashlib.sha256(b"".join(response.body)).hexdigest() == item["sha256"]
        finally:
            response.close()
    catalogs = doc(f"{base}/catalogs/trunk")["catalogs"]
    assert catalogs[0]["mountpoint"] == "/" and catalogs[0]["subtree_rows"] >= len(client_view)
    for response in (app.respond("GET", f"/repos/{FIXTURE_NAME}/"),
                     app.respond("GET", f"/repos/{FIXTURE_NAME}/catalogs/trunk")):
        assert response.status == 200
        response.close()
