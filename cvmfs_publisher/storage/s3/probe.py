"""Whether an S3 server honours conditional writes, on which the lease and the manifest guard rely.

Some servers (and some proxies in front of them) silently ignore ``If-None-Match`` and
``If-Match`` on PutObject; then two publishers can both "get" the lease. ``init`` asks
(through ``S3Storage.check_locking``) so the user hears it before relying on the lease.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import StorageError
from .boto_errors import NOT_IMPLEMENTED_CODES, PreconditionFailed

if TYPE_CHECKING:
    from .storage import S3Storage

PROBE_PREFIX = ".cvmfs_probe_"
_HEADERS = {"ContentType": "text/plain", "CacheControl": "no-cache"}


@dataclass(frozen=True)
class ConditionalWriteSupport:
    """What a server does with ``If-None-Match: *`` and ``If-Match`` on PutObject."""

    if_none_match: bool
    if_match: bool

    @property
    def ok(self) -> bool:
        """Both are needed: creating a lease, and renewing or taking one over."""
        return self.if_none_match and self.if_match

    def describe(self) -> str:
        if self.ok:
            return "the S3 server honours conditional writes (If-None-Match, If-Match)"
        missing = [n for n, ok in (("If-None-Match", self.if_none_match),
                                   ("If-Match", self.if_match)) if not ok]
        return (f"the S3 server ignores {' and '.join(missing)} on PutObject: the publish "
                "lease cannot keep two publishers apart; run a single publisher")


def probe_conditional_writes(storage: S3Storage) -> ConditionalWriteSupport:
    """Write a probe key twice with ``If-None-Match: *``; a second success means "ignored".

    Always sends the real headers (regardless of ``conditional_writes``) and removes the
    probe, a key that ``list`` would show only while the probe runs.
    """
    storage.check_writable()
    key = PROBE_PREFIX + secrets.token_hex(8)
    try:
        if not _probe(storage, key, b"1", {"IfNoneMatch": "*"}):
            storage.upload(key, b"1", _HEADERS, acl=False)
            none_match = False
        else:
            none_match = not _probe(storage, key, b"2", {"IfNoneMatch": "*"})
        match = not _probe(storage, key, b"3", {"IfMatch": '"00000000000000000000"'})
    finally:
        with contextlib.suppress(StorageError):
            storage.delete(key)
    return ConditionalWriteSupport(none_match, match)


def _probe(storage: S3Storage, key: str, body: bytes, conditions: dict[str, str]) -> bool:
    """True if the write went through, False if refused as a precondition or unsupported."""
    try:
        storage.upload(key, body, _HEADERS, acl=False, conditions=conditions)
        return True
    except PreconditionFailed:
        return False
    except StorageError as exc:
        if any(code in str(exc) for code in NOT_IMPLEMENTED_CODES):
            return False
        raise
