"""Garbage collection of a replica: delete objects no kept revision of it reaches.

A replica has no keys, so unlike a Stratum 0's gc it never edits the history or re-signs
the manifest: it keeps what the (verified) head says is wanted and deletes the rest.
Kept: the current revision, every revision a tag of the current history points at (all
tags, automatic ones too: the next snapshot would copy them again otherwise), and the
last ``keep_revisions`` revisions along ``previous_revision`` that the replica holds.
Garbage: revisions the source dropped from its history, orphans of interrupted or refused
snapshots.

Deletion order keeps the invariant snapshots rely on ("a catalog in the replica means
everything below it is there"): garbage catalogs go first, each before the garbage
catalogs below it, and only then the file and chunk objects. A gc stopped half-way
therefore never leaves a catalog whose subtree has holes. The run holds the replica's
lock, so no snapshot runs meanwhile.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.hashes import ContentHash, Suffix, parse_object_key
from ..engine.gc import revisions_to_keep, sweep_candidates
from ..engine.options import MAX_OBJECT_SIZE
from ..engine.reachability import head_objects, reachable_keys
from ..engine.reader import ObjectCache, RepositoryReader
from ..engine.trust import verify_head
from ..errors import PublisherError
from ..storage.base import Storage

log = logging.getLogger(__name__)


@dataclass
class ReplicaGcResult:
    repository: str
    replica: str
    revision: int
    kept_revisions: list[int] = field(default_factory=list)
    kept_tags: int = 0
    reachable: int = 0
    garbage: list[str] = field(default_factory=list)
    garbage_bytes: int = 0
    deleted: int = 0
    dry_run: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def replica_gc(replica: Storage, fqrn: str, master_keys: list[rsa.RSAPublicKey], *,
               keep_revisions: int = 1, at: dt.datetime | None = None, dry_run: bool = False,
               work_dir: Path | None = None, progress: Callable[[int], None] | None = None,
               max_object_size: int = MAX_OBJECT_SIZE) -> ReplicaGcResult:
    """Delete (or with ``dry_run`` only list) the replica's unreachable objects."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cvmfs-replica-gc-", dir=work_dir) as tmp, \
            replica.lock(f"{getpass.getuser()} collecting garbage of {fqrn}"):
        head = verify_head(replica, master_keys, fqrn=fqrn, at=at)
        reader = RepositoryReader(replica, head.manifest,
                                  ObjectCache(Path(tmp) / "objects", max_object_size))
        try:
            result = ReplicaGcResult(fqrn, replica.location, head.manifest.revision,
                                     dry_run=dry_run)
            roots, numbers = revisions_to_keep(reader, keep_revisions, None)
            result.kept_revisions = sorted(numbers)
            history = reader.history()
            tags = history.tags() if history is not None else []
            if history is not None:
                history.conn.close()
            for tag in tags:
                if tag.root_hash in roots:
                    continue
                if replica.exists(tag.root_hash.object_key(Suffix.CATALOG)):
                    roots.add(tag.root_hash)
                else:
                    result.warnings.append(f"tag {tag.name}: revision {tag.revision} is not "
                                           "in the replica")
            result.kept_tags = len(tags)
            reachable = reachable_keys(reader.catalog, roots)
            reachable.update(key for key, _ in head_objects(head.manifest))
            result.reachable = len(reachable)
            garbage = sweep_candidates(replica, reachable)
            result.garbage = deletion_order([key for key, _ in garbage], reader)
            result.garbage_bytes = sum(max(size, 0) for _, size in garbage)
            if not dry_run:
                for done, key in enumerate(result.garbage, 1):
                    replica.delete(key)  # stops at the first failure: the order matters
                    result.deleted = done
                    if progress is not None:
                        progress(done)
        finally:
            reader.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def deletion_order(keys: list[str], reader: RepositoryReader) -> list[str]:
    """Garbage catalogs first, each before the garbage catalogs it mounts, then the rest.

    A garbage catalog that cannot be read (corrupt) goes first of all: nothing can rely
    on what it says is below it.
    """
    catalogs = {}
    others = []
    for key in keys:
        content_hash, suffix = parse_object_key(key)
        if suffix is Suffix.CATALOG:
            catalogs[content_hash] = key
        else:
            others.append(key)
    children: dict[ContentHash, list[ContentHash]] = {}
    unreadable = []
    for content_hash in catalogs:
        try:
            nested = reader.catalog(content_hash).nested()
        except PublisherError as exc:
            log.info("garbage catalog %s is unreadable (%s): deleted first", content_hash, exc)
            unreadable.append(content_hash)
            continue
        children[content_hash] = [r.content_hash for r in nested if r.content_hash in catalogs]
    parents = {h: 0 for h in children}
    for below in children.values():
        for child in below:
            if child in parents:
                parents[child] += 1
    ready = [h for h, count in parents.items() if count == 0]
    ordered = list(unreadable)
    while ready:
        content_hash = ready.pop()
        ordered.append(content_hash)
        for child in children[content_hash]:
            if child in parents:
                parents[child] -= 1
                if parents[child] == 0:
                    ready.append(child)
    if len(ordered) != len(catalogs):  # impossible for content-addressed catalogs
        raise PublisherError("garbage catalogs reference each other in a cycle; not deleting")
    return [catalogs[h] for h in ordered] + others
