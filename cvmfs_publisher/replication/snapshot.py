"""One snapshot: bring a replica to the source's verified revision, manifest last.

The order, after upstream's ``cvmfs_server snapshot`` / ``swissknife pull``:

1. verify the source head (``source.read_source``): nothing is written before it passes;
2. take the replica's lock; refuse a source older than the replica or of another name;
3. write ``.cvmfs_is_snapshotting``;
4. walk the catalogs of the current revision and of every tagged revision with the
   shared reachability walk, skipping catalogs the replica already has; copy every file
   and chunk object they name (hash-checked, in parallel, skipping present ones);
5. store the new catalogs children first (by height in the catalog tree), so a catalog in
   the replica always means "everything below it is there too": that is what lets step 4
   skip whole subtrees, and what makes an interrupted run resumable;
6. history, certificate and meta-info objects, ``.cvmfs_master_replica`` (if the source
   has it), the reflog, a durability barrier, the whitelist, and the manifest LAST with
   ``put_manifest`` (conditional on the manifest the run started from);
7. ``.cvmfs_last_snapshot``, then ``.cvmfs_is_snapshotting`` is removed.

A failure or a kill anywhere before step 6's manifest leaves the replica serving its
previous revision; objects already copied are unreferenced until a later run references
them (or ``replica-gc`` removes them). The next run resumes: present objects and complete
catalogs are skipped.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.catalog import Catalog
from ..cvmfs.hashes import ContentHash, Suffix
from ..cvmfs.manifest import Manifest, parse_manifest
from ..engine.options import MAX_OBJECT_SIZE
from ..engine.reachability import catalog_objects, walk_catalogs
from ..engine.reader import CheckedObject, bounded
from ..engine.trust import SIGNED_FILE_LIMIT
from ..errors import FormatError, ObjectNotFound, PublisherError, SignatureError
from ..storage.base import MANIFEST, MASTER_REPLICA, MASTER_REPLICA_TEXT, REFLOG, WHITELIST, Storage
from .copier import ObjectCopier, Presence, Progress
from .source import SourceHead, read_source

IS_SNAPSHOTTING = ".cvmfs_is_snapshotting"
LAST_SNAPSHOT = ".cvmfs_last_snapshot"
METAINFO_LIMIT = 1 << 20
log = logging.getLogger(__name__)


@dataclass
class SnapshotResult:
    """What one snapshot did; ``objects_copied`` counts every object written to ``data/``
    (catalogs included), ``objects_skipped`` those found already there. Subtrees below a
    catalog the replica already had are not visited at all, so they count in neither."""

    repository: str
    source: str
    replica: str
    revision: int
    previous_revision: int | None
    initial: bool
    switched: bool
    catalogs_copied: int = 0
    objects_copied: int = 0
    objects_skipped: int = 0
    bytes_copied: int = 0
    tags: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def utc_stamp(now: float | None = None) -> bytes:
    """``date --utc`` as upstream writes it into the snapshot marker files."""
    return time.strftime("%a %b %e %H:%M:%S UTC %Y\n", time.gmtime(now)).encode()


def snapshot(source: Storage, replica: Storage, fqrn: str,
             master_keys: list[rsa.RSAPublicKey], *, workers: int = 8,
             at: dt.datetime | None = None, work_dir: Path | None = None,
             progress: Progress | None = None,
             max_object_size: int = MAX_OBJECT_SIZE) -> SnapshotResult:
    """Replicate the source's current revision (and its tagged ones) into ``replica``."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cvmfs-replicate-", dir=work_dir) as tmp:
        scratch = Path(tmp)
        try:
            head = read_source(source, master_keys, fqrn, at, max_object_size, scratch)
        except (SignatureError, FormatError) as exc:
            raise type(exc)(f"refused {source.location}: {exc}; nothing was written to the "
                            "replica") from None
        with replica.lock(f"{getpass.getuser()} replicating {fqrn}"):
            current = _replica_manifest(replica, fqrn)
            _check_not_older(head.manifest, current[1] if current else None, source)
            run = _Run(head, replica, scratch, workers, max_object_size, progress,
                       current)
            result = run.execute()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _replica_manifest(replica: Storage, fqrn: str) -> tuple[bytes, Manifest] | None:
    """The replica's current manifest (raw and parsed), None for a new replica."""
    try:
        with replica.open(MANIFEST) as stream:
            raw = b"".join(bounded(stream, SIGNED_FILE_LIMIT, f"{MANIFEST} of the replica"))
    except ObjectNotFound:
        return None
    manifest, _ = parse_manifest(raw)
    if manifest.fqrn != fqrn:
        raise PublisherError(f"{replica.location} holds repository {manifest.fqrn!r}, not "
                             f"{fqrn!r}: refusing to replicate into it")
    return raw, manifest


def _check_not_older(new: Manifest, old: Manifest | None, source: Storage) -> None:
    """A replica never goes back: a stale source (a lagging mirror) is refused."""
    if old is None:
        return
    if new.revision < old.revision or new.timestamp < old.timestamp:
        raise PublisherError(
            f"{source.location} serves revision {new.revision}, older than the replica's "
            f"revision {old.revision}: refusing to go back (a stale mirror?)")
    if new.revision == old.revision and new.root_catalog != old.root_catalog:
        raise PublisherError(
            f"{source.location} serves other content as revision {new.revision} than the "
            "replica has: not the same repository history; remove the replica to start over")


class _Run:
    def __init__(self, head: SourceHead, replica: Storage, scratch: Path, workers: int,
                 max_object_size: int, progress: Progress | None,
                 current: tuple[bytes, Manifest] | None) -> None:
        self.head = head
        self.source = head.storage
        self.replica = replica
        self.scratch = scratch
        self.workers = workers
        self.max_object_size = max_object_size
        self.progress = progress
        self.previous_raw = current[0] if current else None
        self.previous = current[1] if current else None
        self.promised: dict[ContentHash, int] = {}
        self.stored: dict[ContentHash, Path] = {}  # new catalogs, as stored, until written
        (scratch / "catalogs").mkdir()
        manifest = head.manifest
        self.result = SnapshotResult(
            manifest.fqrn, self.source.location, replica.location, manifest.revision,
            self.previous.revision if self.previous else None, initial=False, switched=False,
            warnings=list(head.warnings))

    # -- the sequence ---------------------------------------------------------------------------

    def execute(self) -> SnapshotResult:
        self.result.initial = not self.replica.exists(LAST_SNAPSHOT)
        # Without a manifest the replica is new or a first snapshot was interrupted: one
        # listing answers every "is it there?"; otherwise each is asked when needed.
        listed = None
        if self.previous is None and self.replica.capabilities().listable:
            listed = self.replica.list("data/")
        presence = Presence(self.replica, listed)
        self.replica.put(IS_SNAPSHOTTING, utc_stamp())
        try:
            self._copy_everything(presence)
            self._switch()
            self.replica.put(LAST_SNAPSHOT, utc_stamp())
        except BaseException as exc:
            self._remove_marker()
            if isinstance(exc, PublisherError):
                raise self._explained(exc) from None
            raise
        self.replica.delete(IS_SNAPSHOTTING)
        return self.result

    def _copy_everything(self, presence: Presence) -> None:
        manifest = self.head.manifest
        copier = ObjectCopier(self.source, self.replica, presence, self.workers, self._limit,
                              self.progress)
        try:
            roots = self._roots(presence)
            order, children = self._walk(roots, presence, copier)
            copier.wait()
            self.replica.flush()  # objects are durable before any catalog names them
            heights = _heights(order, children)
            for level in sorted(set(heights.values())):
                for content_hash in order:
                    if heights[content_hash] == level:
                        copier.put(content_hash.object_key(Suffix.CATALOG),
                                   self.stored[content_hash])
                copier.wait()
            self.result.catalogs_copied = len(order)
            if self.head.history is not None and manifest.history is not None:
                copier.put(manifest.history.object_key(Suffix.HISTORY), self.head.history)
            if manifest.certificate is not None:
                copier.copy_object(manifest.certificate, Suffix.CERTIFICATE, SIGNED_FILE_LIMIT)
            if manifest.metainfo is not None:
                copier.copy_object(manifest.metainfo, Suffix.METAINFO, METAINFO_LIMIT)
            copier.wait()
        finally:
            copier.close()
            counts = copier.counts
            self.result.objects_copied = counts.copied
            self.result.objects_skipped = counts.skipped
            self.result.bytes_copied = counts.bytes

    def _roots(self, presence: Presence) -> list[ContentHash]:
        """The current root catalog and those of the tagged revisions (upstream pulls every
        tag of the history too). A tag whose root catalog the source no longer has (swept
        by garbage collection) is skipped with a warning, as upstream does."""
        manifest = self.head.manifest
        self._promise(manifest.root_catalog, manifest.catalog_size)
        roots: list[ContentHash] = []
        seen = {manifest.root_catalog}
        for tag in self.head.tags:
            self._promise(tag.root_hash, tag.size)
            if tag.root_hash in seen:
                continue
            seen.add(tag.root_hash)
            key = tag.root_hash.object_key(Suffix.CATALOG)
            if not presence.has(key) and not self.source.exists(key):
                self.result.warnings.append(f"tag {tag.name}: its root catalog {key} is "
                                            "missing at the source; not replicated")
                continue
            roots.append(tag.root_hash)
        self.result.tags = len(self.head.tags)
        return [*roots, manifest.root_catalog]  # the walk takes the last first

    def _walk(self, roots: list[ContentHash], presence: Presence, copier: ObjectCopier
              ) -> tuple[list[ContentHash], dict[ContentHash, list[ContentHash]]]:
        """New catalogs in walk order and their children; their objects go to ``copier``."""
        order: list[ContentHash] = []
        children: dict[ContentHash, list[ContentHash]] = {}
        previous: Catalog | None = None

        def present(content_hash: ContentHash) -> bool:
            return presence.has(content_hash.object_key(Suffix.CATALOG))

        try:
            for content_hash, catalog in walk_catalogs(self._fetch_catalog, roots, present):
                if previous is not None:  # the walk has read its nested list by now
                    _close(previous)
                previous = catalog
                known = self._known_objects(catalog, presence)
                try:
                    objects = catalog_objects(catalog)
                    nested = catalog.nested()
                except sqlite3.DatabaseError as exc:
                    raise FormatError(f"catalog {content_hash.object_key(Suffix.CATALOG)} "
                                      f"cannot be read: {exc}") from None
                for key, ref in objects.items():
                    if key not in known:
                        copier.copy(ref)
                for ref in nested:
                    self._promise(ref.content_hash, ref.size)
                children[content_hash] = [ref.content_hash for ref in nested]
                order.append(content_hash)
        finally:
            if previous is not None:
                _close(previous)
        return order, children

    def _known_objects(self, catalog: Catalog, presence: Presence) -> set[str]:
        """Objects the replica is known to hold without asking: those its copy of this
        catalog's previous revision names (a catalog is only stored after its objects, and
        replica-gc deletes catalogs first). So an incremental snapshot checks and copies
        only what a changed catalog changed, not every object it names."""
        previous = catalog.previous_revision
        if previous is None or previous.digest == bytes(len(previous.digest)):
            return set()
        if not presence.has(previous.object_key(Suffix.CATALOG)):
            return set()
        path = self.scratch / f"{previous}.previous.db"
        try:
            with CheckedObject.fetch(self.replica, previous, Suffix.CATALOG,
                                     self.max_object_size) as obj, path.open("wb") as db:
                for piece in obj.content(self.max_object_size):
                    db.write(piece)
            old = Catalog.open(path)
            try:
                return set(catalog_objects(old))
            finally:
                old.conn.close()
        except (PublisherError, sqlite3.DatabaseError) as exc:  # then ask about every object
            log.warning("replica's catalog %s is unreadable (%s)", previous, exc)
            return set()
        finally:
            path.unlink(missing_ok=True)

    def _fetch_catalog(self, content_hash: ContentHash) -> Catalog:
        """A catalog from the source, hash-checked; its stored bytes wait in the scratch
        directory until everything below it is in the replica."""
        key = content_hash.object_key(Suffix.CATALOG)
        limit = self._limit(self.promised.get(content_hash))
        stored_path = self.scratch / "catalogs" / f"{content_hash}C"
        db_path = self.scratch / f"{content_hash}.db"
        try:
            with CheckedObject.fetch(self.source, content_hash, Suffix.CATALOG, limit) as obj:
                with db_path.open("wb") as db:
                    for piece in obj.content(limit):
                        db.write(piece)
                obj.spool.seek(0)
                with stored_path.open("wb") as out:
                    while block := obj.spool.read(1 << 20):
                        out.write(block)
        except ObjectNotFound:
            raise ObjectNotFound(f"catalog {key} is missing at {self.source.location}") from None
        except FormatError as exc:
            raise FormatError(f"catalog {key}: {exc}") from None
        self.stored[content_hash] = stored_path
        return Catalog.open(db_path)

    def _switch(self) -> None:
        """The head files, whitelist and manifest last (only what changed is written)."""
        manifest = self.head.manifest
        if manifest.alt_catalog_path:
            self._alternative_paths(manifest)
        if self.head.master_replica and not self.replica.exists(MASTER_REPLICA):
            self.replica.put(MASTER_REPLICA, MASTER_REPLICA_TEXT)
        if self.head.reflog is not None and self._current(REFLOG) != self.head.reflog:
            self.replica.put(REFLOG, self.head.reflog)
        self.replica.flush()
        if self._current(WHITELIST) != self.head.whitelist:
            self.replica.put(WHITELIST, self.head.whitelist)
        if self.previous_raw != self.head.raw_manifest:
            self.replica.put_manifest(self.head.raw_manifest, previous=self.previous_raw)
            self.result.switched = True

    def _alternative_paths(self, manifest: Manifest) -> None:
        """``.cvmfsalt-<hash><suffix>`` copies of the head objects, for ``A=yes`` repositories."""
        for content_hash, suffix in ((manifest.certificate, Suffix.CERTIFICATE),
                                     (manifest.root_catalog, Suffix.CATALOG),
                                     (manifest.history, Suffix.HISTORY),
                                     (manifest.metainfo, Suffix.METAINFO)):
            if content_hash is not None:
                self.replica.put(f".cvmfsalt-{content_hash}{suffix.value}",
                                 self.replica.get(content_hash.object_key(suffix)))

    # -- helpers ----------------------------------------------------------------------------------

    def _current(self, key: str) -> bytes | None:
        try:
            with self.replica.open(key) as stream:
                return b"".join(bounded(stream, self.max_object_size, key))
        except (ObjectNotFound, FormatError):
            return None

    def _promise(self, content_hash: ContentHash, size: int) -> None:
        if size > self.promised.get(content_hash, 0):
            self.promised[content_hash] = size

    def _limit(self, promised: int | None) -> int:
        """The most content bytes an object may have: its reference's promise, capped."""
        if not promised:
            return self.max_object_size
        if promised > self.max_object_size:
            raise FormatError(f"an object is promised to be {promised} bytes, more than "
                              f"max_object_size ({self.max_object_size})")
        return promised

    def _remove_marker(self) -> None:
        try:
            self.replica.delete(IS_SNAPSHOTTING)
        except Exception as exc:  # the failure being reported matters more
            log.warning("could not remove %s: %s", IS_SNAPSHOTTING, exc)

    def _explained(self, exc: PublisherError) -> PublisherError:
        """The same error, saying what state the replica is in."""
        kind = f"refused {self.source.location}: " if isinstance(exc, FormatError) else ""
        if self.result.switched:
            state = f"the replica already serves revision {self.result.revision}"
        elif self.previous is None:
            state = "the replica serves no revision yet"
        else:
            state = f"the replica still serves revision {self.previous.revision}"
        orphans = ""
        if self.result.objects_copied and not self.result.switched:
            orphans = (f"; the {self.result.objects_copied} objects copied so far are "
                       "unreferenced (harmless: the next run uses them, replica-gc removes them)")
        return type(exc)(f"{kind}{exc}; {state}{orphans}")


def _close(catalog: Catalog) -> None:
    catalog.conn.close()
    catalog.file.unlink(missing_ok=True)


def _heights(order: Iterable[ContentHash], children: dict[ContentHash, list[ContentHash]]
             ) -> dict[ContentHash, int]:
    """Each new catalog's height over the new catalogs below it (0: none): storing by
    increasing height stores every catalog after all of its children."""
    new = set(children)
    height: dict[ContentHash, int] = {}
    for start in order:
        stack = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if node in height:
                continue
            below = [c for c in children[node] if c in new]
            if expanded:
                height[node] = 1 + max((height[c] for c in below), default=-1)
            else:
                stack.append((node, True))
                stack.extend((c, False) for c in below if c not in height)
    return height
