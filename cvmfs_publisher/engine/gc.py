"""Garbage collection: delete objects no kept revision can reach.

Kept: the current revision, every revision a named tag points at, the last
``keep_revisions`` revisions and those published at or after ``keep_since``. Automatic
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


def plan(reader: RepositoryReader, storage: Storage, keep_revisions: int,
         keep_since: dt.datetime | None) -> GcPlan:
    """What garbage collection would delete; nothing is changed."""
    roots, numbers = revisions_to_keep(reader, keep_revisions, keep_since)
    history = reader.history()
    tags = history.tags() if history is not None else []
    if history is not None:
        history.conn.close()
    dropped = []
    for tag in tags:
        if tag.root_hash in roots:
            continue
        if tag.name.startswith(GENERIC_PREFIXES):
            dropped.append(tag.name)
        else:
            roots.add(tag.root_hash)
    reachable = reachable_keys(reader.catalog, roots)
    reachable.update(key for key, _ in head_objects(reader.manifest))
    garbage = sweep_candidates(storage, reachable)
    return GcPlan(sorted(numbers), dropped, [key for key, _ in garbage],
                  sum(max(size, 0) for _, size in garbage), len(reachable))


def revisions_to_keep(reader: RepositoryReader, keep_revisions: int,
                      keep_since: dt.datetime | None) -> tuple[set[ContentHash], list[int]]:
    """Root catalogs along ``previous_revision`` from the current one that are kept."""
    kept: set[ContentHash] = set()
    numbers: list[int] = []
    since = int(keep_since.timestamp()) if keep_since else None
    current: ContentHash | None = reader.manifest.root_catalog
    position = 0
    while current is not None and current.digest != bytes(20):
        try:
            catalog = reader.catalog(current)
        except FormatError:
            break  # already collected
        if position < max(keep_revisions, 1) or (since is not None and
                                                  catalog.last_modified >= since):
            kept.add(current)
            numbers.append(catalog.revision)
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


def delete(storage: Storage, keys: list[str], progress: Callable[[int], None] | None) -> int:
    done = 0
    for key in keys:
        try:
            storage.delete(key)
        except StorageError as exc:
            log.warning("gc: could not delete %s: %s", key, exc)
            continue
        done += 1
        if progress is not None:
            progress(done)
    return done
