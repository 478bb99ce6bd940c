"""What catalogs, the history and the reflog share: SQLite files with a ``properties`` table.

The client opens these files read-only through a VFS that ignores journals, so a file we
hand over must be a fully committed rollback-journal (never WAL) database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import FormatError

PROPERTIES_DDL = (
    "CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key))"
)


def connect(path: Path, *, writable: bool, create: bool = False) -> sqlite3.Connection:
    """Open a database file; read-only connections cannot change a byte of it."""
    if not create and not path.exists():
        raise FormatError(f"database file {path} does not exist")
    if writable:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=OFF")
    else:
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise FormatError(f"{path.name} is not an SQLite database ({exc})") from None
    return conn


def get_properties(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        rows = conn.execute("SELECT key, value FROM properties").fetchall()
    except sqlite3.DatabaseError as exc:
        raise FormatError(f"no readable properties table ({exc})") from None
    return {key: str(value) for key, value in rows}


def set_property(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT OR REPLACE INTO properties (key, value) VALUES (?, ?)", (key, value))


def table_columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, int]]:
    """(name, declared type, primary-key position) per column: the schema without its SQL text."""
    return [(row[1], row[2].upper(), row[5]) for row in conn.execute(f"PRAGMA table_info({table})")]


class VersionedDatabase:
    """A database file whose ``properties`` name its schema: the history, the reflog."""

    KIND = ""
    SCHEMA = ""
    SCHEMA_REVISION = 0
    DDL: tuple[str, ...] = ()

    def __init__(self, file: Path, writable: bool) -> None:
        self.file = file
        self.conn = connect(file, writable=writable)
        self.properties = get_properties(self.conn)
        if self.properties.get("schema") != self.SCHEMA:
            self.conn.close()
            raise FormatError(f"{self.KIND} schema {self.properties.get('schema')!r} is not "
                              f"{self.SCHEMA}")

    @classmethod
    def create_file(cls, file: Path, properties: dict[str, object]) -> None:
        conn = connect(file, writable=True, create=True)
        conn.execute("BEGIN")
        for statement in cls.DDL:
            conn.execute(statement)
        base = {"schema": cls.SCHEMA, "schema_revision": cls.SCHEMA_REVISION}
        for key, value in {**base, **properties}.items():
            set_property(conn, key, value)
        finalize(conn)

    @property
    def fqrn(self) -> str:
        return self.properties.get("fqrn", "")

    def close(self) -> None:
        finalize(self.conn)


def finalize(conn: sqlite3.Connection) -> None:
    """Commit and close so the file on disk is complete and journal-free."""
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.close()
