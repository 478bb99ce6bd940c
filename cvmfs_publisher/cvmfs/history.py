"""The tag database stored as the ``H`` object (spec section 6)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError, TagError
from . import sqlitedb
from .hashes import Algorithm, ContentHash

SCHEMA = "1.0"
SCHEMA_REVISION = 3
TRUNK = "trunk"
TRUNK_PREVIOUS = "trunk-previous"
RESERVED = (TRUNK, TRUNK_PREVIOUS)
TRUNK_DESCRIPTION = "current HEAD"
TRUNK_PREVIOUS_DESCRIPTION = "default undo target"

DDL = (
    sqlitedb.PROPERTIES_DDL,
    "CREATE TABLE branches (branch TEXT, parent TEXT, initial_revision INTEGER, "
    "CONSTRAINT pk_branch PRIMARY KEY (branch), "
    "FOREIGN KEY (parent) REFERENCES branches (branch), "
    "CHECK ((branch <> '') OR (parent IS NULL)), "
    "CHECK ((branch = '') OR (parent IS NOT NULL)))",
    "INSERT INTO branches (branch, parent, initial_revision) VALUES ('', NULL, 0)",
    "CREATE TABLE tags (name TEXT, hash TEXT, revision INTEGER, timestamp INTEGER, "
    "channel INTEGER, description TEXT, size INTEGER, branch TEXT, "
    "CONSTRAINT pk_tags PRIMARY KEY (name), FOREIGN KEY (branch) REFERENCES branches (branch))",
    "CREATE TABLE recycle_bin (hash TEXT, flags INTEGER, CONSTRAINT pk_hash PRIMARY KEY (hash))",
)


@dataclass(frozen=True)
class Tag:
    name: str
    root_hash: ContentHash
    revision: int
    timestamp: int
    description: str = ""
    size: int = 0
    branch: str = ""
    channel: int = 0


def check_tag_name(name: str) -> None:
    """Upstream tag names carry no whitespace; we also keep them printable and short."""
    if not name or len(name) > 255 or any(c.isspace() or not c.isprintable() for c in name):
        raise TagError(f"invalid tag name {name!r}: use 1-255 printable characters, no spaces")


class History(sqlitedb.VersionedDatabase):
    KIND, SCHEMA, SCHEMA_REVISION, DDL = "history", SCHEMA, SCHEMA_REVISION, DDL

    @classmethod
    def create(cls, file: Path, fqrn: str, algorithm: Algorithm = Algorithm.SHA1) -> History:
        cls.create_file(file, {"fqrn": fqrn,
                               "previous_revision": str(ContentHash.zero(algorithm))})
        return cls(file, writable=True)

    def tags(self) -> list[Tag]:
        rows = self.conn.execute(
            "SELECT name, hash, revision, timestamp, description, size, branch, channel "
            "FROM tags ORDER BY revision, timestamp, name"
        ).fetchall()
        try:
            return [
                Tag(n, ContentHash.parse(h), int(r), int(t), d or "", int(s or 0), b or "",
                    int(c or 0))
                for n, h, r, t, d, s, b, c in rows
            ]
        except (TypeError, ValueError):
            bad = next(n for n, _, r, t, _, s, _, c in rows
                       if any(type(v) is not int for v in (r, t, s or 0, c or 0)))
            raise FormatError(f"tag {bad!r} is malformed (revision, timestamp, size and "
                              "channel must be integers)") from None

    def get(self, name: str) -> Tag | None:
        return next((t for t in self.tags() if t.name == name), None)

    def branches(self) -> list[tuple[str, str | None, int]]:
        return self.conn.execute("SELECT branch, parent, initial_revision FROM branches").fetchall()

    def insert(self, tag: Tag) -> None:
        self.conn.execute(
            "INSERT INTO tags (name, hash, revision, timestamp, channel, description, size, "
            "branch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tag.name, str(tag.root_hash), tag.revision, tag.timestamp, tag.channel,
             tag.description, tag.size, tag.branch),
        )

    def remove(self, name: str) -> None:
        self.conn.execute("DELETE FROM tags WHERE name = ?", (name,))

    def update_trunk(self, head: Tag) -> None:
        """Upstream's ``UpdateUndoTags``: trunk becomes trunk-previous, ``head`` becomes trunk."""
        old = self.get(TRUNK)
        self.remove(TRUNK_PREVIOUS)
        self.remove(TRUNK)
        if old is not None:
            self.insert(_renamed(old, TRUNK_PREVIOUS, TRUNK_PREVIOUS_DESCRIPTION))
        self.insert(_renamed(head, TRUNK, TRUNK_DESCRIPTION))

    def set_previous_revision(self, previous: ContentHash) -> None:
        sqlitedb.set_property(self.conn, "previous_revision", str(previous))



def _renamed(tag: Tag, name: str, description: str) -> Tag:
    return Tag(name, tag.root_hash, tag.revision, tag.timestamp, description, tag.size, tag.branch)
