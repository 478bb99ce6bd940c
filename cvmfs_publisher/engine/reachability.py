"""What a revision reaches: its catalogs, the objects they name, and the head's objects.

One walk for every reader that must know the whole set (garbage collection marks it,
replication copies it): catalogs are visited once each, however many revisions share
them, and file and chunk objects are read from each catalog in bulk, not row by row.
``verify`` walks the catalog tree its own way: it checks every catalog against its
parent (mountpoint rows, sizes, subtree counters), which needs the tree, not the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..cvmfs.catalog import HASH_SHIFT, Catalog
from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..cvmfs.manifest import Manifest


def head_objects(manifest: Manifest) -> list[tuple[str, str]]:
    """(object key, what it is) of the certificate, history and meta-info."""
    named = ((manifest.certificate, Suffix.CERTIFICATE, "certificate"),
             (manifest.history, Suffix.HISTORY, "history"),
             (manifest.metainfo, Suffix.METAINFO, "meta-info"))
    return [(h.object_key(suffix), what) for h, suffix, what in named if h is not None]


def walk_catalogs(fetch: Callable[[ContentHash], Catalog], roots: Iterable[ContentHash]
                  ) -> Iterator[tuple[ContentHash, Catalog]]:
    """Every catalog below the given root catalogs, each once, parents before children."""
    pending = list(roots)
    seen: set[ContentHash] = set()
    while pending:
        content_hash = pending.pop()
        if content_hash in seen:
            continue
        seen.add(content_hash)
        catalog = fetch(content_hash)
        yield content_hash, catalog
        pending.extend(ref.content_hash for ref in catalog.nested())


def catalog_object_keys(catalog: Catalog) -> set[str]:
    """Keys of the file and chunk objects one catalog names."""
    keys = set()
    for digest, flags in catalog.conn.execute(
            "SELECT hash, flags FROM catalog WHERE hash IS NOT NULL"):
        algorithm = Algorithm(((flags >> HASH_SHIFT) & 7) + 1)
        keys.add(ContentHash(bytes(digest), algorithm).object_key(Suffix.NONE))
    for digest, flags in catalog.conn.execute(
            "SELECT c.hash, k.flags FROM chunks c JOIN catalog k "
            "ON c.md5path_1 = k.md5path_1 AND c.md5path_2 = k.md5path_2"):
        algorithm = Algorithm(((flags >> HASH_SHIFT) & 7) + 1)
        keys.add(ContentHash(bytes(digest), algorithm).object_key(Suffix.PARTIAL))
    return keys


def reachable_keys(fetch: Callable[[ContentHash], Catalog], roots: Iterable[ContentHash]
                   ) -> set[str]:
    """Every catalog and data object key reachable from the given root catalogs."""
    keys: set[str] = set()
    for content_hash, catalog in walk_catalogs(fetch, roots):
        keys.add(content_hash.object_key(Suffix.CATALOG))
        keys.update(catalog_object_keys(catalog))
    return keys
