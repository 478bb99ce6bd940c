"""A native repository: create it, open verified views of it, publish to it, re-sign it."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.catalog import Catalog
from ..cvmfs.counters import Counters, Tally
from ..cvmfs.hashes import ContentHash, Suffix
from ..cvmfs.key_material import KeySet, certificate_fingerprint
from ..cvmfs.manifest import Manifest
from ..cvmfs.whitelist import Whitelist
from ..errors import KeyMaterialError, RepositoryExists, SignatureError, UsageError
from ..storage.base import (
    MANIFEST,
    MASTER_REPLICA,
    MASTER_REPLICA_TEXT,
    WHITELIST,
    Storage,
)
from . import key_files
from .options import EngineOptions
from .reader import ObjectCache, RepositoryReader
from .trust import TrustedHead, load_certificate_object, read_manifest, verify_head

if TYPE_CHECKING:  # writing and checking load on first use: ``ls`` and ``cat`` only read
    from .gc import GcPlan
    from .transaction import Transaction
    from .verify import Report

WHITELIST_WARN_DAYS = 7
log = logging.getLogger(__name__)


@dataclass
class NativeRepository:
    """``fqrn`` may be None for a foreign repository read by location (taken from its manifest)."""

    storage: Storage
    fqrn: str | None
    keys_dir: Path | None = None
    public_keys: list[Path] = field(default_factory=list)
    options: EngineOptions = field(default_factory=EngineOptions)

    # -- trust ------------------------------------------------------------------------------

    def master_public_keys(self) -> list[rsa.RSAPublicKey]:
        paths = list(self.public_keys)
        if not paths and self.keys_dir is not None and self.fqrn:
            paths = [key_files.key_paths(self.keys_dir, self.fqrn)["pub"]]
        if not paths:
            raise KeyMaterialError("no master public key to verify the repository with "
                                   "(give --key FILE.pub)")
        return key_files.load_public_keys(paths)

    def head(self, at: dt.datetime | None = None) -> TrustedHead:
        return verify_head(self.storage, self.master_public_keys(), fqrn=self.fqrn, at=at)

    def reader(self, at: dt.datetime | None = None) -> RepositoryReader:
        head = self.head(at)
        return RepositoryReader(self.storage, head.manifest, self.cache())

    def verify(self, at: dt.datetime | None = None, *, check_data: bool = True) -> Report:
        """The full check of spec section 10; problems are listed, not raised."""
        from .verify import verify

        return verify(self.storage, self.master_public_keys(), fqrn=self.fqrn, at=at,
                      check_data=check_data, work_dir=self.options.work_dir,
                      max_object_size=self.options.max_object_size)

    def cache(self) -> ObjectCache:
        return ObjectCache(self.options.cache_dir / "objects", self.options.max_object_size)

    def _keys(self, *, master: bool = False) -> KeySet:
        if self.keys_dir is None or not self.fqrn:
            raise KeyMaterialError("this repository has no key directory configured")
        return key_files.load_keyset(self.keys_dir, self.fqrn, need_master=master)

    # -- creating ---------------------------------------------------------------------------

    def create(self, now: dt.datetime | None = None) -> Manifest:
        """Revision 0 as ``cvmfs_server mkfs`` writes it: an empty root catalog, no history."""
        if not self.fqrn or self.keys_dir is None:
            raise KeyMaterialError("creating a repository needs a name and a key directory")
        now = now or dt.datetime.now(dt.UTC)
        if self.storage.exists(MANIFEST):
            raise RepositoryExists(f"{self.storage.location} already holds a repository")
        keys = key_files.ensure_keyset(self.keys_dir, self.fqrn, now)
        owner = f"{getpass.getuser()} creating {self.fqrn}"
        with self.storage.lock(owner), self.options.scratch() as tmp:
            return self._write_initial(keys, Path(tmp), now)

    def _write_initial(self, keys: KeySet, tmp: Path, now: dt.datetime) -> Manifest:
        """The empty root catalog, the whitelist, then the head (manifest last)."""
        from .catalog_tree import root_entry
        from .head import HeadWriter
        from .pipeline import ObjectPipeline

        algorithm, stamp = self.options.algorithm, int(now.timestamp())
        owner = self.options.owner or self.options.default_owner
        catalog = Catalog.create(tmp / "root.db", "", root_entry(stamp, owner),
                                 {"revision": 0, "last_modified": stamp})
        catalog.begin()
        catalog.write_counters(Counters(Tally(dir=1)))
        catalog.close()
        data = catalog.file.read_bytes()
        objects = ObjectPipeline(self.storage, algorithm=algorithm,
                                 level=self.options.compression_level, workers=1)
        try:
            root = objects.store_now(data, Suffix.CATALOG)
            self._put_whitelist(keys, [certificate_fingerprint(keys.certificate, algorithm)],
                                now)
            self.storage.put(MASTER_REPLICA, MASTER_REPLICA_TEXT)
            head = HeadWriter(self.storage, objects.store_now, keys, self.fqrn or "",
                              algorithm, tmp, stamp)
            return head.publish(root, len(data), 0, self.options.ttl, None)
        finally:
            objects.close()

    # -- whitelist ---------------------------------------------------------------------------

    def resign(self, days: int | None = None, now: dt.datetime | None = None) -> Whitelist:
        """A fresh whitelist for the key set's certificate and the one the manifest uses."""
        now = now or dt.datetime.now(dt.UTC)
        if days is not None and days < 1:
            raise UsageError(f"a whitelist must be valid for at least one day, not {days}")
        keys = self._keys(master=True)
        algorithm = self.options.algorithm
        allowed = [certificate_fingerprint(keys.certificate, algorithm)]
        manifest, _ = read_manifest(self.storage)
        if manifest.fqrn != self.fqrn:
            raise SignatureError(f"repository name mismatch: manifest is for "
                                 f"{manifest.fqrn!r}, expected {self.fqrn!r}")
        with contextlib.suppress(SignatureError):
            current = certificate_fingerprint(load_certificate_object(self.storage, manifest),
                                              algorithm)
            if current not in allowed:
                allowed.append(current)
        return self._put_whitelist(keys, allowed, now, days)

    def _put_whitelist(self, keys: KeySet, fingerprints: list[ContentHash], now: dt.datetime,
                       days: int | None = None) -> Whitelist:
        whitelist = Whitelist.new(self.fqrn or "", tuple(fingerprints), now,
                                  days or self.options.whitelist_days)
        self.storage.put(WHITELIST, whitelist.sign(keys.master(), self.options.algorithm))
        return whitelist

    # -- publishing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(
        self, *, wait: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[Transaction]:
        """Lock, verify the current head, and hand out a transaction; abort unless committed."""
        from .transaction import Transaction

        keys = self._keys()
        owner = f"{getpass.getuser()} publishing {self.fqrn}"
        read_manifest(self.storage)  # no repository there: say so before locking creates files
        with self.storage.lock(owner, wait=wait):
            head = self.head()
            self._check_can_sign(head, keys)
            with self.options.scratch() as tmp:
                txn = Transaction(self.storage, head, keys, self.options, Path(tmp), progress)
                try:
                    yield txn
                except BaseException:
                    txn.abort()
                    raise
                else:
                    if txn.finished:
                        txn.close()
                    else:
                        txn.abort()

    def gc(self, *, keep_revisions: int = 1, keep_since: dt.datetime | None = None,
           dry_run: bool = False, progress: Callable[[int], None] | None = None,
           wait: bool = False) -> GcPlan:
        """Delete unreachable objects under the publish lock (see ``engine/gc.py``)."""
        from .gc import delete
        from .gc import plan as gc_plan

        with self.transaction(wait=wait) as txn:
            plan = gc_plan(txn.reader, self.storage, keep_revisions, keep_since)
            if dry_run or not (plan.garbage or plan.dropped_tags):
                return plan
            txn.edits.drop_for_gc(plan)
            txn.commit(message="garbage collection")
            delete(self.storage, plan.garbage, progress)
            txn.index.forget(txn.edits.reflog_drops)
        return plan

    def _check_can_sign(self, head: TrustedHead, keys: KeySet) -> None:
        fingerprint = certificate_fingerprint(keys.certificate, self.options.algorithm)
        if not head.whitelist.allows(fingerprint):
            raise SignatureError(f"the signing certificate {fingerprint.fingerprint()} is not in "
                                 "the whitelist; run 'cvmfs-publisher resign'")
        left = head.whitelist.expires - dt.datetime.now(dt.UTC)
        if left < dt.timedelta(days=WHITELIST_WARN_DAYS):
            log.warning(
                "the whitelist of %s expires in %s; run 'cvmfs-publisher resign'",
                self.fqrn, str(left).split(".")[0])

