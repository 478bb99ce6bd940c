"""The publish lock of a bucket: a lease object, since machines sharing a bucket share no kernel.

The lease, ``.cvmfs_publish_lease``, is created with a conditional write
(``If-None-Match: *``) and renewed by a background thread with ``If-Match`` on its ETag. A
lease that its holder stopped renewing (its age by the server's own clock exceeds its time
to live) may be taken over with ``If-Match``; ``break_lease`` removes any lease. While a
lease is held it remembers the manifest that was there when it was taken: the manifest is
only replaced if it is still that one, and the reflog only after checking so, so even a
publisher that lost its lease cannot overwrite another one's revision.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ...errors import ObjectNotFound, RepositoryBusy, StorageError
from ..base import MANIFEST, LockInfo
from .boto_errors import PreconditionFailed

if TYPE_CHECKING:
    from .storage import S3Storage

log = logging.getLogger(__name__)

LEASE = ".cvmfs_publish_lease"
LEASE_HEADERS = {"ContentType": "application/json", "CacheControl": "no-cache"}

# Tokens of leases this process created but failed to remove (server unreachable at the
# end of a publish). They are ours, so the next publish in this process may reclaim them.
ABANDONED: set[str] = set()

Manifest = tuple[bytes, str]  # a manifest's bytes and the ETag they were stored under


@dataclass(frozen=True)
class LeaseState:
    """A lease as read back: who, since when, and whether its holder stopped renewing it."""

    info: LockInfo
    token: str
    etag: str
    age: float  # seconds since the last write, by the server's clock
    ttl: float

    @property
    def expired(self) -> bool:
        return self.age > self.ttl

    @classmethod
    def parse(cls, body: bytes, response: Mapping[str, Any], default_ttl: float) -> LeaseState:
        try:
            data = json.loads(body)
            info = LockInfo(str(data["owner"]), str(data["host"]), int(data["pid"]),
                            float(data["created"]))
            token, ttl = str(data["token"]), float(data.get("ttl", default_ttl))
        except (ValueError, TypeError, KeyError):
            info, token, ttl = LockInfo("an unknown publisher", "?", 0, 0.0), "", default_ttl
        age = _server_age(response)
        if age is None:  # no Date header: fall back to our own clock
            age = time.time() - float(_json_field(body, "renewed", info.since))
        info = replace(info, expires=time.time() + ttl - age)
        return cls(info, token, str(response.get("ETag", "")), age, ttl)


def _server_age(response: Mapping[str, Any]) -> float | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    modified = response.get("LastModified")
    try:
        now = parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    if modified is None:
        return None
    return (now - modified).total_seconds()


def _json_field(body: bytes, name: str, default: float) -> float:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return float(json.loads(body)[name])
    return default


class Lease:
    """A held lease: renewed in the background; guards the reflog and the manifest."""

    def __init__(self, storage: S3Storage, owner: str) -> None:
        self.storage = storage
        self.owner = owner
        self.token = secrets.token_hex(16)
        self.ttl = storage.settings.lease_seconds
        self.created = time.time()
        self.etag = ""
        self.manifest: Manifest | None = None  # the one this publish started from
        self.renewed = time.monotonic()
        self.lost: str | None = None
        self.stopping = threading.Event()
        self.mutex = threading.Lock()
        self.thread: threading.Thread | None = None

    def body(self) -> bytes:
        now = time.time()
        return json.dumps({
            "owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
            "token": self.token, "created": self.created, "renewed": now,
            "expires": now + self.ttl, "ttl": self.ttl,
        }, indent=1).encode() + b"\n"

    def _write(self, **condition: Any) -> None:
        self.etag = self.storage.conditional_put(LEASE, self.body(), LEASE_HEADERS, acl=False,
                                                 **condition)
        self.renewed = time.monotonic()

    def create(self) -> None:
        self._write(if_none_match=True)

    def take_over(self, stale: LeaseState) -> None:
        """Replace an expired lease, only if it is still the very one we judged expired."""
        self._write(if_match=stale.etag)
        if stale.token in ABANDONED:
            ABANDONED.discard(stale.token)
            log.info("reclaimed the publish lease this process could not remove earlier")
            return
        log.warning("took over the expired publish lease of %s (pid %d on %s), "
                    "idle for %.0f s", stale.info.owner, stale.info.pid, stale.info.host,
                    stale.age)

    def record_manifest(self) -> None:
        """Remember which manifest we start from: only that one may be replaced."""
        try:
            self.manifest = self.storage.get_with_etag(MANIFEST)
        except ObjectNotFound:
            self.manifest = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._renew_loop, daemon=True,
                                       name=f"cvmfs-lease-{self.storage.fqrn}")
        self.thread.start()

    def _renew_loop(self) -> None:
        while not self.stopping.wait(self.ttl / 3):
            self.renew()

    def renew(self) -> None:
        with self.mutex:
            if self.lost:
                return
            try:
                self._write(if_match=self.etag)
            except PreconditionFailed:
                self.lost = "another publisher replaced or removed it"
            except StorageError as exc:
                log.warning("cannot renew the publish lease: %s", exc)
                if time.monotonic() - self.renewed > self.ttl:
                    self.lost = f"it could not be renewed for {self.ttl} s"

    def check(self) -> None:
        """Refuse to go on once the lease may belong to someone else."""
        if self.lost is None and time.monotonic() - self.renewed > self.ttl:
            self.lost = f"it was last renewed more than {self.ttl} s ago"
        if self.lost:
            raise StorageError(f"{self.storage.location}: lost the publish lease ({self.lost}); "
                               "nothing was published, run the publish again")

    def check_manifest(self) -> None:
        """Before the reflog: the lease still ours and the manifest still the one we started
        from. Check-then-act, but it keeps a publisher that lost its lease from replacing
        the reflog of the one that took over; the manifest write itself is conditional."""
        with self.mutex:
            self.check()
            current = self.storage.etag(MANIFEST)
        expected = self.manifest[1] if self.manifest is not None else None
        if expected != "" and current != expected:
            raise StorageError(self.storage.manifest_changed())

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        """The atomic switch, conditional on the manifest recorded when the lease was taken."""
        with self.mutex:
            self.check()
            self.manifest = self.storage.switch_manifest(data, previous, self.manifest)

    def release(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        with self.mutex:
            if self.lost:
                log.warning("the publish lease was lost (%s)", self.lost)
            try:
                self.storage.conditional_delete(LEASE, self.etag)
            except PreconditionFailed:
                log.warning("the publish lease was taken over before it was released")
            except StorageError as exc:
                ABANDONED.add(self.token)
                log.warning("could not remove the publish lease (%s); it expires within %d s, "
                            "or run 'cvmfs-publisher unlock --force'", exc, self.ttl)


def acquire(storage: S3Storage, owner: str, wait: bool) -> Lease:
    """Take the lease, waiting with jittered backoff (0.2 s growing to 5 s) if asked to."""
    delay, announced = 0.2, False
    while True:
        lease, holder = _try_acquire(storage, owner)
        if lease is not None:
            return lease
        message = _busy_message(storage.location, holder)
        if not wait:
            raise RepositoryBusy(message + "; retry later or use --wait")
        if not announced:
            log.info("%s; waiting", message)
            announced = True
        time.sleep(delay * random.uniform(0.7, 1.3))
        delay = min(delay * 1.6, 5.0)


def _try_acquire(storage: S3Storage, owner: str) -> tuple[Lease | None, LeaseState | None]:
    """One attempt: create the lease, or take over an expired one; else who holds it."""
    for _ in range(3):
        lease = Lease(storage, owner)
        try:
            lease.create()
            return lease, None
        except PreconditionFailed:
            pass
        current = read_lease(storage)
        if current is None:
            continue  # released between our two requests: try again at once
        if not (current.expired or current.token in ABANDONED):
            return None, current
        try:
            lease.take_over(current)
            return lease, None
        except PreconditionFailed:
            continue
    return None, read_lease(storage)


def read_lease(storage: S3Storage) -> LeaseState | None:
    """The lease as stored, its age measured by the server's clock (no clock skew)."""
    try:
        body, response = storage.fetch(LEASE)
    except ObjectNotFound:
        return None
    return LeaseState.parse(body, response, storage.settings.lease_seconds)


def break_lease(storage: S3Storage) -> LockInfo | None:
    """Remove whatever lease is there (``unlock --force``); returns what was removed."""
    for _ in range(5):
        state = read_lease(storage)
        if state is None:
            return None
        try:
            storage.conditional_delete(LEASE, state.etag)
        except PreconditionFailed:
            continue  # renewed or replaced meanwhile: remove the new one
        log.warning("removed the publish lease of %s (pid %d on %s)",
                    state.info.owner, state.info.pid, state.info.host)
        return state.info
    raise StorageError(f"{storage.location}: the publish lease keeps changing; is a publisher "
                       "still running?")


def _busy_message(location: str, state: LeaseState | None) -> str:
    if state is None:
        return f"repository {location} is busy: another publisher holds its lease"
    info = state.info
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.since))
    left = max(0, round(state.ttl - state.age))
    return (f"repository {location} is busy: {info.owner} (pid {info.pid} on {info.host}) "
            f"has been publishing since {started}; its lease expires in {left} s unless renewed")
