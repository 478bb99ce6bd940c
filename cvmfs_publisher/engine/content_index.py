"""Raw content -> stored object, so unchanged content is never compressed again.

An object's name is the hash of its *compressed* bytes, so it cannot be derived from the
file: a republish would otherwise recompress everything to learn names it already knows.
This index remembers, per storage location, which object holds which raw bytes (keyed by
SHA-256 of the raw content, so a SHA-1 collision cannot swap contents). It is only a hint:
every hit is checked against the storage, and a miss just means compressing again.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from ..cvmfs.compression import Compression
from ..cvmfs.hashes import ContentHash

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (raw BLOB, compression INTEGER, object TEXT, "
    "PRIMARY KEY (raw, compression))",
    # garbage collection forgets by object name while it holds the publish lock: without
    # this index every forgotten object was a scan of the whole table
    "CREATE INDEX IF NOT EXISTS objects_by_object ON objects (object)",
)


class ContentIndex:
    def __init__(self, file: Path) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(file, check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            self.conn.execute(statement)
        self.lock = threading.Lock()
        self.pending: list[tuple[bytes, int, str]] = []

    @classmethod
    def for_storage(cls, cache_dir: Path, location: str) -> ContentIndex:
        name = hashlib.sha256(location.encode()).hexdigest()[:24]
        return cls(cache_dir / "content-index" / f"{name}.db")

    @staticmethod
    def key(data: bytes | memoryview) -> bytes:
        return hashlib.sha256(data).digest()

    def lookup(self, raw: bytes, compression: Compression) -> ContentHash | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT object FROM objects WHERE raw = ? AND compression = ?",
                (raw, int(compression)),
            ).fetchone()
        return ContentHash.parse(row[0]) if row else None

    def remember(self, raw: bytes, compression: Compression, content_hash: ContentHash) -> None:
        with self.lock:
            self.pending.append((raw, int(compression), str(content_hash)))

    def flush(self) -> None:
        with self.lock:
            rows, self.pending = self.pending, []
            if rows:
                self.conn.execute("BEGIN")
                self.conn.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", rows)
                self.conn.execute("COMMIT")

    def forget(self, content_hashes: set[str]) -> None:
        """Drop entries for objects garbage collection deleted."""
        with self.lock:
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM objects WHERE object = ?",
                                  [(h,) for h in content_hashes])
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self.conn.close()
