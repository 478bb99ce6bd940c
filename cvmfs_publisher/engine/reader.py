"""Reading a repository the way the client does: catalogs by hash, nested on demand.

Every object is hash-checked on download. Decompressed catalogs are kept in a
content-addressed cache directory (the name is the hash, so an entry never goes stale).

Nothing a repository says is held in memory whole: an object's stored bytes are counted
against what its reference promises while they are spooled and hashed, and its content
inflates in ``PIECE``-sized steps that stop as soon as it outgrows that promise (the root
catalog's ``B``, a ``nested_catalogs.size``, a file's or chunk's ``size``; never more than
the ``max_object_size`` ceiling). Memory stays O(PIECE) whatever the repository holds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from ..cvmfs.catalog import Catalog, DirEntry
from ..cvmfs.compression import PIECE, Compression, inflate, stored_bound
from ..cvmfs.hashes import ContentHash, Hasher, Suffix
from ..cvmfs.history import History, Tag
from ..cvmfs.manifest import Manifest
from ..cvmfs.names import display, is_within
from ..errors import FormatError, ObjectNotFound, PathNotFound, TagError
from ..storage.base import BLOCK, ObjectStream, Storage
from .options import MAX_OBJECT_SIZE


def bounded(stream: ObjectStream, limit: int, what: str) -> Iterator[bytes]:
    """The stream's blocks, refused as soon as it proves longer than ``limit`` bytes: by
    the size it announces before anything is read, else after at most one byte too many."""
    if stream.size is not None and stream.size > limit:
        raise FormatError(f"{what} is larger than {limit} bytes")
    total = 0
    while block := stream.read(min(BLOCK, limit + 1 - total)):
        total += len(block)
        if total > limit:
            raise FormatError(f"{what} is larger than {limit} bytes")
        yield block


def _spool() -> IO[bytes]:
    """Up to PIECE bytes in memory, beyond that a temporary file."""
    return tempfile.SpooledTemporaryFile(max_size=PIECE)


def _pieces(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    return iter(functools.partial(spool.read, PIECE), b"")


class CheckedObject:
    """One object whose stored bytes matched their content hash, spooled locally (in
    memory up to PIECE bytes); a context manager that drops the spool."""

    def __init__(self, spool: IO[bytes], compression: Compression) -> None:
        self.spool = spool
        self.stored_size = spool.tell()
        self.compression = compression

    @classmethod
    def fetch(cls, storage: Storage, content_hash: ContentHash, suffix: Suffix, limit: int,
              compression: Compression = Compression.ZLIB) -> CheckedObject:
        """Download and hash at most what content of ``limit`` bytes can take stored.

        Raises ``ObjectNotFound``, or ``FormatError`` for too many bytes or a wrong hash,
        before any of the content is inflated.
        """
        key = content_hash.object_key(suffix)
        hasher = Hasher(content_hash.algorithm)
        spool = _spool()
        try:
            with storage.open(key) as stream:
                for block in bounded(stream, stored_bound(limit, compression),
                                     f"stored object {key}"):
                    hasher.update(block)
                    spool.write(block)
            actual = hasher.result()
            if actual != content_hash:
                raise FormatError(f"object content hash is {actual}, expected {content_hash}")
        except BaseException:
            spool.close()
            raise
        return cls(spool, compression)

    def content(self, limit: int) -> Iterator[bytes]:
        """The content in pieces; ``FormatError`` once it passes ``limit`` bytes."""
        return inflate(_pieces(self.spool), limit, self.compression)

    def __enter__(self) -> CheckedObject:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.spool.close()


class ObjectCache:
    """Decompressed catalogs and histories on local disk, keyed by their object name.

    ``max_object_size`` is the reading ceiling of every object of the repository it
    serves (see ``limit``), so readers and the verifier share one setting.
    """

    def __init__(self, directory: Path, max_object_size: int = MAX_OBJECT_SIZE) -> None:
        self.directory = directory
        self.max_object_size = max_object_size
        directory.mkdir(parents=True, exist_ok=True)

    def limit(self, promised: int | None) -> int:
        """The most content bytes an object may have: what its reference promises (None:
        nothing does), and never more than the ceiling."""
        if promised is None:
            return self.max_object_size
        if not 0 <= promised <= self.max_object_size:
            raise FormatError(f"an object is promised to be {promised} bytes; this reader "
                              f"allows 0 to {self.max_object_size} (max_object_size)")
        return promised

    def fetch(self, storage: Storage, content_hash: ContentHash, suffix: Suffix,
              size: int | None = None) -> Path:
        """The object's content as a local file, at most ``size`` bytes (None: unknown)."""
        path = self.directory / f"{content_hash}{suffix.value}"
        limit = self.limit(size)
        if path.exists():
            cached = path.stat().st_size
            if cached > limit:
                raise FormatError(f"content is {cached} bytes, more than the {limit} its "
                                  "reference promises")
            return path
        key = content_hash.object_key(suffix)
        try:
            with CheckedObject.fetch(storage, content_hash, suffix, limit) as stored:
                self._install(path, stored.content(limit))
        except ObjectNotFound:
            raise FormatError(f"object {key} is missing from {storage.location}") from None
        return path

    def adopt(self, data: bytes, content_hash: ContentHash, suffix: Suffix) -> None:
        """Keep an object we just wrote, so the next publish need not fetch it."""
        path = self.directory / f"{content_hash}{suffix.value}"
        if not path.exists():
            self._install(path, (data,))

    def _install(self, path: Path, pieces: Iterable[bytes]) -> None:
        """Write then rename, so a failure halfway leaves no entry (and no temporary)."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for piece in pieces:
                    f.write(piece)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


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

    def catalog(self, content_hash: ContentHash, size: int = 0) -> Catalog:
        """A catalog by hash; ``size`` is what its reference promises (0: unknown, as for
        a manifest without ``B``, an old row, or a previous revision)."""
        catalog = self._open.get(content_hash)
        if catalog is None:
            try:
                path = self.cache.fetch(self.storage, content_hash, Suffix.CATALOG,
                                        size or None)
            except FormatError as exc:
                raise FormatError(f"catalog {content_hash}: {exc}") from None
            catalog = Catalog.open(path)
            self._open[content_hash] = catalog
        return catalog

    def root_catalog(self) -> Catalog:
        return self.catalog(self.manifest.root_catalog, self.manifest.catalog_size)

    def catalog_for(self, path: str) -> Catalog:
        """The deepest catalog whose mountpoint contains ``path`` (the child for a mountpoint)."""
        catalog = self.root_catalog()
        while True:
            for ref in catalog.nested():
                if is_within(path, ref.path):
                    catalog = self.catalog(ref.content_hash, ref.size)
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
        """A regular file's bytes, object by object.

        No byte of an object comes out before all of it checked out: stored bytes against
        the hash (as the client does), content inflated to exactly the size its catalog
        row says. So a consumer (``cat``) never writes bytes that fail the check, nor more
        than the entry's size.
        """
        found = self.require(path)
        entry = found.entry
        if not entry.is_regular:
            raise PathNotFound(f"{display(path)} is not a regular file")
        if entry.is_chunked:
            yield from self._chunks(path, entry, found.catalog)
        elif entry.content_hash is not None:
            yield from self._object(entry.content_hash, Suffix.NONE, entry.compression,
                                    entry.size, display(path))

    def _chunks(self, path: str, entry: DirEntry, catalog: Catalog) -> Iterator[bytes]:
        """Chunks in order; their rows must tile exactly the entry's size."""
        offset = 0
        for chunk in catalog.chunks(path):
            if chunk.offset != offset or offset + chunk.size > entry.size:
                raise FormatError(f"{display(path)}: chunks do not tile its {entry.size} "
                                  f"bytes (chunk at {chunk.offset}, expected {offset})")
            yield from self._object(chunk.content_hash, Suffix.PARTIAL, entry.compression,
                                    chunk.size, f"{display(path)} chunk at {chunk.offset}")
            offset += chunk.size
        if offset != entry.size:
            raise FormatError(f"{display(path)}: chunks end at {offset}, its size is "
                              f"{entry.size}")

    def _object(self, content_hash: ContentHash, suffix: Suffix, compression: Compression,
                size: int, what: str) -> Iterator[bytes]:
        """One object's content, of exactly ``size`` bytes, held in a spool until checked."""
        key = content_hash.object_key(suffix)
        with _spool() as content:
            try:
                limit = self.cache.limit(size)
                with CheckedObject.fetch(self.storage, content_hash, suffix, limit,
                                         compression) as stored:
                    for piece in stored.content(limit):
                        content.write(piece)
            except ObjectNotFound:
                raise FormatError(f"object {key} of {what} is missing") from None
            except FormatError as exc:
                raise FormatError(f"{what}: {exc}") from None
            if content.tell() != size:
                raise FormatError(f"{what}: content is {content.tell()} bytes, the catalog "
                                  f"says {size}")
            yield from _pieces(content)

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

