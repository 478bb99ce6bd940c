"""The 24 ``statistics`` counters of a catalog (spec 3.7).

``self`` counts this catalog's rows; ``subtree`` is the sum of ``self + subtree`` of the
direct child catalogs. A catalog without all 24 rows does not load in the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

FIELDS = (
    "regular",
    "symlink",
    "special",
    "dir",
    "nested",
    "chunked",
    "chunks",
    "file_size",
    "chunked_size",
    "xattr",
    "external",
    "external_file_size",
)
NAMES = tuple(f"self_{f}" for f in FIELDS) + tuple(f"subtree_{f}" for f in FIELDS)


@dataclass
class Tally:
    """One set of 12 numbers; ``self`` and ``subtree`` are both tallies."""

    regular: int = 0
    symlink: int = 0
    special: int = 0
    dir: int = 0
    nested: int = 0
    chunked: int = 0
    chunks: int = 0
    file_size: int = 0
    chunked_size: int = 0
    xattr: int = 0
    external: int = 0
    external_file_size: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f) + getattr(other, f) for f in FIELDS))

    def __sub__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f) - getattr(other, f) for f in FIELDS))

    def entries(self) -> int:
        return self.regular + self.symlink + self.special + self.dir


@dataclass
class Counters:
    own: Tally = field(default_factory=Tally)
    subtree: Tally = field(default_factory=Tally)

    def total(self) -> Tally:
        """What this catalog contributes to its parent's ``subtree`` counters."""
        return self.own + self.subtree

    def as_rows(self) -> dict[str, int]:
        rows = {f"self_{f.name}": getattr(self.own, f.name) for f in fields(Tally)}
        rows.update({f"subtree_{f.name}": getattr(self.subtree, f.name) for f in fields(Tally)})
        return rows

    @classmethod
    def from_rows(cls, rows: Mapping[str, int]) -> Counters:
        """Raises KeyError naming the first missing counter."""
        own = Tally(*(int(rows[f"self_{f}"]) for f in FIELDS))
        subtree = Tally(*(int(rows[f"subtree_{f}"]) for f in FIELDS))
        return cls(own, subtree)
