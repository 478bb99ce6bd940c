"""Reading a repository the way the client does: catalogs by hash, nested on demand.

Every object is hash-checked on download. Decompressed catalogs are kept in a
content-addressed cache directory (the name is the hash, so an entry never goes stale).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..cvmfs.catalog import Catalog, DirEntry
from ..cvmfs.compression import check_and_decode
from ..cvmfs.hashes import ContentHash, Suffix
from ..cvmfs.history import History, Tag
from ..cvmfs.manifest import Manifest
from ..cvmfs.names import display, is_within
from ..errors import FormatError, ObjectNotFound, PathNotFound, TagError
from ..storage.base import Storage


class ObjectCache:
    """Decompressed catalogs and histories on local disk, keyed by their object name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def fetch(self, storage: Storage, content_hash: ContentHash, suffix: Suffix) -> Path:
        path = self.directory / f"{content_hash}{suffix.value}"
        if path.exists():
            return path
        key = content_hash.object_key(suffix)
        try:
            stored = storage.get(key)
        except ObjectNotFound:
            raise FormatError(f"object {key} is missing from {storage.location}") from None
        self._install(path, check_and_decode(stored, content_hash))
        return path

    def adopt(self, data: bytes, content_hash: ContentHash, suffix: Suffix) -> None:
        """Keep an object we just wrote, so the next publish need not fetch it."""
        path = self.directory / f"{content_hash}{suffix.value}"
        if not path.exists():
            self._install(path, data)

    def _install(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


@dataclass(frozen=True)
class Located:
    """A path resolved to the catalog that holds its row."""

    path: str
    entry: DirEntry
    catalog: Catalog


class RepositoryReader:
    def __init__(self, storage: Storage, manifest: Manifest, cache: ObjectCache) -> None:
        self.storage = storage
        self.manifest = manifest
        self.cache = cache
        self._open: dict[ContentHash, Catalog] = {}

    def catalog(self, content_hash: ContentHash) -> Catalog:
        catalog = self._open.get(content_hash)
        if catalog is None:
            path = self.cache.fetch(self.storage, content_hash, Suffix.CATALOG)
            catalog = Catalog.open(path)
            self._open[content_hash] = catalog
        return catalog

    def root_catalog(self) -> Catalog:
        return self.catalog(self.manifest.root_catalog)

    def catalog_for(self, path: str) -> Catalog:
        """The deepest catalog whose mountpoint contains ``path`` (the child for a mountpoint)."""
        catalog = self.root_catalog()
        while True:
            for ref in catalog.nested():
                if is_within(path, ref.path):
                    catalog = self.catalog(ref.content_hash)
                    break
            else:
                return catalog

    def lookup(self, path: str) -> Located | None:
        catalog = self.catalog_for(path)
        entry = catalog.lookup(path)
        return Located(path, entry, catalog) if entry is not None else None

    def require(self, path: str) -> Located:
        found = self.lookup(path)
        if found is None:
            raise PathNotFound(f"{display(path)} does not exist in {self.manifest.fqrn}")
        return found

    def listdir(self, path: str) -> list[DirEntry]:
        found = self.require(path)
        if not found.entry.is_directory:
            raise PathNotFound(f"{display(path)} is not a directory")
        return found.catalog.listing(path)

    def walk(self, top: str = "") -> Iterator[tuple[str, DirEntry]]:
        """Every entry at or below ``top``, crossing into nested catalogs; parents first."""
        found = self.require(top)
        stack = [(top, found.entry, found.catalog)]
        while stack:
            path, entry, catalog = stack.pop()
            yield path, entry
            if not entry.is_directory:
                continue
            if entry.is_mountpoint:
                catalog = self.catalog_for(path)
            children = catalog.listing(path)
            stack.extend((f"{path}/{c.name}", c, catalog) for c in reversed(children))

    def read(self, path: str) -> Iterator[bytes]:
        """A regular file's bytes, every object hash-checked like the client does."""
        found = self.require(path)
        entry = found.entry
        if not entry.is_regular:
            raise PathNotFound(f"{display(path)} is not a regular file")
        if entry.is_chunked:
            for chunk in found.catalog.chunks(path):
                yield self._object(chunk.content_hash, Suffix.PARTIAL, entry)
        elif entry.content_hash is not None:
            yield self._object(entry.content_hash, Suffix.NONE, entry)

    def _object(self, content_hash: ContentHash, suffix: Suffix, entry: DirEntry) -> bytes:
        key = content_hash.object_key(suffix)
        try:
            stored = self.storage.get(key)
        except ObjectNotFound:
            raise FormatError(f"object {key} of {entry.name} is missing") from None
        return check_and_decode(stored, content_hash, entry.compression)

    def resolve(self, spec: str | None) -> Tag:
        """A tag name, a revision number, or None/"trunk" for the current revision."""
        if spec in (None, "trunk"):
            return self.root_tag(self.manifest.root_catalog)
        tag = self.tag(spec)
        if tag is not None:
            return tag
        if spec.isdigit():
            return self._revision(int(spec))
        raise TagError(f"no tag or revision {spec!r} in {self.manifest.fqrn}")

    def tag(self, name: str) -> Tag | None:
        history = self.history()
        if history is None:
            return None
        try:
            return history.get(name)
        finally:
            history.conn.close()

    def _revision(self, revision: int) -> Tag:
        """Walk back along ``previous_revision`` from the current root catalog."""
        current: ContentHash | None = self.manifest.root_catalog
        while current is not None and current.digest != bytes(20):
            try:
                catalog = self.catalog(current)
            except FormatError:
                break  # collected by gc
            if catalog.revision == revision:
                return self.root_tag(current)
            if catalog.revision < revision:
                break
            current = catalog.previous_revision
        raise TagError(f"revision {revision} of {self.manifest.fqrn} is not available")

    def root_tag(self, root: ContentHash) -> Tag:
        """A root catalog described as a tag row (revision, time, size)."""
        catalog = self.catalog(root)
        return Tag("", root, catalog.revision, catalog.last_modified, "",
                   catalog.file.stat().st_size)

    def history(self) -> History | None:
        if self.manifest.history is None:
            return None
        path = self.cache.fetch(self.storage, self.manifest.history, Suffix.HISTORY)
        return History(path, writable=False)

    def close(self) -> None:
        for catalog in self._open.values():
            with contextlib.suppress(Exception):
                catalog.conn.close()
        self._open.clear()

