"""What this machine knows a storage holds, so unchanged content is not read, compressed or
asked about again.

An object's name is the hash of its *compressed* bytes, so it cannot be derived from the
file: a republish would otherwise recompress everything to learn names it already knows.
One SQLite file per storage location keeps four tables:

- ``objects``: raw content -> the object holding it (keyed by SHA-256 of the raw content,
  so a SHA-1 collision cannot swap contents);
- ``files``: a source file's path and ``lstat`` signature (device, inode, size, mtime_ns,
  ctime_ns) -> its object or chunk list: the stat shortcut. A file whose signature is
  unchanged is not even opened. Any write to a file changes its ctime, and a replaced file
  has another inode, so content that changed with the same size and mtime is read again.
  Signatures within ``RACY_SECONDS`` of the walk are not recorded: a write in the same
  clock tick as our ``lstat`` could leave the ctime unchanged (git's "racy" entries);
- ``catalog_prints``: a nested catalog -> the print of the staged subtree it was written
  from, so a re-publish mounts an unchanged release's catalog again instead of rebuilding it
  (``catalog_tree``);
- ``source_prints``: what a source directory looked like (its producer's ``Subtree``
  digest, with where it was published and under which rules) -> the print of the staged
  subtree it became, so a re-publish need not even stage an unchanged release
  (``transaction``). Only subtrees older than ``RACY_SECONDS`` are recorded.

Trust: rows are hints until proven. They are *verified*, i.e. the object is used without
asking the storage, only when they were confirmed in the current ``generation`` and the
repository's head is the one this index saw last (``begin``/``end``). Anything else (a
publish or garbage collection from another machine or cache, a crash between the
manifest switch and ``end``) starts a new generation: every old row must be confirmed by
the storage again before it is trusted. Garbage collection ``forget``s what it deletes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..cvmfs.catalog import Chunk
from ..cvmfs.compression import Compression
from ..cvmfs.hashes import ContentHash
from ..cvmfs.manifest import Manifest

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (raw BLOB, compression INTEGER, object TEXT, "
    "generation INTEGER, PRIMARY KEY (raw, compression))",
    # garbage collection forgets by object name while it holds the publish lock: without
    # this index every forgotten object was a scan of the whole table
    "CREATE INDEX IF NOT EXISTS objects_by_object ON objects (object)",
    "CREATE TABLE IF NOT EXISTS files (dir TEXT, name TEXT, signature TEXT, "
    "compression INTEGER, object TEXT, chunks TEXT, generation INTEGER, "
    "PRIMARY KEY (dir, name)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS files_by_object ON files (object)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    # a nested catalog -> the print of the staged subtree it was written from
    # (``catalog_tree.subtree_print``): the same print again means the same catalog
    "CREATE TABLE IF NOT EXISTS catalog_prints (catalog TEXT PRIMARY KEY, print BLOB)",
    "CREATE TABLE IF NOT EXISTS source_prints (source BLOB PRIMARY KEY, print BLOB)",
)
VERSION = 2  # in the file name: an older cache is left alone, not migrated
RACY_SECONDS = 2.0  # coarse file system clocks (FAT: 2 s) and kernel timestamp ticks

Signature = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns


@dataclass(frozen=True, slots=True)
class KnownFile:
    """What the ``files`` table says an unchanged file is stored as."""

    compression: Compression
    content_hash: ContentHash | None
    chunks: tuple[Chunk, ...]
    verified: bool

    @property
    def objects(self) -> list[tuple[ContentHash, bool]]:
        """(hash, is a chunk) of every object the file needs."""
        if self.content_hash is not None:
            return [(self.content_hash, False)]
        return [(chunk.content_hash, True) for chunk in self.chunks]


def head_marker(manifest: Manifest) -> str:
    """Identifies one signed head: any publish or gc changes at least one of these."""
    return " ".join(str(v) for v in (manifest.root_catalog, manifest.revision,
                                     manifest.timestamp, manifest.history, manifest.reflog))


class ContentIndex:
    def __init__(self, file: Path) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        self.file = file
        self.conn = sqlite3.connect(file, check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.conn.execute(statement)
        self.lock = threading.Lock()
        # lookups come from every worker at once: a read connection each (WAL readers run
        # side by side), instead of queueing on ``lock``
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self.pending: list[tuple[bytes, int, str, int]] = []
        self.pending_files: list[tuple] = []
        self.pending_prints: list[tuple[str, bytes]] = []
        self.pending_sources: list[tuple[bytes, bytes]] = []
        self.generation = int(self._meta("generation") or 0)
        self.trusted = False  # until ``begin`` finds the head this index saw last
        self._dirs: dict[str, dict[str, tuple]] = {}
        self.racy_ns = time.time_ns() - int(RACY_SECONDS * 1e9)

    @classmethod
    def for_storage(cls, cache_dir: Path, location: str) -> ContentIndex:
        name = hashlib.sha256(location.encode()).hexdigest()[:24]
        return cls(cache_dir / "content-index" / f"{name}.v{VERSION}.db")

    @staticmethod
    def key(data: bytes | memoryview) -> bytes:
        return hashlib.sha256(data).digest()

    # -- trust --------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def begin(self, head: Manifest) -> None:
        """Under the publish lock: trust verified rows only if ``head`` is the one we left."""
        with self.lock:
            self.trusted = self._meta("head") == head_marker(head)
            self.racy_ns = time.time_ns() - int(RACY_SECONDS * 1e9)
            if not self.trusted:
                self.generation += 1
                self.conn.execute("BEGIN")
                self._set_meta("generation", str(self.generation))
                self._set_meta("head", "")
                self.conn.execute("COMMIT")

    def end(self, head: Manifest) -> None:
        """After a commit whose objects were all recorded (or forgotten): ``head`` is ours."""
        self.flush()
        with self.lock:
            self._set_meta("head", head_marker(head))

    def _verified(self, generation: int | None) -> bool:
        return self.trusted and generation == self.generation

    # -- raw content -> object ----------------------------------------------------------------

    def lookup(self, raw: bytes, compression: Compression) -> tuple[ContentHash, bool] | None:
        """The object known to hold ``raw`` and whether it is verified, or None."""
        row = self._reader().execute(
            "SELECT object, generation FROM objects WHERE raw = ? AND compression = ?",
            (raw, int(compression)),
        ).fetchone()
        return (ContentHash.parse(row[0]), self._verified(row[1])) if row else None

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.file, check_same_thread=False, timeout=30)
            self._readers.conn = conn
            with self.lock:
                self._reader_conns.append(conn)
        return conn

    def remember(self, raw: bytes, compression: Compression, content_hash: ContentHash) -> None:
        """The storage holds ``content_hash`` (just stored, or confirmed) with ``raw``."""
        with self.lock:
            self.pending.append((raw, int(compression), str(content_hash), self.generation))

    # -- the stat shortcut --------------------------------------------------------------------

    def unchanged(self, path: str, sig: Signature) -> KnownFile | None:
        """What ``path`` is stored as, if its signature is the one recorded."""
        directory, _, name = path.rpartition("/")
        rows = self._dirs.get(directory)
        if rows is None:
            with self.lock:
                rows = {r[0]: r[1:] for r in self.conn.execute(
                    "SELECT name, signature, compression, object, chunks, generation "
                    "FROM files WHERE dir = ?", (directory,))}
            self._dirs[directory] = rows
        row = rows.get(name)
        if row is None or row[0] != _text(sig):
            return None
        _, compression, obj, chunks, generation = row
        return KnownFile(Compression(compression), ContentHash.parse(obj) if obj else None,
                         _parse_chunks(chunks) if chunks else (), self._verified(generation))

    def record(self, path: str, sig: Signature, compression: Compression,
               content_hash: ContentHash | None, chunks: tuple[Chunk, ...]) -> None:
        """``path`` (with ``sig`` as seen before reading it) is stored as given."""
        if max(sig[3], sig[4]) >= self.racy_ns:
            return  # changed too recently to tell a later write from this one
        directory, _, name = path.rpartition("/")
        with self.lock:
            self.pending_files.append((directory, name, _text(sig), int(compression),
                                       str(content_hash) if content_hash else None,
                                       _chunks_text(chunks) if chunks else None,
                                       self.generation))

    # -- nested catalogs by what they were written from ---------------------------------------

    def catalog_print(self, catalog: ContentHash) -> bytes | None:
        """The print of the subtree ``catalog`` was written from, if this index saw it.

        A catalog is content-addressed, so the row never goes stale; it is used only for a
        catalog the current head still references, so the object is there.
        """
        with self.lock:
            row = self.conn.execute("SELECT print FROM catalog_prints WHERE catalog = ?",
                                    (str(catalog),)).fetchone()
        return row[0] if row else None

    def record_catalog_print(self, catalog: ContentHash, mark: bytes) -> None:
        with self.lock:
            self.pending_prints.append((str(catalog), mark))

    def source_print(self, source: bytes) -> bytes | None:
        """The staged print a source subtree became, if this index saw it published.

        Stale rows are harmless: a print is used only together with a catalog of the
        current head that has it (``catalog_print``); gc forgets those, and with them the
        source rows that no catalog row has the print of any more.
        """
        with self.lock:
            row = self.conn.execute("SELECT print FROM source_prints WHERE source = ?",
                                    (source,)).fetchone()
        return row[0] if row else None

    def record_source_print(self, source: bytes, mark: bytes) -> None:
        with self.lock:
            self.pending_sources.append((source, mark))

    # -- writing and forgetting ---------------------------------------------------------------

    def flush(self) -> None:
        with self.lock:
            rows, self.pending = self.pending, []
            files, self.pending_files = self.pending_files, []
            prints, self.pending_prints = self.pending_prints, []
            sources, self.pending_sources = self.pending_sources, []
            if rows or files or prints or sources:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                                      rows)
                self.conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                      files)
                self.conn.executemany("INSERT OR REPLACE INTO catalog_prints VALUES (?, ?)",
                                      prints)
                self.conn.executemany("INSERT OR REPLACE INTO source_prints VALUES (?, ?)",
                                      sources)
                self.conn.execute("COMMIT")

    def discard(self) -> None:
        """Keep nothing of what was remembered since the last flush."""
        with self.lock:
            self.pending.clear()
            self.pending_files.clear()
            self.pending_prints.clear()
            self.pending_sources.clear()

    def forget(self, content_hashes: set[str]) -> None:
        """Drop entries for objects garbage collection deleted."""
        with self.lock:
            gone = [(h,) for h in content_hashes]
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM objects WHERE object = ?", gone)
            self.conn.executemany("DELETE FROM files WHERE object = ?", gone)
            self.conn.executemany("DELETE FROM catalog_prints WHERE catalog = ?", gone)
            # a source row is used only with a catalog row of its print (``source_print``)
            self.conn.execute("DELETE FROM source_prints WHERE print NOT IN "
                              "(SELECT print FROM catalog_prints)")
            chunked = self.conn.execute(
                "SELECT dir, name, chunks FROM files WHERE chunks IS NOT NULL").fetchall()
            self.conn.executemany("DELETE FROM files WHERE dir = ? AND name = ?", [
                (d, n) for d, n, chunks in chunked
                if any(str(c.content_hash) in content_hashes for c in _parse_chunks(chunks))])
            self.conn.execute("COMMIT")
            self._dirs.clear()

    def close(self) -> None:
        self.flush()
        for conn in self._reader_conns:
            conn.close()
        self.conn.close()


def _text(sig: Signature) -> str:
    return " ".join(map(str, sig))


def _chunks_text(chunks: tuple[Chunk, ...]) -> str:
    return " ".join(f"{c.offset}:{c.size}:{c.content_hash}" for c in chunks)


def _parse_chunks(text: str) -> tuple[Chunk, ...]:
    chunks = []
    for item in text.split():
        offset, size, content_hash = item.split(":")
        chunks.append(Chunk(int(offset), int(size), ContentHash.parse(content_hash)))
    return tuple(chunks)
