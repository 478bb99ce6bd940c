"""Garbage collection: delete objects no kept revision can reach.

Kept: the current revision, every revision a named tag points at, the last
``keep_revisions`` revisions and those published at or after ``keep_since``; the plan
says, for each kept revision, why (``GcPlan.kept``). Automatic
``generic-*`` tags do not protect a revision (they would keep everything, which upstream
warns about too); they are dropped together with the revisions they name.

Mark and sweep: everything reachable from the kept root catalogs (catalogs, file objects,
chunks) plus the current certificate, history and meta-info is marked; every other object
in the storage is garbage, including orphans of interrupted publishes. The whole run holds
the publish lock, so a concurrent publish can neither lose objects nor see half a sweep.
The reflog loses the deleted roots and the manifest is re-signed with the same revision.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..cvmfs.hashes import ContentHash, parse_object_key
from ..errors import FormatError, StorageError
from ..storage.base import Storage
from .reachability import head_objects, reachable_keys
from .reader import RepositoryReader

log = logging.getLogger(__name__)
GENERIC_PREFIXES = ("generic-", "generic_")


@dataclass
class GcPlan:
    kept_revisions: list[int] = field(default_factory=list)
    dropped_tags: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)
    garbage_bytes: int = 0
    reachable: int = 0
    # every kept revision, newest first: {"revision", "root_hash", "timestamp", "reasons"},
    # reasons such as "current", "one of the latest 2", "published since ...", "tag stable"
    kept: list[dict] = field(default_factory=list)


def plan(reader: RepositoryReader, storage: Storage, keep_revisions: int,
         keep_since: dt.datetime | None) -> GcPlan:
    """What garbage collection would delete; nothing is changed."""
    reasons: dict[ContentHash, dict] = {}
    roots, numbers = revisions_to_keep(reader, keep_revisions, keep_since, reasons)
    history = reader.history()
    tags = history.tags() if history is not None else []
    if history is not None:
        history.conn.close()
    dropped = []
    for tag in tags:
        if tag.name.startswith(GENERIC_PREFIXES):
            if tag.root_hash not in roots:
                dropped.append(tag.name)
            continue
        roots.add(tag.root_hash)
        kept = reasons.setdefault(tag.root_hash, _kept(tag.root_hash, tag.revision,
                                                       tag.timestamp))
        kept["reasons"].append(f"tag {tag.name}")
    reachable = reachable_keys(reader.catalog, roots)
    reachable.update(key for key, _ in head_objects(reader.manifest))
    garbage = sweep_candidates(storage, reachable)
    return GcPlan(sorted(numbers), dropped, [key for key, _ in garbage],
                  sum(max(size, 0) for _, size in garbage), len(reachable),
                  sorted(reasons.values(), key=lambda k: k["revision"], reverse=True))


def _kept(root: ContentHash, revision: int, timestamp: int) -> dict:
    return {"revision": revision, "root_hash": str(root), "timestamp": timestamp,
            "reasons": []}


def revisions_to_keep(reader: RepositoryReader, keep_revisions: int,
                      keep_since: dt.datetime | None,
                      reasons: dict[ContentHash, dict] | None = None
                      ) -> tuple[set[ContentHash], list[int]]:
    """Root catalogs along ``previous_revision`` from the current one that are kept.

    ``reasons``, if given, receives for each kept root why it is kept.
    """
    kept: set[ContentHash] = set()
    numbers: list[int] = []
    since = int(keep_since.timestamp()) if keep_since else None
    current: ContentHash | None = reader.manifest.root_catalog
    position = 0
    latest = max(keep_revisions, 1)
    while current is not None and current.digest != bytes(20):
        try:
            catalog = reader.catalog(current)
        except FormatError:
            break  # already collected
        recent = since is not None and catalog.last_modified >= since
        if position < latest or recent:
            kept.add(current)
            numbers.append(catalog.revision)
            if reasons is not None:
                why = reasons.setdefault(current, _kept(current, catalog.revision,
                                                        catalog.last_modified))["reasons"]
                if position == 0:
                    why.append("current")
                if position < latest and latest > 1:
                    why.append(f"one of the latest {latest}")
                if recent:
                    assert keep_since is not None
                    why.append(f"published since {keep_since:%Y-%m-%d %H:%M} UTC")
        elif since is None or catalog.last_modified < since:
            break
        position += 1
        current = catalog.previous_revision
    return kept, numbers


def sweep_candidates(storage: Storage, reachable: set[str]) -> list[tuple[str, int]]:
    """(key, size) of every object nobody reaches; size -1 where the storage cannot tell."""
    garbage = []
    for key, size in storage.list_with_sizes("data/"):
        if key.startswith("data/txn/"):
            continue
        try:
            parse_object_key(key)
        except FormatError:
            log.warning("gc: leaving %s alone: not an object name", key)
            continue
        if key not in reachable:
            garbage.append((key, size))
    return garbage


DELETE_BATCH = 1000  # keys per ``delete_many``: one S3 DeleteObjects request


def delete(storage: Storage, keys: list[str], progress: Callable[[int], None] | None) -> int:
    """Delete in batches; a batch that fails is logged and the sweep goes on."""
    done = 0
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        try:
            storage.delete_many(batch)
        except StorageError as exc:
            log.warning("gc: could not delete all of %d objects: %s", len(batch), exc)
            continue
        done += len(batch)
        if progress is not None:
            progress(done)
    return done
