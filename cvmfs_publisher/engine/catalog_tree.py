"""The catalogs one transaction edits, and their rewrite from the leaves up.

Only catalogs on the paths a publish touches are loaded, edited in place (SQLite working
copies) and re-uploaded; every other nested catalog keeps its hash. That is what makes
the cost of a publish follow the size of the change instead of the repository.

A staged tree that replaces a path brings back, whole and by hash, every nested catalog
whose subtree it stages unchanged: the content index remembers the print of the subtree
each new nested catalog was written from (``subtree_print``), so an unchanged release costs
no rows, no catalog write and no upload, only the walk that proves it unchanged.

Counters: ``self_*`` are recounted from a catalog's rows; ``subtree_*`` are carried as a
delta (old value, minus the totals of removed or rewritten children, plus the new totals
of rewritten children), so untouched children never have to be opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import shutil
import stat
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..cvmfs.catalog import (
    DIRECTORY_SIZE,
    ROOT_MODE,
    Catalog,
    Chunk,
    DirEntry,
    Flag,
    NestedRef,
    file_flags,
)
from ..cvmfs.counters import Counters, Tally
from ..cvmfs.dirtab import MARKER
from ..cvmfs.hashes import Algorithm, ContentHash, parent_path
from ..cvmfs.names import display, is_within
from ..entries import Kind, Owner
from ..errors import FormatError, InvalidPath
from .balance import choose_splits
from .staging import Node, StagedTree

AUTO_MARKER = ".cvmfsautocatalog"
log = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkingCatalog:
    mountpoint: str
    catalog: Catalog
    parent: WorkingCatalog | None
    old_hash: ContentHash | None = None
    old_size: int = 0  # raw bytes, as the parent's reference says (0: the root, or new)
    old_counters: Counters = field(default_factory=Counters)
    previous: tuple[ContentHash, int] | None = None  # (hash, revision) this one succeeds
    delta: Tally = field(default_factory=Tally)
    relink: set[str] = field(default_factory=set)  # directories whose link count may change
    retime: set[str] = field(default_factory=set)  # directories whose children changed
    dirty: bool = False
    done: tuple[ContentHash, int, DirEntry] | None = None  # new hash, size, root entry

    @property
    def counted_in_parent(self) -> bool:
        return self.old_hash is not None

    @property
    def depth(self) -> int:
        return self.mountpoint.count("/")

    def touch(self, directory: str, *, retime: bool) -> None:
        self.dirty = True
        self.relink.add(directory)
        if retime:
            self.retime.add(directory)


@dataclass(frozen=True)
class DroppedCatalog:
    """A nested catalog removed unchanged: what its mountpoint needs to take it back.

    One nested in a dropped catalog was never loaded: its root row and totals are read
    from the catalog itself if it is taken back (None until then).
    """

    content_hash: ContentHash
    size: int
    root: DirEntry | None = None
    total: Tally | None = None


def root_entry(now: int, owner: Owner) -> DirEntry:
    """The root directory as upstream's ``CreateRepository`` makes it."""
    return DirEntry("", ROOT_MODE, DIRECTORY_SIZE, now, int(Flag.DIR), owner.uid, owner.gid,
                    linkcount=2)


class CatalogTree:
    def __init__(
        self,
        workdir: Path,
        fetch: Callable[[ContentHash], Path],
        root_hash: ContentHash,
        *,
        now: int,
        owner: Owner,
        algorithm: Algorithm = Algorithm.SHA1,
        empty_file: ContentHash | None = None,
        max_entries: int | None = None,
        min_entries: int = 1_000,
        prints: Callable[[ContentHash], bytes | None],
    ) -> None:
        self.workdir = workdir
        self.fetch = fetch
        self.now = now
        self.owner = owner
        self.algorithm = algorithm
        self.empty_file = empty_file  # stored empty object, for autocatalog markers
        self.max_entries = max_entries
        self.min_entries = min_entries
        self.loaded: dict[str, WorkingCatalog] = {}
        self._names = itertools.count()
        self._previous: dict[str, tuple[ContentHash, int] | None] = {}
        self._groups: dict[int, itertools.count] = {}
        # nested catalogs taken back whole when their staged subtree has the print they
        # were written from (``prints``: the content index's record)
        self.prints = prints
        self._dropped: dict[str, DroppedCatalog] = {}
        self.placed_prints: dict[str, bytes] = {}  # mountpoint -> print of its staged subtree
        self._print_cache: dict[int, bytes | None] = {}  # id(node): nested catalogs nest
        self.root = self._load("", root_hash, None)

    # -- loading --------------------------------------------------------------------------

    def _working_file(self) -> Path:
        return self.workdir / f"catalog-{next(self._names)}.db"

    def _load(self, mountpoint: str, content_hash: ContentHash, parent: WorkingCatalog | None,
              size: int = 0) -> WorkingCatalog:
        file = self._working_file()
        shutil.copyfile(self.fetch(content_hash), file)
        catalog = Catalog.open(file, writable=True)
        catalog.begin()
        wc = WorkingCatalog(mountpoint, catalog, parent, content_hash, size, catalog.counters(),
                            (content_hash, catalog.revision))
        self.loaded[mountpoint] = wc
        return wc

    def _child(self, ref: NestedRef, parent: WorkingCatalog) -> WorkingCatalog:
        """The working copy of a nested catalog, loaded on first use."""
        return self.loaded.get(ref.path) or self._load(ref.path, ref.content_hash, parent,
                                                       ref.size)

    def locate(self, path: str) -> WorkingCatalog:
        """The deepest catalog containing ``path`` (for a mountpoint: the nested one)."""
        wc = self.root
        while True:
            for ref in wc.catalog.nested():
                if is_within(path, ref.path):
                    wc = self._child(ref, wc)
                    break
            else:
                return wc

    def lookup(self, path: str) -> DirEntry | None:
        return self.locate(path).catalog.lookup(path)

    # -- removing ---------------------------------------------------------------------------

    def remove(self, path: str, *, retime: bool = True, merge: bool = True) -> bool:
        """Delete ``path`` and everything below it, nested catalogs included.

        ``retime=False`` when the path is about to be replaced: its parent keeps its mtime.
        Removing a catalog's ``.cvmfscatalog`` folds the catalog into its parent, as
        upstream does (``merge=False`` when the marker is about to be replaced).
        """
        if path == "":
            for child in self.root.catalog.listing(""):
                self._remove_inside(self.root, f"/{child.name}")
            self.root.touch("", retime=False)
            return True
        wc = self.locate(path)
        if wc.catalog.lookup(path) is None:
            return False
        if path == wc.mountpoint:
            parent = wc.parent
            assert parent is not None
            self._drop(wc)
            parent.catalog.drop_nested(path)
            parent.catalog.remove_tree(path)
            parent.touch(parent_path(path), retime=retime)
        else:
            self._remove_inside(wc, path)
            wc.touch(parent_path(path), retime=retime)
            if merge and path == f"{wc.mountpoint}/{MARKER}" and wc.parent is not None:
                self.merge(wc)
        return True

    def _remove_inside(self, wc: WorkingCatalog, path: str) -> None:
        for ref in wc.catalog.nested():
            if is_within(ref.path, path):
                self._drop(self._child(ref, wc))
                wc.catalog.drop_nested(ref.path)
        wc.catalog.remove_tree(path)

    def _drop(self, wc: WorkingCatalog) -> None:
        """Forget a catalog and its loaded descendants; its parent loses its totals.

        One this publish has not edited can come back whole (``_reuse``).
        """
        assert wc.parent is not None
        if wc.counted_in_parent:
            wc.parent.delta = wc.parent.delta - wc.old_counters.total()
        root = wc.catalog.lookup(wc.mountpoint)
        if wc.old_hash is not None and not wc.dirty and wc.old_size and root is not None:
            self._dropped[wc.mountpoint] = DroppedCatalog(wc.old_hash, wc.old_size, root,
                                                          wc.old_counters.total())
        for ref in wc.catalog.nested():  # as stored: a hash names the same rows anywhere
            if ref.path not in self.loaded and ref.size:
                self._dropped.setdefault(ref.path, DroppedCatalog(ref.content_hash, ref.size))
        for mountpoint in [m for m in self.loaded if is_within(m, wc.mountpoint)]:
            gone = self.loaded.pop(mountpoint)
            with contextlib.suppress(Exception):
                gone.catalog.conn.close()
        self._previous[wc.mountpoint] = wc.previous

    # -- inserting --------------------------------------------------------------------------

    def ensure_directory(self, path: str) -> None:
        """Create missing parents like ``mkdir -p``, as directories of the default owner.

        Top down with a loop, not recursion: a path may be thousands of levels deep.
        """
        current = ""
        for part in path.split("/")[1:] if path else []:
            current = f"{current}/{part}"
            self._ensure_one_directory(current)

    def _ensure_one_directory(self, path: str) -> None:
        wc = self.locate(path)
        entry = wc.catalog.lookup(path)
        if entry is None:
            name = path.rsplit("/", 1)[1]
            wc.catalog.add(path, DirEntry(name, ROOT_MODE, DIRECTORY_SIZE, self.now,
                                          int(Flag.DIR), self.owner.uid, self.owner.gid,
                                          linkcount=2))
            wc.touch(parent_path(path), retime=True)
        elif not entry.is_directory:
            raise InvalidPath(f"cannot publish below {display(path)}: it is not a directory")

    def insert(self, path: str, tree: StagedTree, *, existed: bool) -> None:
        """Add a staged tree at ``path`` (whose parent exists and which itself does not)."""
        rows: dict[WorkingCatalog, list[tuple[str, DirEntry, tuple[Chunk, ...]]]] = (
            defaultdict(list)
        )
        if path == "":
            if tree.root.kind is not Kind.DIR:
                raise InvalidPath("the repository root can only be replaced by a directory")
            self._place("", tree.root, self.root, rows)
            self.root.touch("", retime=False)
        else:
            wc = self.locate(parent_path(path))
            self._place(path, tree.root, wc, rows)
            wc.touch(parent_path(path), retime=not existed)
        for wc, items in rows.items():
            wc.catalog.add_many(items)
            wc.dirty = True
        directory = parent_path(path)
        if path.endswith(f"/{MARKER}") and tree.root.kind is Kind.FILE and directory:
            holder = self.locate(directory)
            if holder.mountpoint != directory:  # a marker added to an existing directory
                self.split(holder, directory, markers=False)

    def _place(self, path: str, node: Node, wc: WorkingCatalog, rows: dict) -> None:
        """Rows for ``node`` at ``path`` and everything below it, parents first, names
        sorted; with a stack, not recursion: a staged tree may be thousands of levels deep."""
        stack: list[tuple[str, Node, WorkingCatalog, int, int]] = [(path, node, wc, 0, 1)]
        while stack:
            path, node, wc, group, members = stack.pop()
            if node.kind is not Kind.DIR:
                entry, chunks = _leaf_entry(node, path.rsplit("/", 1)[-1], self.algorithm)
                if members > 1:
                    entry = entry.evolve(linkcount=members, hardlink_group=group)
                rows[wc].append((path, entry, chunks))
                continue
            placed = self._place_directory(path, node, wc, rows)
            if placed is not None:
                stack.extend(reversed(self._children(path, node, placed)))

    def _place_directory(self, path: str, node: Node, wc: WorkingCatalog, rows: dict
                         ) -> WorkingCatalog | None:
        """The directory's row (none for the root, which keeps its own); returns the
        catalog its children go to: a new nested one if it holds a catalog marker, None if
        the catalog it had is taken back whole."""
        if path == "":
            return wc
        name = path.rsplit("/", 1)[-1]
        if not self._wants_catalog(node):
            rows[wc].append((path, self._directory_entry(node, name), ()))
            return wc
        if self._reuse(path, node, wc):
            return None  # no row built: a kept node has no children to count
        return self._new_nested(path, self._directory_entry(node, name), wc)

    def _reuse(self, path: str, node: Node, parent: WorkingCatalog) -> bool:
        """Mount the catalog removed from ``path`` again if the staged subtree has the print
        that catalog was written from: same rows, so none are built, written or uploaded.
        Otherwise remember the print for the catalog about to be written.

        A kept node (staged without its subtree) must find its catalog: the transaction
        stages one only for a nested catalog of the head with that print, which the
        replace just removed."""
        mark = subtree_print(node, self.algorithm, self._print_cache)
        old = self._dropped.pop(path, None)
        if mark is not None:
            self.placed_prints[path] = mark
        if mark is None or old is None or self.prints(old.content_hash) != mark:
            if node.kept is not None:
                raise AssertionError(f"{display(path)}: the kept catalog is not the head's")
            return False
        root, total = self._root_and_total(path, old)
        parent.catalog.add(path, _mountpoint_row(root))
        parent.catalog.set_nested(NestedRef(path, old.content_hash, old.size))
        parent.delta = parent.delta + total
        parent.dirty = True
        return True

    def _root_and_total(self, path: str, old: DroppedCatalog) -> tuple[DirEntry, Tally]:
        if old.root is not None and old.total is not None:
            return old.root, old.total
        catalog = Catalog.open(self.fetch(old.content_hash))
        try:
            root = catalog.lookup(path)
            if root is None:
                raise FormatError(f"nested catalog {old.content_hash} has no root {display(path)}")
            return root, catalog.counters().total()
        finally:
            catalog.close()

    def _children(self, path: str, node: Node, wc: WorkingCatalog
                  ) -> list[tuple[str, Node, WorkingCatalog, int, int]]:
        """(path, node, catalog, hard-link group, group size) of each child, names sorted."""
        children = node.children or {}
        members = _inode_members(children)
        group_ids: dict[int, int] = {}
        result = []
        for name in sorted(children):
            child = children[name]
            inode = id(child.primary or child)
            count = members.get(inode, 1)
            if count > 1 and inode not in group_ids:
                group_ids[inode] = self._next_group_id(wc)
            result.append((f"{path}/{name}", child, wc, group_ids.get(inode, 0), count))
        return result

    def _next_group_id(self, wc: WorkingCatalog) -> int:
        counter = self._groups.get(id(wc))
        if counter is None:
            counter = itertools.count(wc.catalog.max_hardlink_group() + 1)
            self._groups[id(wc)] = counter
        return next(counter)

    @staticmethod
    def _wants_catalog(node: Node) -> bool:
        if node.kept is not None:
            return True
        marker = (node.children or {}).get(MARKER)
        return marker is not None and marker.kind is Kind.FILE

    @staticmethod
    def _directory_entry(node: Node, name: str) -> DirEntry:
        """A directory's row; every node field read here is in ``subtree_print`` too."""
        subdirs = sum(1 for c in (node.children or {}).values() if c.kind is Kind.DIR)
        return DirEntry(name, node.st_mode, DIRECTORY_SIZE, node.mtime, int(Flag.DIR),
                        node.uid, node.gid, linkcount=2 + subdirs, xattr=node.xattr)

    def _new_nested(self, path: str, entry: DirEntry, parent: WorkingCatalog) -> WorkingCatalog:
        """Mountpoint row in the parent, a fresh catalog whose root row mirrors it."""
        parent.catalog.add(path, entry.evolve(flags=int(Flag.DIR | Flag.NESTED_MOUNTPOINT)))
        return self._create_catalog(path, entry, parent)

    def _create_catalog(self, path: str, entry: DirEntry, parent: WorkingCatalog
                        ) -> WorkingCatalog:
        parent.catalog.set_nested(NestedRef(path, ContentHash.zero(self.algorithm), 0))
        parent.dirty = True
        previous = self._previous.get(path)
        file = self._working_file()
        catalog = Catalog.create(
            file, path, entry.evolve(flags=int(Flag.DIR | Flag.NESTED_ROOT)),
            {"revision": previous[1] if previous else 0, "last_modified": self.now},
        )
        catalog.begin()
        wc = WorkingCatalog(path, catalog, parent, previous=previous, dirty=True)
        self.loaded[path] = wc
        return wc

    # -- splitting ----------------------------------------------------------------------------

    def balance(self) -> list[str]:
        """Split every dirty catalog above ``max_entries`` rows; returns the new mountpoints."""
        if self.max_entries is None:
            return []
        created: list[str] = []
        for wc in [w for w in self.loaded.values() if w.dirty]:
            if wc.catalog.row_count() <= self.max_entries:
                continue
            paths = choose_splits(wc.catalog.shape(), wc.mountpoint, self.max_entries,
                                  self.min_entries)
            if not paths:
                log.warning("catalog %s holds %d entries and has no directory that can be split "
                            "off (%d-%d entries)", display(wc.mountpoint),
                            wc.catalog.row_count(), self.min_entries, self.max_entries)
            for path in paths:
                self.split(wc, path)
                created.append(path)
        return created

    def split(self, wc: WorkingCatalog, path: str, *, markers: bool = True) -> WorkingCatalog:
        """Move the subtree below directory ``path`` of ``wc`` into a new nested catalog.

        ``markers`` adds ``.cvmfscatalog`` and ``.cvmfsautocatalog`` (autocatalogs); a split
        caused by a published marker already has its marker among the moved rows.
        """
        entry = wc.catalog.lookup(path)
        assert entry is not None and entry.is_directory and not entry.is_mountpoint
        self._unprint(wc)
        child = self._create_catalog(path, entry, wc)
        wc.catalog.move_below(path, child.catalog)
        for ref in wc.catalog.nested():
            if ref.path != path and is_within(ref.path, path):
                grand = self._child(ref, wc)
                wc.catalog.drop_nested(ref.path)
                child.catalog.set_nested(ref)
                grand.parent = child
                if grand.counted_in_parent:
                    total = grand.old_counters.total()
                    wc.delta, child.delta = wc.delta - total, child.delta + total
        wc.catalog.replace_entry(path, entry.evolve(
            flags=int(Flag.DIR | Flag.NESTED_MOUNTPOINT)))
        if not markers:
            return child
        if self.empty_file is None:
            raise AssertionError("autocatalogs need the empty object stored first")
        for marker in (MARKER, AUTO_MARKER):
            child.catalog.add(f"{path}/{marker}", DirEntry(
                marker, stat.S_IFREG | 0o644, 0, self.now,
                file_flags(algorithm=self.algorithm), entry.uid, entry.gid,
                content_hash=self.empty_file))
        return child

    def merge(self, child: WorkingCatalog) -> None:
        """Fold a nested catalog back into its parent: the inverse of ``split``."""
        parent = child.parent
        assert parent is not None
        self._unprint(parent)
        path = child.mountpoint
        root = child.catalog.lookup(path)
        assert root is not None
        child.catalog.remove_tree(f"{path}/{AUTO_MARKER}")
        offset = parent.catalog.max_hardlink_group()
        if offset:  # group ids are unique per catalog: keep the child's apart
            child.catalog.conn.execute(
                "UPDATE catalog SET hardlinks = hardlinks + (? << 32) WHERE hardlinks >> 32 > 0",
                (offset,))
        child.catalog.move_below(path, parent.catalog)
        parent.catalog.replace_entry(path, root.evolve(flags=int(Flag.DIR)))
        parent.catalog.drop_nested(path)
        if child.counted_in_parent:
            parent.delta = parent.delta - child.old_counters.total()
        for ref in child.catalog.nested():
            grand = self._child(ref, child)
            parent.catalog.set_nested(ref)
            grand.parent = parent
            if grand.counted_in_parent:
                parent.delta = parent.delta + grand.old_counters.total()
        del self.loaded[path]
        with contextlib.suppress(Exception):
            child.catalog.conn.close()
        parent.touch(path, retime=False)

    def _unprint(self, wc: WorkingCatalog) -> None:
        """A split or merge changed rows after placement: no print for ``wc`` and the
        catalogs above it, so a later publish rebuilds them under the options it has then."""
        ancestor: WorkingCatalog | None = wc
        while ancestor is not None:
            self.placed_prints.pop(ancestor.mountpoint, None)
            ancestor = ancestor.parent

    # -- writing ----------------------------------------------------------------------------

    def finalize(self, store: Callable[[bytes], ContentHash], ttl: int) -> WorkingCatalog:
        """Rewrite every dirty catalog and its ancestors, deepest first; returns the root."""
        self.balance()
        for wc in list(self.loaded.values()):
            if wc.dirty:
                ancestor = wc.parent
                while ancestor is not None:
                    ancestor.dirty = True
                    ancestor = ancestor.parent
        order = sorted((wc for wc in self.loaded.values() if wc.dirty), key=lambda w: -w.depth)
        for wc in order:
            self._sync_children(wc)
            self._refresh_directories(wc)
            self._write(wc, store, ttl)
        for wc in self.loaded.values():
            if not wc.dirty:
                wc.catalog.conn.close()
        return self.root

    def _sync_children(self, wc: WorkingCatalog) -> None:
        for child in self.loaded.values():
            if child.parent is not wc or child.done is None:
                continue
            new_hash, size, child_root = child.done
            wc.catalog.set_nested(NestedRef(child.mountpoint, new_hash, size))
            wc.catalog.replace_entry(child.mountpoint, _mountpoint_row(child_root))

    def _refresh_directories(self, wc: WorkingCatalog) -> None:
        for directory in sorted(wc.relink):
            entry = wc.catalog.lookup(directory)
            if entry is None or not entry.is_directory or entry.is_mountpoint:
                continue
            linkcount = 2 + wc.catalog.child_directory_count(directory)
            mtime = self.now if directory in wc.retime and directory != "" else entry.mtime
            if (linkcount, mtime) != (entry.linkcount, entry.mtime):
                wc.catalog.replace_entry(directory, entry.evolve(linkcount=linkcount, mtime=mtime))

    def _write(self, wc: WorkingCatalog, store: Callable[[bytes], ContentHash], ttl: int) -> None:
        catalog = wc.catalog
        counters = Counters(catalog.count_own(), wc.old_counters.subtree + wc.delta)
        catalog.write_counters(counters)
        previous_hash, previous_revision = wc.previous or (ContentHash.zero(self.algorithm), 0)
        catalog.set_property("revision", previous_revision + 1)
        catalog.set_property("last_modified", self.now)
        catalog.set_property("previous_revision", str(previous_hash))
        if wc.mountpoint == "" and "TTL" not in catalog.properties:
            catalog.set_property("TTL", ttl)
        root = catalog.lookup(wc.mountpoint)
        assert root is not None
        catalog.conn.execute("COMMIT")
        _vacuum_if_sparse(catalog)
        catalog.close()
        data = catalog.file.read_bytes()
        new_hash = store(data)
        wc.done = (new_hash, len(data), root)
        if wc.parent is not None:
            old = wc.old_counters.total() if wc.counted_in_parent else Tally()
            wc.parent.delta = wc.parent.delta + counters.total() - old

    def close(self) -> None:
        for wc in self.loaded.values():
            with contextlib.suppress(Exception):
                wc.catalog.conn.close()


def _vacuum_if_sparse(catalog: Catalog) -> None:
    """Upstream vacuums when more than a quarter of the pages are free."""
    pages = catalog.conn.execute("PRAGMA page_count").fetchone()[0]
    free = catalog.conn.execute("PRAGMA freelist_count").fetchone()[0]
    if pages and free * 4 > pages:
        catalog.conn.execute("VACUUM")


def _mountpoint_row(root: DirEntry) -> DirEntry:
    """The parent's row for a nested catalog: the catalog's own root row, flagged as the
    mountpoint instead of the root."""
    return root.evolve(flags=int((root.flags & ~Flag.NESTED_ROOT) | Flag.NESTED_MOUNTPOINT))


def _inode_members(children: dict[str, Node]) -> dict[int, int]:
    """Files per inode within one directory: upstream keeps hard links only inside one."""
    counts: dict[int, int] = defaultdict(int)
    for child in children.values():
        if child.kind is Kind.FILE:
            counts[id(child.primary or child)] += 1
    return counts


def _leaf_entry(node: Node, name: str, algorithm: Algorithm
                ) -> tuple[DirEntry, tuple[Chunk, ...]]:
    """A file's, link's or device's row; every node field read here is in ``_leaf_print``
    too (a field missing there lets a catalog be taken back with its stale value)."""
    common = {"name": name, "mode": node.st_mode, "mtime": node.mtime, "uid": node.uid,
              "gid": node.gid, "xattr": node.xattr}
    if node.kind is Kind.FILE:
        assert node.content is not None
        stored = node.content.result()
        chunked = bool(stored.chunks)
        flags = file_flags(algorithm=algorithm, chunked=chunked, compression=stored.compression)
        return DirEntry(size=stored.size, flags=flags, content_hash=stored.content_hash,
                        **common), stored.chunks
    if node.kind is Kind.SYMLINK:
        return DirEntry(size=node.size, flags=int(Flag.FILE | Flag.LINK), symlink=node.target,
                        **common), ()
    size = node.rdev if stat.S_ISCHR(node.st_mode) or stat.S_ISBLK(node.st_mode) else 0
    return DirEntry(size=size, flags=int(Flag.FILE | Flag.SPECIAL), **common), ()


def subtree_print(top: Node, algorithm: Algorithm,
                  prints: dict[int, bytes | None] | None = None) -> bytes | None:
    """A digest of everything the rows of a catalog made from ``top``'s subtree depend on:
    names, kinds, modes, owners, times, sizes, targets, devices, xattrs, every file's
    object or chunk list, and the algorithm. None for a subtree with hard links (their
    group numbers depend on the catalog they land in).

    Bottom-up, a digest per directory, with a stack: a staged tree may be thousands of
    levels deep. ``prints`` (by ``id`` of the node) carries directory prints from one call
    to the next, so a catalog nested in another is printed once, not once per ancestor.
    """
    prints = {} if prints is None else prints
    stack: list[tuple[Node, bool]] = [(top, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in prints:
            continue
        if node.kept is not None:
            prints[id(node)] = node.kept
            continue
        children = node.children or {}
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children.values()
                         if c.kind is Kind.DIR and id(c) not in prints)
            continue
        rows: list[object] = [algorithm.value, node.st_mode, node.uid, node.gid, node.mtime,
                              node.xattr]
        for name in sorted(children):
            child = children[name]
            row = prints[id(child)] if child.kind is Kind.DIR else _leaf_print(child)
            if row is None:
                break
            rows.append((name, row))
        else:
            prints[id(node)] = hashlib.blake2b(repr(rows).encode(), digest_size=20).digest()
            continue
        prints[id(node)] = None
    return prints[id(top)]


def _leaf_print(node: Node) -> tuple | None:
    if node.primary is not None:
        return None
    if node.kind is not Kind.FILE:
        return (node.st_mode, node.uid, node.gid, node.mtime, node.size, node.target,
                node.rdev, node.xattr)
    assert node.content is not None
    stored = node.content.result()
    whole = stored.content_hash
    chunks = tuple((c.offset, c.size, c.content_hash.digest) for c in stored.chunks)
    return (node.st_mode, node.uid, node.gid, node.mtime, stored.size, node.xattr,
            whole.digest if whole else None, int(stored.compression), chunks)
