"""The reflog ``.cvmfsreflog``: every root object ever published, for GC (spec section 7)."""

from __future__ import annotations

import enum
from pathlib import Path

from . import sqlitedb
from .hashes import ContentHash, Suffix

SCHEMA = "1.0"
SCHEMA_REVISION = 0
DDL = (
    sqlitedb.PROPERTIES_DDL,
    "CREATE TABLE refs (hash TEXT, type INTEGER, timestamp INTEGER, "
    "CONSTRAINT pk_refs PRIMARY KEY (hash))",
)


class RefType(enum.IntEnum):
    CATALOG = 0
    CERTIFICATE = 1
    HISTORY = 2
    METAINFO = 3

    @property
    def suffix(self) -> Suffix:
        return {0: Suffix.CATALOG, 1: Suffix.CERTIFICATE, 2: Suffix.HISTORY, 3: Suffix.METAINFO}[
            self.value
        ]


class Reflog(sqlitedb.VersionedDatabase):
    KIND, SCHEMA, SCHEMA_REVISION, DDL = "reflog", SCHEMA, SCHEMA_REVISION, DDL

    @classmethod
    def create(cls, file: Path, fqrn: str) -> Reflog:
        cls.create_file(file, {"fqrn": fqrn})
        return cls(file, writable=True)

    def add(self, content_hash: ContentHash, ref_type: RefType, timestamp: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO refs (hash, type, timestamp) VALUES (?, ?, ?)",
            (str(content_hash), int(ref_type), timestamp),
        )

    def remove(self, content_hash: str) -> None:
        self.conn.execute("DELETE FROM refs WHERE hash = ?", (content_hash,))

    def entries(self) -> list[tuple[ContentHash, RefType, int]]:
        rows = self.conn.execute("SELECT hash, type, timestamp FROM refs ORDER BY timestamp")
        return [(ContentHash.parse(h), RefType(t), int(ts)) for h, t, ts in rows]

    def contains(self, content_hash: ContentHash, ref_type: RefType) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM refs WHERE hash = ? AND type = ?", (str(content_hash), int(ref_type))
        ).fetchone()
        return row is not None

