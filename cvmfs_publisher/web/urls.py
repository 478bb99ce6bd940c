"""The web view's URLs, built and parsed in one place.

Every HTML page has its JSON document at the same path below ``/api`` (``/repos/x/history``
and ``/api/repos/x/history``). Each path component is percent-encoded on its own, so a tag
or file name holding ``/``, ``?``, ``#``, quotes or newlines stays one component; parsing
splits the raw path first and decodes each component after, so ``%2F`` never becomes a
separator and ``%2e%2e`` is seen as ``..`` (and refused).
"""

from __future__ import annotations

import urllib.parse

from ..cvmfs.names import name_problem
from ..errors import InvalidPath

API = "/api"


def q(text: str) -> str:
    """One URL path component (or query value): everything but unreserved characters encoded."""
    return urllib.parse.quote(text, safe="", errors="surrogateescape")


def repo(name: str, api: bool = False) -> str:
    return f"{API if api else ''}/repos/{q(name)}/"


def history(name: str, api: bool = False) -> str:
    return f"{API if api else ''}/repos/{q(name)}/history"


def _repo_path(path: str) -> str:
    """A catalog path (``""`` or ``/a/b``) as encoded components."""
    return "".join("/" + q(part) for part in path.split("/")[1:]) if path else ""


def tree(name: str, rev: str, path: str = "", api: bool = False, directory: bool = True
         ) -> str:
    tail = "/" if directory else ""
    return f"{API if api else ''}/repos/{q(name)}/tree/{q(rev)}{_repo_path(path)}{tail}"


def raw(name: str, rev: str, path: str) -> str:
    """A file's bytes (a download); the same URL below ``/api`` and without it."""
    return f"{API}/repos/{q(name)}/raw/{q(rev)}{_repo_path(path)}"


def diff(name: str, old: str | None = None, new: str | None = None, api: bool = False) -> str:
    query = urllib.parse.urlencode([(k, v) for k, v in (("from", old), ("to", new))
                                    if v is not None], quote_via=urllib.parse.quote)
    return f"{API if api else ''}/repos/{q(name)}/diff" + (f"?{query}" if query else "")


def catalogs(name: str, rev: str, by: str | None = None, api: bool = False) -> str:
    tail = f"?by={q(by)}" if by else ""
    return f"{API if api else ''}/repos/{q(name)}/catalogs/{q(rev)}{tail}"


def static(name: str) -> str:
    return f"/static/{name}"


def components(raw_path: str) -> list[str]:
    """The decoded components of a request path (``/a/b/`` -> ``["a", "b"]``).

    One trailing ``/`` is allowed (directories are linked with it); any other empty
    component, ``.``, ``..``, NUL or bytes that are not UTF-8 raise ``InvalidPath``:
    nothing is normalised away, so a URL can only name what it spells. A decoded ``/`` is
    kept (a tag name may hold one); ``catalog_path`` refuses it in a repository path.
    """
    if not raw_path.startswith("/"):
        raise InvalidPath("a request path starts with '/'")
    parts = raw_path[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()
    decoded = []
    for part in parts:
        text = urllib.parse.unquote(part, errors="surrogateescape")
        problem = name_problem(text.replace("/", "-"))
        if problem is not None:
            raise InvalidPath(f"a component of the request path {problem}")
        decoded.append(text)
    return decoded


def catalog_path(parts: list[str]) -> str:
    """Decoded components as a catalog path (``[]`` is the root, ``""``); each must be a
    valid name (no ``/``, at most 255 bytes)."""
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise InvalidPath(f"a component of the repository path {problem}")
    return "".join("/" + part for part in parts)
