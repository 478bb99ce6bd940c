"""What a revision reaches: its catalogs, the objects they name, and the head's objects.

One walk for every reader that must know the whole set (garbage collection marks it,
replication copies it): catalogs are visited once each, however many revisions share
them, and file and chunk objects are read from each catalog in bulk, not row by row.
``verify`` walks the catalog tree its own way: it checks every catalog against its
parent (mountpoint rows, sizes, subtree counters), which needs the tree, not the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..cvmfs.catalog import COMPRESSION_SHIFT, HASH_SHIFT, Catalog, Flag
from ..cvmfs.compression import Compression
from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..cvmfs.manifest import Manifest
from ..errors import FormatError


def head_objects(manifest: Manifest) -> list[tuple[str, str]]:
    """(object key, what it is) of the certificate, history and meta-info."""
    named = ((manifest.certificate, Suffix.CERTIFICATE, "certificate"),
             (manifest.history, Suffix.HISTORY, "history"),
             (manifest.metainfo, Suffix.METAINFO, "meta-info"))
    return [(h.object_key(suffix), what) for h, suffix, what in named if h is not None]


def walk_catalogs(fetch: Callable[[ContentHash], Catalog], roots: Iterable[ContentHash],
                  skip: Callable[[ContentHash], bool] | None = None
                  ) -> Iterator[tuple[ContentHash, Catalog]]:
    """Every catalog below the given root catalogs, each once, parents before children.

    ``skip``: catalogs it is true for are neither fetched nor descended into (replication
    skips what a replica holds: it stores a catalog only after everything below it).
    """
    pending = list(roots)
    seen: set[ContentHash] = set()
    while pending:
        content_hash = pending.pop()
        if content_hash in seen:
            continue
        seen.add(content_hash)
        if skip is not None and skip(content_hash):
            continue
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


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A file or chunk object a catalog names, with the content size its rows promise."""

    content_hash: ContentHash
    suffix: Suffix
    size: int
    compression: Compression

    @property
    def key(self) -> str:
        return self.content_hash.object_key(self.suffix)


def catalog_objects(catalog: Catalog) -> dict[str, ObjectRef]:
    """The file and chunk objects one catalog stores in the repository, by key.

    Like ``catalog_object_keys``, plus what copying an object needs: its compression and
    the content size its rows promise (the largest, should rows disagree), which bounds
    the download. External files live elsewhere and are left out, as upstream's pull does.
    """
    external = int(Flag.EXTERNAL)
    rows = catalog.conn.execute(
        f"SELECT hash, flags, size, 0 FROM catalog WHERE hash IS NOT NULL "
        f"AND (flags & {external}) = 0 "
        f"UNION ALL SELECT c.hash, k.flags, c.size, 1 FROM chunks c JOIN catalog k "
        f"ON c.md5path_1 = k.md5path_1 AND c.md5path_2 = k.md5path_2 "
        f"WHERE (k.flags & {external}) = 0")
    found: dict[str, ObjectRef] = {}
    for digest, flags, size, is_chunk in rows:
        try:
            if type(flags) is not int or type(size) is not int or size < 0:
                raise ValueError("malformed flags or size column")
            ref = ObjectRef(ContentHash(bytes(digest), Algorithm(((flags >> HASH_SHIFT) & 7) + 1)),
                            Suffix.PARTIAL if is_chunk else Suffix.NONE, size,
                            Compression((flags >> COMPRESSION_SHIFT) & 7))
        except (TypeError, ValueError) as exc:
            raise FormatError(f"catalog {catalog.mountpoint or '/'}: an object row is malformed "
                              f"({exc})") from None
        known = found.get(ref.key)
        if known is None or known.size < size:
            found[ref.key] = ref
    return found


def reachable_keys(fetch: Callable[[ContentHash], Catalog], roots: Iterable[ContentHash]
                   ) -> set[str]:
    """Every catalog and data object key reachable from the given root catalogs."""
    keys: set[str] = set()
    for content_hash, catalog in walk_catalogs(fetch, roots):
        keys.add(content_hash.object_key(Suffix.CATALOG))
        keys.update(catalog_object_keys(catalog))
    return keys
