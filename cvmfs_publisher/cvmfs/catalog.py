"""File catalogs: SQLite schema 2.5 revision 7 (spec section 3).

A ``Catalog`` wraps one catalog file. Paths are repository paths: ``""`` is the root,
everything else starts with ``/``. Rows are keyed by the MD5 of the full path, so a
catalog can answer "what is at /a/b" and "what is in /a" but not "what is the path of
this row": walkers carry the path down from the catalog's root.
"""

from __future__ import annotations

import enum
import functools
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import FormatError
from . import sqlitedb
from .compression import Compression
from .counters import NAMES as COUNTER_NAMES
from .counters import Counters, Tally
from .hashes import Algorithm, ContentHash, parent_path, path_key

SCHEMA = "2.5"
SCHEMA_REVISION = 7
DIRECTORY_SIZE = 4096  # what upstream stores for every directory (see docs/format-decisions.md)
ROOT_MODE = stat.S_IFDIR | 0o755

DDL = (
    sqlitedb.PROPERTIES_DDL,
    "CREATE TABLE catalog (md5path_1 INTEGER, md5path_2 INTEGER, parent_1 INTEGER, "
    "parent_2 INTEGER, hardlinks INTEGER, hash BLOB, size INTEGER, mode INTEGER, "
    "mtime INTEGER, mtimens INTEGER, flags INTEGER, name TEXT, symlink TEXT, uid INTEGER, "
    "gid INTEGER, xattr BLOB, CONSTRAINT pk_catalog PRIMARY KEY (md5path_1, md5path_2))",
    "CREATE INDEX idx_catalog_parent ON catalog (parent_1, parent_2)",
    "CREATE TABLE chunks (md5path_1 INTEGER, md5path_2 INTEGER, offset INTEGER, size INTEGER, "
    "hash BLOB, CONSTRAINT pk_chunks PRIMARY KEY (md5path_1, md5path_2, offset, size), "
    "FOREIGN KEY (md5path_1, md5path_2) REFERENCES catalog(md5path_1, md5path_2))",
    "CREATE TABLE nested_catalogs (path TEXT, sha1 TEXT, size INTEGER, "
    "CONSTRAINT pk_nested_catalogs PRIMARY KEY (path))",
    "CREATE TABLE bind_mountpoints (path TEXT, sha1 TEXT, size INTEGER, "
    "CONSTRAINT pk_bind_mountpoints PRIMARY KEY (path))",
    "CREATE TABLE statistics (counter TEXT, value INTEGER, "
    "CONSTRAINT pk_statistics PRIMARY KEY (counter))",
)

COLUMNS = (
    "hardlinks, hash, size, mode, mtime, mtimens, flags, name, symlink, uid, gid, xattr"
)
# Older schema revisions lack columns: revision < 7 has no mtimens (cvmfs_server 2.11 and
# earlier), < 2 no xattr. Readers select NULL for them, as the client does.
OPTIONAL_COLUMNS = ("mtimens", "xattr")


def readable_columns(conn: sqlite3.Connection) -> str:
    """``COLUMNS`` for this catalog's schema revision, NULL where a column is missing."""
    present = {name for name, _, _ in sqlitedb.table_columns(conn, "catalog")}
    return ", ".join(c if c in present or c not in OPTIONAL_COLUMNS else f"NULL AS {c}"
                     for c in COLUMNS.split(", "))


class Flag(enum.IntFlag):
    DIR = 1
    NESTED_MOUNTPOINT = 2
    FILE = 4
    LINK = 8
    SPECIAL = 16
    NESTED_ROOT = 32
    CHUNKED = 64
    EXTERNAL = 128
    BIND_MOUNTPOINT = 0x4000
    HIDDEN = 0x8000
    DIRECT_IO = 0x10000


HASH_SHIFT = 8
COMPRESSION_SHIFT = 11


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int
    size: int
    content_hash: ContentHash


@dataclass(frozen=True, slots=True)
class NestedRef:
    """A row of ``nested_catalogs``: where a child catalog mounts, its hash and raw size."""

    path: str
    content_hash: ContentHash
    size: int


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One catalog row, minus its path keys."""

    name: str
    mode: int
    size: int
    mtime: int
    flags: int
    uid: int = 0
    gid: int = 0
    content_hash: ContentHash | None = None
    symlink: str = ""
    linkcount: int = 1
    hardlink_group: int = 0
    mtimens: int | None = None
    xattr: bytes | None = None

    @property
    def is_directory(self) -> bool:
        return bool(self.flags & Flag.DIR)

    @property
    def is_symlink(self) -> bool:
        return bool(self.flags & Flag.LINK)

    @property
    def is_special(self) -> bool:
        return bool(self.flags & Flag.SPECIAL)

    @property
    def is_regular(self) -> bool:
        return bool(self.flags & Flag.FILE) and not self.flags & (Flag.LINK | Flag.SPECIAL)

    @property
    def is_chunked(self) -> bool:
        return bool(self.flags & Flag.CHUNKED)

    @property
    def is_external(self) -> bool:
        return bool(self.flags & Flag.EXTERNAL)

    @property
    def is_mountpoint(self) -> bool:
        return bool(self.flags & Flag.NESTED_MOUNTPOINT)

    @property
    def is_nested_root(self) -> bool:
        return bool(self.flags & Flag.NESTED_ROOT)

    @property
    def compression(self) -> Compression:
        return Compression((self.flags >> COMPRESSION_SHIFT) & 7)

    @property
    def hash_algorithm(self) -> Algorithm:
        return Algorithm(((self.flags >> HASH_SHIFT) & 7) + 1)

    @property
    def hardlinks(self) -> int:
        return (self.hardlink_group << 32) | self.linkcount

    @property
    def rdev(self) -> int:
        """Device number of a character or block device (stored in ``size``)."""
        return self.size if stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode) else 0

    def evolve(self, **changes: object) -> DirEntry:
        return replace(self, **changes)  # type: ignore[arg-type]


@functools.cache
def file_flags(
    *,
    algorithm: Algorithm,
    chunked: bool = False,
    compression: Compression = Compression.ZLIB,
) -> int:
    """Flags of a regular file, as upstream's ``CreateDatabaseFlags`` computes them
    (cached: enum arithmetic per catalog row was a tenth of a large publish)."""
    flags = Flag.FILE | ((algorithm - 1) << HASH_SHIFT) | (compression << COMPRESSION_SHIFT)
    if chunked:
        flags |= Flag.CHUNKED
    return int(flags)


def encode_xattrs(xattrs: dict[str, bytes]) -> bytes | None:
    """Serialized extended attributes (spec 3.8): 1-byte lengths, keys sorted."""
    if not xattrs:
        return None
    if len(xattrs) > 255:
        raise FormatError("more than 255 extended attributes")
    out = bytearray([1, len(xattrs)])
    for key in sorted(xattrs):
        k, v = key.encode("utf-8"), xattrs[key]
        if not 0 < len(k) <= 255 or len(v) > 255 or b"\0" in k:
            raise FormatError(f"extended attribute {key!r} does not fit the catalog format")
        out += bytes([len(k), len(v)]) + k + v
    return bytes(out)


def decode_xattrs(blob: bytes | None) -> dict[str, bytes]:
    if not blob:
        return {}
    if blob[0] != 1 or len(blob) < 2:
        raise FormatError("unknown extended attribute blob version")
    result, pos = {}, 2
    for _ in range(blob[1]):
        if pos + 2 > len(blob):
            raise FormatError("truncated extended attribute blob")
        klen, vlen = blob[pos], blob[pos + 1]
        pos += 2
        if pos + klen + vlen > len(blob):
            raise FormatError("truncated extended attribute blob")
        key = blob[pos : pos + klen].decode("utf-8", "replace")
        result[key] = blob[pos + klen : pos + klen + vlen]
        pos += klen + vlen
    return result


def row_to_entry(row: tuple) -> DirEntry:
    hardlinks, digest, size, mode, mtime, mtimens, flags, name, symlink, uid, gid, xattr = row
    if hardlinks is None or name is None or symlink is None:
        raise FormatError(f"catalog row {name!r} has NULL hardlinks, name or symlink")
    integers = {"hardlinks": hardlinks, "size": size, "mode": mode, "mtime": mtime,
                "flags": flags, "uid": uid, "gid": gid,
                "mtimens": 0 if mtimens is None else mtimens}
    mistyped = [column for column, value in integers.items() if type(value) is not int]
    mistyped += [column for column, value in (("hash", digest), ("xattr", xattr))
                 if value is not None and not isinstance(value, bytes)]
    if mistyped or not isinstance(name, str) or not isinstance(symlink, str):
        raise FormatError(f"catalog row {name!r} has mistyped columns: "
                          f"{', '.join(mistyped) or 'name or symlink'}")
    try:
        algorithm = Algorithm(((flags >> HASH_SHIFT) & 7) + 1)
    except ValueError:
        raise FormatError(f"catalog row {name!r} has unknown hash algorithm bits in its "
                          f"flags {flags}") from None
    return DirEntry(
        name=name,
        mode=mode,
        size=size,
        mtime=mtime,
        flags=flags,
        uid=uid,
        gid=gid,
        content_hash=ContentHash(bytes(digest), algorithm) if digest is not None else None,
        symlink=symlink,
        linkcount=hardlinks & 0xFFFFFFFF,
        hardlink_group=hardlinks >> 32,
        mtimens=mtimens,
        xattr=bytes(xattr) if xattr is not None else None,
    )


def _entry_to_row(path: str, entry: DirEntry) -> tuple:
    key, parent = path_key(path), (0, 0)
    if path:
        parent = path_key(parent_path(path))
    return (
        *key,
        *parent,
        entry.hardlinks,
        entry.content_hash.digest if entry.content_hash else None,
        entry.size,
        entry.mode,
        entry.mtime,
        entry.mtimens,
        entry.flags,
        entry.name,
        entry.symlink,
        entry.uid,
        entry.gid,
        entry.xattr,
    )


class Catalog:
    """One catalog file, open for reading or for in-place editing during a publish."""

    def __init__(self, conn: sqlite3.Connection, file: Path, writable: bool) -> None:
        self.conn = conn
        self.file = file
        self.writable = writable
        self.properties = sqlitedb.get_properties(conn)
        self.mountpoint = self.properties.get("root_prefix", "")
        self.columns = readable_columns(conn)
        self._nested: list[NestedRef] | None = None  # read-only: listed once

    @classmethod
    def open(cls, file: Path, *, writable: bool = False) -> Catalog:
        conn = sqlitedb.connect(file, writable=writable)
        catalog = cls(conn, file, writable)
        schema = catalog.properties.get("schema")
        if schema not in ("2.4", "2.5"):
            conn.close()
            raise FormatError(f"{file.name}: unsupported catalog schema {schema!r}")
        return catalog

    @classmethod
    def create(
        cls,
        file: Path,
        mountpoint: str,
        root: DirEntry,
        properties: dict[str, object],
    ) -> Catalog:
        """A new catalog holding only its root entry (flag 1 at "", flag 33 elsewhere)."""
        conn = sqlitedb.connect(file, writable=True, create=True)
        conn.execute("BEGIN")
        for statement in DDL:
            conn.execute(statement)
        base: dict[str, object] = {"schema": SCHEMA, "schema_revision": SCHEMA_REVISION}
        if mountpoint:
            base["root_prefix"] = mountpoint
        for key, value in {**base, **properties}.items():
            sqlitedb.set_property(conn, key, value)
        conn.executemany(
            "INSERT INTO statistics (counter, value) VALUES (?, 0)", [(n,) for n in COUNTER_NAMES]
        )
        catalog = cls(conn, file, True)
        catalog.add(mountpoint, root)
        conn.execute("COMMIT")
        catalog.properties = sqlitedb.get_properties(conn)
        return catalog

    # -- properties -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return int(self.properties.get("revision", "0"))

    @property
    def last_modified(self) -> int:
        return int(self.properties.get("last_modified", "0"))

    @property
    def previous_revision(self) -> ContentHash | None:
        value = self.properties.get("previous_revision")
        return ContentHash.parse(value) if value else None

    def set_property(self, key: str, value: object) -> None:
        sqlitedb.set_property(self.conn, key, value)
        self.properties[key] = str(value)

    # -- reading ----------------------------------------------------------------------

    def lookup(self, path: str) -> DirEntry | None:
        row = self.conn.execute(
            f"SELECT {self.columns} FROM catalog WHERE md5path_1 = ? AND md5path_2 = ?",
            path_key(path),
        ).fetchone()
        return row_to_entry(row) if row else None

    def listing(self, path: str) -> list[DirEntry]:
        """Children of a directory of this catalog (none below a nested mountpoint)."""
        rows = self.conn.execute(
            f"SELECT {self.columns} FROM catalog WHERE parent_1 = ? AND parent_2 = ? "
            "ORDER BY name",
            path_key(path),
        ).fetchall()
        return [row_to_entry(row) for row in rows]

    def walk(self) -> Iterator[tuple[str, DirEntry]]:
        """Every (path, entry) reachable from this catalog's root, parents before children."""
        root = self.lookup(self.mountpoint)
        if root is None:
            return
        stack = [(self.mountpoint, root)]
        while stack:
            path, entry = stack.pop()
            yield path, entry
            if entry.is_directory and not entry.is_mountpoint:
                children = self.listing(path)
                stack.extend((f"{path}/{child.name}", child) for child in reversed(children))

    def chunks(self, path: str) -> list[Chunk]:
        rows = self.conn.execute(
            "SELECT offset, size, hash FROM chunks WHERE md5path_1 = ? AND md5path_2 = ? "
            "ORDER BY offset",
            path_key(path),
        ).fetchall()
        entry_algorithm = Algorithm.SHA1
        entry = self.lookup(path)
        if entry is not None:
            entry_algorithm = entry.hash_algorithm
        for off, size, h in rows:
            if type(off) is not int or type(size) is not int:
                raise FormatError(f"chunk at {off} of {path} has a non-integer offset or size")
            if h is None:
                raise FormatError(f"chunk at {off} of {path} has no hash")
        return [Chunk(off, size, ContentHash(bytes(h), entry_algorithm)) for off, size, h in rows]

    def nested(self) -> list[NestedRef]:
        """A read-only catalog keeps the list: path lookups walk it at every level."""
        if self._nested is not None:
            return list(self._nested)
        rows = self.conn.execute("SELECT path, sha1, size FROM nested_catalogs ORDER BY path")
        refs = [NestedRef(p, ContentHash.parse(h), int(s or 0)) for p, h, s in rows]
        if not self.writable:
            self._nested = refs
        return list(refs)

    def row_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM catalog").fetchone()[0])

    def counters(self) -> Counters:
        rows = dict(self.conn.execute("SELECT counter, value FROM statistics").fetchall())
        try:
            return Counters.from_rows(rows)
        except KeyError as exc:
            raise FormatError(f"catalog lacks the statistics counter {exc.args[0]}") from None
        except (TypeError, ValueError):
            bad = next(name for name, value in rows.items() if type(value) is not int)
            raise FormatError(f"statistics counter {bad} is not an integer: "
                              f"{rows[bad]!r}") from None

    def count_own(self) -> Tally:
        """Recompute the ``self_*`` counters from the rows, the way ``check`` does."""
        f = Flag
        regular = f"(flags & {f.FILE}) AND NOT (flags & {f.LINK | f.SPECIAL})"
        row = self.conn.execute(
            f"""SELECT
              sum(CASE WHEN {regular} THEN 1 ELSE 0 END),
              sum(CASE WHEN flags & {f.LINK} THEN 1 ELSE 0 END),
              sum(CASE WHEN flags & {f.SPECIAL} THEN 1 ELSE 0 END),
              sum(CASE WHEN flags & {f.DIR} THEN 1 ELSE 0 END),
              sum(CASE WHEN {regular} AND flags & {f.CHUNKED} THEN 1 ELSE 0 END),
              sum(CASE WHEN {regular} THEN size ELSE 0 END),
              sum(CASE WHEN {regular} AND flags & {f.CHUNKED} THEN size ELSE 0 END),
              sum(CASE WHEN xattr IS NOT NULL THEN 1 ELSE 0 END),
              sum(CASE WHEN {regular} AND flags & {f.EXTERNAL} THEN 1 ELSE 0 END),
              sum(CASE WHEN {regular} AND flags & {f.EXTERNAL} THEN size ELSE 0 END)
            FROM catalog"""
        ).fetchone()
        (regular_n, symlinks, special, dirs, chunked, file_size, chunked_size, xattr, ext,
         ext_size) = (int(v or 0) for v in row)
        nested = self.conn.execute("SELECT count(*) FROM nested_catalogs").fetchone()[0]
        chunks = self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return Tally(
            regular=regular_n,
            symlink=symlinks,
            special=special,
            dir=dirs,
            nested=int(nested),
            chunked=chunked,
            chunks=int(chunks),
            file_size=file_size,
            chunked_size=chunked_size,
            xattr=xattr,
            external=ext,
            external_file_size=ext_size,
        )

    # -- writing ----------------------------------------------------------------------

    def add(self, path: str, entry: DirEntry, chunks: Iterable[Chunk] = ()) -> None:
        self.add_many([(path, entry, chunks)])

    def add_many(self, items: Iterable[tuple[str, DirEntry, Iterable[Chunk]]]) -> None:
        rows, chunk_rows = [], []
        for path, entry, chunks in items:
            rows.append(_entry_to_row(path, entry))
            key = rows[-1][:2]
            chunk_rows.extend((*key, c.offset, c.size, c.content_hash.digest) for c in chunks)
        self.conn.executemany(
            "INSERT INTO catalog (md5path_1, md5path_2, parent_1, parent_2, "
            f"{COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if chunk_rows:
            self.conn.executemany(
                "INSERT INTO chunks (md5path_1, md5path_2, offset, size, hash) "
                "VALUES (?, ?, ?, ?, ?)",
                chunk_rows,
            )

    def replace_entry(self, path: str, entry: DirEntry) -> None:
        """Overwrite the attributes of an existing row (its children stay)."""
        self.conn.execute(
            "UPDATE catalog SET hardlinks = ?, hash = ?, size = ?, mode = ?, mtime = ?, "
            "mtimens = ?, flags = ?, name = ?, symlink = ?, uid = ?, gid = ?, xattr = ? "
            "WHERE md5path_1 = ? AND md5path_2 = ?",
            (*_entry_to_row(path, entry)[4:], *path_key(path)),
        )

    def remove_tree(self, path: str) -> None:
        """Delete the row at ``path`` and every row below it in this catalog."""
        keys = [path_key(path), *self._descendant_keys(path)]
        self.conn.executemany("DELETE FROM catalog WHERE md5path_1 = ? AND md5path_2 = ?", keys)
        self.conn.executemany("DELETE FROM chunks WHERE md5path_1 = ? AND md5path_2 = ?", keys)

    def _descendant_keys(self, path: str) -> list[tuple[int, int]]:
        return self.conn.execute(
            """WITH RECURSIVE below(m1, m2) AS (
                 SELECT md5path_1, md5path_2 FROM catalog WHERE parent_1 = ? AND parent_2 = ?
                 UNION ALL
                 SELECT c.md5path_1, c.md5path_2 FROM catalog c
                   JOIN below b ON c.parent_1 = b.m1 AND c.parent_2 = b.m2
               )
               SELECT m1, m2 FROM below""",
            path_key(path),
        ).fetchall()

    def move_below(self, path: str, target: Catalog) -> int:
        """Move every row below ``path`` (not ``path`` itself) with its chunks to ``target``."""
        keys = self._descendant_keys(path)
        columns = f"md5path_1, md5path_2, parent_1, parent_2, {COLUMNS}"
        for table, cols in (("catalog", columns),
                            ("chunks", "md5path_1, md5path_2, offset, size, hash")):
            rows = [r for key in keys for r in self.conn.execute(
                f"SELECT {cols} FROM {table} WHERE md5path_1 = ? AND md5path_2 = ?", key)]
            marks = ", ".join("?" * len(cols.split(",")))
            target.conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            self.conn.executemany(
                f"DELETE FROM {table} WHERE md5path_1 = ? AND md5path_2 = ?", keys)
        return len(keys)

    def shape(self) -> list[tuple[tuple[int, int], tuple[int, int], int, str]]:
        """(key, parent key, flags, name) of every row: the tree without attributes."""
        rows = self.conn.execute(
            "SELECT md5path_1, md5path_2, parent_1, parent_2, flags, name FROM catalog")
        return [((a, b), (c, d), flags, name) for a, b, c, d, flags, name in rows]

    def child_directory_count(self, path: str) -> int:
        return int(
            self.conn.execute(
                f"SELECT count(*) FROM catalog WHERE parent_1 = ? AND parent_2 = ? "
                f"AND flags & {Flag.DIR} AND name != ''",
                path_key(path),
            ).fetchone()[0]
        )

    def max_hardlink_group(self) -> int:
        value = self.conn.execute("SELECT max(hardlinks >> 32) FROM catalog").fetchone()[0]
        return int(value or 0)

    def set_nested(self, ref: NestedRef) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO nested_catalogs (path, sha1, size) VALUES (?, ?, ?)",
            (ref.path, str(ref.content_hash), ref.size),
        )

    def drop_nested(self, path: str) -> None:
        self.conn.execute("DELETE FROM nested_catalogs WHERE path = ?", (path,))

    def write_counters(self, counters: Counters) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO statistics (counter, value) VALUES (?, ?)",
            list(counters.as_rows().items()),
        )

    def begin(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")

    def close(self) -> None:
        sqlitedb.finalize(self.conn)
