"""Which staged directories become nested catalogs: ``/.cvmfsdirtab``, else the release rule.

The dirtab that counts is the one the publish ends with (staged, else the current one),
as upstream applies the dirtab of the tree being published. Matching directories get a
``.cvmfscatalog`` marker dated with the directory, so republishing the same tree is stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from ..cvmfs.dirtab import DIRTAB, MARKER, Dirtab
from ..cvmfs.hashes import ContentHash
from ..cvmfs.names import is_within
from ..entries import Kind, Owner
from .pipeline import PendingFile, completed
from .reader import RepositoryReader
from .staging import Node, StagedTree


class StagedOp(Protocol):
    path: str
    tree: StagedTree | None  # None: remove


def catalog_rules(ops: list[StagedOp], reader: RepositoryReader,
                  read: Callable[[PendingFile], bytes], release_catalogs: list[str]
                  ) -> Dirtab | None:
    text = dirtab_text(ops, reader, read)
    if text is not None:
        return Dirtab.parse(text)
    return Dirtab.from_patterns(release_catalogs) if release_catalogs else None


def rules_print(rules: Dirtab | None) -> str:
    """The rules as text that is equal exactly when they make the same catalogs."""
    if rules is None:
        return ""
    return repr([(p.text, p.relaxed) for p in (*rules.positive, *rules.negative)])


def dirtab_text(ops: list[StagedOp], reader: RepositoryReader,
                read: Callable[[PendingFile], bytes]) -> str | None:
    """The ``/.cvmfsdirtab`` this publish ends with: staged if any, else the current one."""
    for op in reversed(ops):
        if op.tree is None and is_within(f"/{DIRTAB}", op.path):
            return None
        if op.tree is not None and op.path in ("", f"/{DIRTAB}"):
            node = op.tree.find(DIRTAB) if op.path == "" else op.tree.root
            if node is not None and node.kind is Kind.FILE and node.content is not None:
                return read(node.content).decode("utf-8", "replace")
            if op.path == "":
                return None
    found = reader.lookup(f"/{DIRTAB}")
    if found is None or not found.entry.is_regular:
        return None
    return b"".join(reader.read(f"/{DIRTAB}")).decode("utf-8", "replace")


def mark_catalogs(ops: Iterable[StagedOp], rules: Dirtab, empty: ContentHash,
                  owner: Owner) -> None:
    """Add ``.cvmfscatalog`` to staged directories the rules name."""
    for op in ops:
        if op.tree is None:
            continue
        for rel, node in op.tree.walk():
            full = f"{op.path}/{rel}" if rel else op.path
            if node.kind is not Kind.DIR or not rules.matches(full):
                continue
            assert node.children is not None
            if MARKER not in node.children:  # its directory's mtime: stable on republish
                node.children[MARKER] = Node(MARKER, Kind.FILE, 0o644, owner.uid, owner.gid,
                                             node.mtime, content=completed(empty, 0))
