"""Repository names and repository paths: the two kinds of names users hand us."""

from __future__ import annotations

import re

from ..errors import InvalidName, InvalidPath, PathNotFound

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_FQRN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
MAX_FQRN = 60  # cvmfs_server's is_valid_repo_name


def check_fqrn(name: str) -> str:
    """A fully qualified repository name like ``sw.example.org``."""
    if len(name) > MAX_FQRN or not _FQRN.match(name):
        raise InvalidName(
            f"{name!r} is not a valid repository name: use dot-separated labels of letters, "
            f"digits, '-' and '_' (like sw.example.org), at most {MAX_FQRN} characters"
        )
    return name


def normalize_path(path: str) -> str:
    """A user's repository path as a catalog path: ``""`` for the root, else ``/a/b``.

    Refuses ``..``, empty and ``.`` components and NUL instead of resolving them, so a path
    can never name something outside of what it spells.
    """
    if "\0" in path:
        raise InvalidPath(f"repository path {path!r} contains a NUL byte")
    parts = [p for p in path.strip().split("/") if p != ""]
    for part in parts:
        if part in (".", ".."):
            raise InvalidPath(f"repository path {path!r} may not contain '.' or '..' components")
    if parts and parts[0] == ".cvmfs":
        raise InvalidPath(f"repository path {path!r} is reserved for CVMFS itself")
    return "".join("/" + p for p in parts)


def removable_path(path: str) -> str:
    """A path a publish may remove: any but the root (an empty publish at / clears it)."""
    path = normalize_path(path)
    if path == "":
        raise PathNotFound("refusing to remove the repository root; publish an empty "
                           "directory at / to clear it")
    return path


def is_within(path: str, ancestor: str) -> bool:
    """Component-wise prefix test on catalog paths (``""`` contains everything)."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + "/")


def display(path: str) -> str:
    return path or "/"
