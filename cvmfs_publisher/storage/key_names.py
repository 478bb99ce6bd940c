"""Which storage keys may exist at all: everything a backend accepts passes through here."""

from __future__ import annotations

import re

from ..errors import InvalidPath
from .base import MANIFEST

_OBJECT = re.compile(r"^data/[0-9a-f]{2}/[0-9a-f]{38}(?:-rmd160|-shake128)?[CHXMPL]?$")
_TOPLEVEL = re.compile(r"^\.cvmfs[A-Za-z0-9_.-]*$")
_INTERNAL = re.compile(r"^data/txn/[A-Za-z0-9_.-]+$")


def is_public_key(key: str) -> bool:
    """Keys a client or Stratum 1 may request: the ``.cvmfs*`` files and objects."""
    return bool(_TOPLEVEL.match(key) or _OBJECT.match(key))


def is_object_key(key: str) -> bool:
    """A content-addressed object: its name is its hash, so rewriting it is harmless."""
    return bool(_OBJECT.match(key))


def check_key(key: str) -> str:
    """Refuse any key that is not a repository file name, so nothing can escape the root."""
    if is_public_key(key) or _INTERNAL.match(key) or key in ("data", "data/txn"):
        return key
    raise InvalidPath(f"not a repository storage key: {key!r}")


def check_put_key(key: str) -> str:
    """``check_key`` for ``put``, which never switches the manifest: ``put_manifest`` does."""
    if key == MANIFEST:
        raise InvalidPath(f"{MANIFEST} is only replaced with put_manifest, the conditional "
                          "switch to a new revision, never with put")
    return check_key(key)
