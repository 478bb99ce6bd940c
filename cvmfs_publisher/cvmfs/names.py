"""Repository names, repository paths and the names inside them: the rules in one place.

Every producer (directory walker, tarball members and hard-link targets, image layers,
``--path`` and ``rm``) and ``verify`` apply the rules below; ``docs/format-decisions.md``
("Names") says why each one exists.
"""

from __future__ import annotations

import re

from ..errors import InvalidName, InvalidPath, PathNotFound

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_FQRN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
MAX_FQRN = 60  # cvmfs_server's is_valid_repo_name
NAME_MAX = 255  # bytes of one path component: longer names cannot be listed by a client
SYMLINK_MAX = 4095  # bytes of a symlink target: PATH_MAX (4096) with its terminating NUL
RESERVED = ".cvmfs"  # the first component below the root belongs to CVMFS itself


def check_fqrn(name: str) -> str:
    """A fully qualified repository name like ``sw.example.org``."""
    if len(name) > MAX_FQRN or not _FQRN.match(name):
        raise InvalidName(
            f"{name!r} is not a valid repository name: use dot-separated labels of letters, "
            f"digits, '-' and '_' (like sw.example.org), at most {MAX_FQRN} characters"
        )
    return name


def shown(text: str) -> str:
    """``text`` quoted for a one-line message: bytes that are not UTF-8 (surrogate escapes
    from ``os.listdir`` or ``tarfile``) as ``\\xNN``, control characters escaped."""
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "'" + "".join(out) + "'"


def _utf8_length(text: str) -> int | None:
    """Length in UTF-8 bytes, or None for a name holding bytes that are not UTF-8."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one path component of a repository, or None if it can."""
    if name == "":
        return "is empty"
    if name in (".", ".."):
        return "is '.' or '..', which name a directory itself and its parent"
    if "/" in name:
        return "contains '/'"
    if "\0" in name:
        return "contains a NUL byte"
    length = _utf8_length(name)
    if length is None:
        return "is not valid UTF-8"
    if length > NAME_MAX:
        return f"is {length} bytes long, more than {NAME_MAX}"
    return None


def _subject(what: str, path: str | None) -> str:
    """What a message is about; the path is quoted only when a message is made (hot loops)."""
    return what if path is None else f"{what} {shown(path)}"


def check_name(name: str, what: str, path: str | None = None) -> str:
    """``name`` if it may be a path component, else InvalidPath saying ``what`` it is (and
    the ``path`` it belongs to, if given)."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidPath(f"{_subject(what, path)}: name {shown(name)} {problem}")
    return name


def check_symlink_target(target: str, what: str, path: str | None = None) -> str:
    """A symlink target a client can read back: UTF-8, no NUL, 1 to SYMLINK_MAX bytes."""
    length = _utf8_length(target)
    if length is None:
        problem = "is not valid UTF-8"
    elif "\0" in target:
        problem = "contains a NUL byte"
    elif not 0 < length <= SYMLINK_MAX:
        problem = f"is {length} bytes long (1 to {SYMLINK_MAX} allowed)"
    else:
        return target
    raise InvalidPath(f"{_subject(what, path)}: symlink target {shown(target)} {problem}")


def normalize_path(path: str) -> str:
    """A user's repository path as a catalog path: ``""`` for the root, else ``/a/b``.

    Empty components (``//``, a trailing ``/``) are dropped; ``.`` and ``..`` are refused
    instead of resolved, so a path can never name something outside of what it spells.
    """
    parts = [p for p in path.strip().split("/") if p != ""]
    for part in parts:
        check_name(part, "repository path", path)
    if parts and parts[0] == RESERVED:
        raise InvalidPath(f"repository path {shown(path)} is reserved for CVMFS itself")
    return "".join("/" + p for p in parts)


def target_path(path: str) -> str:
    """Where a publish goes: as ``normalize_path``, but the root must be spelled ``/``,
    so an empty ``--path`` (an unset variable) never replaces the whole repository."""
    if not path.strip():
        raise InvalidPath("the repository path is empty: use / to publish at the root")
    return normalize_path(path)


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
