"""A full consistency check of a repository (spec section 10, mirroring ``swissknife check``).

Unlike the client, which trusts whatever it is not currently reading, this walks every
catalog row, recomputes keys, link counts and counters, and (by default) re-hashes every
object. Problems are collected, not raised, so one run reports everything it can see.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
import tempfile
from collections import Counter as Multiset
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.catalog import COMPRESSION_SHIFT, Catalog, DirEntry, Flag, NestedRef, row_to_entry
from ..cvmfs.compression import PIECE, Compression
from ..cvmfs.counters import FIELDS, Counters, Tally
from ..cvmfs.hashes import Algorithm, ContentHash, Hasher, Suffix, parent_path, path_key
from ..cvmfs.history import History
from ..cvmfs.manifest import Manifest
from ..cvmfs.names import RESERVED, display, name_problem, shown
from ..cvmfs.reflog import Reflog, RefType
from ..errors import FormatError, ObjectNotFound, PublisherError, SignatureError
from ..storage.base import REFLOG, Storage
from .options import MAX_OBJECT_SIZE
from .reader import CheckedObject, ObjectCache, bounded
from .trust import read_manifest, verify_head

_KEYS = "rowid, md5path_1, md5path_2, parent_1, parent_2"


@dataclass
class Report:
    fqrn: str = ""
    revision: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    catalogs: int = 0
    entries: int = 0
    objects: int = 0
    object_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class Verifier:
    def __init__(self, storage: Storage, cache: ObjectCache, *, check_data: bool = True) -> None:
        self.storage = storage
        self.cache = cache
        self.check_data = check_data
        self.report = Report()
        # (key, compression) -> decompressed size (None: unchecked)
        self._objects: dict[tuple[str, Compression], int | None] = {}

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    # -- repository level ---------------------------------------------------------------------

    def run(self, master_keys: list[rsa.RSAPublicKey], fqrn: str | None,
            at: dt.datetime | None) -> Report:
        try:
            manifest, _doc = read_manifest(self.storage)
        except PublisherError as exc:
            self.problem(f"manifest: {exc}")
            return self.report
        self.report.fqrn, self.report.revision = manifest.fqrn, manifest.revision
        try:
            verify_head(self.storage, master_keys, fqrn=fqrn, at=at)
        except (SignatureError, FormatError) as exc:
            self.problem(str(exc))
        self._check_reflog(manifest)
        self._check_history(manifest)
        if manifest.metainfo is not None:
            self._object(manifest.metainfo, Suffix.METAINFO, "meta-info")
        self._check_tree(manifest)
        return self.report

    def _download_reflog(self, path: Path, algorithm: Algorithm) -> ContentHash | None:
        """The reflog streamed into ``path`` (bounded like any object); its checksum."""
        hasher = Hasher(algorithm)
        with self.storage.open(REFLOG) as stream, open(path, "wb") as sink:
            for block in bounded(stream, self.cache.max_object_size, REFLOG):
                hasher.update(block)
                sink.write(block)
        return hasher.result()

    def _check_reflog(self, manifest: Manifest) -> None:
        path = self.cache.directory / "verify-reflog.db"
        try:
            actual = self._download_reflog(path, manifest.root_catalog.algorithm)
        except ObjectNotFound:
            if manifest.reflog is not None:
                self.problem(f"{REFLOG} is missing but the manifest names one (Y)")
            return
        except FormatError as exc:
            path.unlink(missing_ok=True)
            self.problem(str(exc))
            return
        refs = [(manifest.root_catalog, RefType.CATALOG, "catalog root hash"),
                (manifest.certificate, RefType.CERTIFICATE, "certificate"),
                (manifest.history, RefType.HISTORY, "history"),
                (manifest.metainfo, RefType.METAINFO, "meta-info")]
        try:
            reflog = Reflog(path, writable=False)
        except FormatError as exc:
            self.problem(f"{REFLOG} is not a reflog database: {exc}")
            return
        try:
            missing = [f"failed to find {what} {h} in {REFLOG}" for h, t, what in refs
                       if h is not None and not reflog.contains(h, t)]
            if reflog.fqrn != manifest.fqrn:
                self.problem(f"{REFLOG} is for {reflog.fqrn!r}, the manifest for "
                             f"{manifest.fqrn!r}")
        finally:
            reflog.conn.close()
            path.unlink(missing_ok=True)
        self.report.problems.extend(missing)
        if manifest.reflog is not None and actual != manifest.reflog:
            if missing:
                self.problem(f"{REFLOG} checksum is {actual}, the manifest says {manifest.reflog}")
            else:
                self.report.warnings.append(
                    f"{REFLOG} is newer than the manifest (an interrupted publish); it holds "
                    "everything the manifest references and the next publish heals it")

    def _check_history(self, manifest: Manifest) -> None:
        if manifest.history is None:
            return
        try:
            history = History(self.cache.fetch(self.storage, manifest.history, Suffix.HISTORY),
                              writable=False)
        except FormatError as exc:
            self.problem(f"history {manifest.history}: {exc}")
            return
        try:
            self._history_rules(history, manifest)
        except FormatError as exc:
            self.problem(f"history {manifest.history}: {exc}")
        finally:
            history.conn.close()

    def _history_rules(self, history: History, manifest: Manifest) -> None:
        if history.fqrn != manifest.fqrn:
            self.problem(f"history is for {history.fqrn!r}, the manifest for {manifest.fqrn!r}")
        branches = {b: (parent, initial) for b, parent, initial in history.branches()}
        used = set()
        for tag in history.tags():
            used.add(tag.branch)
            if tag.branch not in branches:
                self.problem(f"tag {tag.name} is on unknown branch {tag.branch!r}")
            elif tag.revision < branches[tag.branch][1]:
                self.problem(f"tag {tag.name} predates its branch {tag.branch!r}")
            if not self.storage.exists(tag.root_hash.object_key(Suffix.CATALOG)):
                self.problem(f"tag {tag.name}: root catalog {tag.root_hash} is missing")
            if tag.name == "trunk" and (tag.root_hash, tag.revision) != (
                    manifest.root_catalog, manifest.revision):
                self.problem(f"tag trunk points at revision {tag.revision}, the manifest "
                             f"is revision {manifest.revision}")
        unused = set(branches) - used - {""}
        if unused:
            self.problem(f"history has unused branches {sorted(unused)}")

    # -- objects ------------------------------------------------------------------------------

    def _object(self, content_hash: ContentHash, suffix: Suffix, what: str,
                compression: Compression = Compression.ZLIB,
                promised: int | None = None) -> int | None:
        """Check one object once; returns its decompressed size when data is checked.

        File data and chunks are decoded as their entry's flags say (spec 2.7: ``-Z none``
        objects hold the plain bytes), exactly as the client will read them. The content
        is counted, never held, and inflated at most one piece past the size its row
        ``promised`` (None: the ceiling): a small mismatch is reported with the real size,
        a bomb stops right there.
        """
        key = content_hash.object_key(suffix)
        if (key, compression) in self._objects:
            return self._objects[key, compression]
        size: int | None = None
        if self.check_data:
            try:
                limit = self.cache.limit(promised) + PIECE
                with CheckedObject.fetch(self.storage, content_hash, suffix, limit,
                                         compression) as stored:
                    size = sum(len(piece) for piece in stored.content(limit))
                    self.report.object_bytes += stored.stored_size
            except ObjectNotFound:
                self.problem(f"{what}: object {key} is missing")
            except FormatError as exc:
                self.problem(f"{what}: object {key} is corrupt ({exc})")
        elif not self.storage.exists(key):
            self.problem(f"{what}: object {key} is missing")
        self._objects[key, compression] = size
        self.report.objects += 1
        return size

    # -- catalogs -----------------------------------------------------------------------------

    def _check_tree(self, manifest: Manifest) -> None:
        """Every catalog's own rules parents first, then the counters children first.

        An explicit stack, not recursion: nested catalogs can be as deep as directories.
        """
        visits: list[CatalogVisit] = []
        pending: list[tuple[ContentHash, str, int, DirEntry | None, CatalogVisit | None]] = [
            (manifest.root_catalog, "", manifest.catalog_size, None, None)]
        while pending:
            content_hash, mountpoint, size, mount_entry, parent = pending.pop()
            visit = self._catalog(content_hash, mountpoint, size, mount_entry)
            if parent is not None:
                parent.children.append(visit)
            if visit is not None:
                visits.append(visit)
                pending.extend((ref.content_hash, ref.path, ref.size, mount, visit)
                               for ref, mount in reversed(visit.refs))
        for visit in reversed(visits):
            visit.finish()

    def _catalog(self, content_hash: ContentHash, mountpoint: str, size: int,
                 mount_entry: DirEntry | None) -> CatalogVisit | None:
        """Check one catalog's own rules; None if it cannot be read at all."""
        what = f"catalog {display(mountpoint)}"
        try:
            file = self.cache.fetch(self.storage, content_hash, Suffix.CATALOG, size or None)
        except FormatError as exc:
            self.problem(f"{what} ({content_hash}): {exc}")
            return None
        self.report.objects += 1
        if file.stat().st_size != size:
            kind = "manifest B" if mountpoint == "" else "nested catalog size in the parent"
            self.problem(f"{what}: {kind} is {size}, the catalog has {file.stat().st_size} bytes")
        try:
            catalog = Catalog.open(file)
        except FormatError as exc:
            self.problem(f"{what}: failed to open catalog ({exc})")
            return None
        try:
            return CatalogCheck(self, catalog, mountpoint, mount_entry).run()
        except sqlite3.DatabaseError as exc:
            self.problem(f"{what}: unreadable catalog ({exc})")
            return None
        except FormatError as exc:  # a row that cannot be decoded (NULL name, bad flags...)
            self.problem(f"{what}: malformed catalog ({exc})")
            return None
        finally:
            catalog.conn.close()


@dataclass(eq=False)
class CatalogVisit:
    """One checked catalog, waiting for its children's totals to check its counters."""

    check: CatalogCheck
    stored: Counters | None
    own: Tally
    refs: list[tuple[NestedRef, DirEntry | None]]
    children: list[CatalogVisit | None] = field(default_factory=list)
    total: Tally | None = None

    def finish(self) -> None:
        """Compare the counters once every child has its total (an unreadable child leaves
        the subtree unknown: it is reported once, not again as its ancestors' counters)."""
        subtree: Tally | None = Tally()
        for child in self.children:
            subtree = None if child is None or child.total is None or subtree is None \
                else subtree + child.total
        self.check.compare_counters(self.stored, self.own, subtree)
        self.total = None if subtree is None else self.own + subtree


class CatalogCheck:
    """The per-catalog rules of ``swissknife check`` plus recomputed path keys."""

    def __init__(self, verifier: Verifier, catalog: Catalog, mountpoint: str,
                 mount_entry: DirEntry | None) -> None:
        self.v = verifier
        self.catalog = catalog
        self.mountpoint = mountpoint
        self.mount_entry = mount_entry
        self.where = f"catalog {display(mountpoint)}"
        self.seen_rows: set[int] = set()
        self.mountpoints: set[str] = set()
        self.row = f"{_KEYS}, {catalog.columns}"

    def problem(self, text: str) -> None:
        self.v.problem(f"{self.where}: {text}")

    def run(self) -> CatalogVisit | None:
        self.v.report.catalogs += 1
        props = self.catalog.properties
        if props.get("root_prefix", "") != self.mountpoint:
            self.problem(f"root prefix mismatch: expected {self.mountpoint or 'none'!r}, found "
                         f"{props.get('root_prefix', 'none')!r}")
        try:
            stored = self.catalog.counters()
        except FormatError as exc:
            self.problem(f"failed to open catalog ({exc})")
            stored = None
        root = self._root()
        if root is None:
            return None
        self._walk(root)
        total_rows = self.catalog.row_count()
        if total_rows != len(self.seen_rows):
            self._dangling()
        return CatalogVisit(self, stored, self.catalog.count_own(), self._children())

    def _rows(self, where: str, args: tuple) -> list[tuple]:
        return self.catalog.conn.execute(f"SELECT {self.row} FROM catalog WHERE {where}",
                                         args).fetchall()

    def _root(self) -> tuple[str, tuple, DirEntry] | None:
        rows = self._rows("md5path_1 = ? AND md5path_2 = ?", path_key(self.mountpoint))
        if not rows:
            self.problem("no root entry")
            return None
        row = rows[0]
        entry = _entry(row)
        if not entry.is_directory:
            self.problem("root entry is not a directory")
        nested = bool(entry.flags & Flag.NESTED_ROOT)
        if self.mountpoint == "" and nested:
            self.problem("root catalog's root entry is flagged as a nested root")
        expected_parent = (0, 0) if self.mountpoint == "" else path_key(
            parent_path(self.mountpoint))
        if (row[3], row[4]) != expected_parent:
            self.problem("root entry has a wrong parent key")
        if self.mountpoint and not nested:
            self.problem("nested root entry lacks the nested-root flag (32)")
        if self.mount_entry is not None:
            diffs = _differences(self.mount_entry, entry)
            if diffs:
                self.problem(f"nested root differs from its mountpoint in the parent: {diffs}")
        return self.mountpoint, row, entry

    def _walk(self, root: tuple[str, tuple, DirEntry]) -> None:
        stack = [root]
        self.seen_rows.add(root[1][0])
        self.v.report.entries += 1
        while stack:
            path, _row, entry = stack.pop()
            if entry.is_directory and not entry.is_mountpoint:
                children = self._rows("parent_1 = ? AND parent_2 = ?", path_key(path))
                stack.extend(self._check_children(path, entry, children))
            elif entry.is_mountpoint:
                if self._rows("parent_1 = ? AND parent_2 = ?", path_key(path)):
                    self.problem(f"non-empty nested catalog mountpoint {display(path)}")
                self.mountpoints.add(path)

    def _check_children(self, path: str, entry: DirEntry, rows: list[tuple]
                        ) -> list[tuple[str, tuple, DirEntry]]:
        result = []
        groups: dict[int, list[tuple[str, DirEntry]]] = defaultdict(list)
        subdirs = 0
        for row in rows:
            child = _entry(row)
            child_path = f"{path}/{child.name}"
            self.seen_rows.add(row[0])
            self.v.report.entries += 1
            if child.is_directory:
                subdirs += 1
            bad_name = name_problem(child.name)
            if bad_name is not None:  # no path can be built on it: the row is not followed
                self.problem(f"{display(path)}: entry name {shown(child.name)} {bad_name}")
                continue
            if (row[1], row[2]) != path_key(child_path):
                self.problem(f"{display(child_path)}: path key does not match its path")
            self._check_entry(child_path, child)
            if child.hardlink_group:
                groups[child.hardlink_group].append((child_path, child))
            result.append((child_path, row, child))
        if entry.linkcount != 2 + subdirs:
            self.problem(f"wrong linkcount for {display(path)}: {entry.linkcount}, expected "
                         f"{2 + subdirs}")
        self._check_groups(groups)
        if path == self.mountpoint and self.mountpoint and not any(
                c.name == ".cvmfscatalog" and c.is_regular for _, _, c in result):
            self.problem("nested catalog without marker (.cvmfscatalog)")
        return result

    def _check_entry(self, path: str, entry: DirEntry) -> None:
        if path == f"/{RESERVED}":
            self.problem(f"/{RESERVED} is reserved for CVMFS itself")
        if entry.name == ".cvmfscatalog" and parent_path(path) != self.mountpoint:
            self.problem(f"{display(path)}: catalog marker outside a catalog root")
        if entry.name == ".cvmfscatalog" and self.mountpoint == "" and parent_path(path) == "":
            self.problem("nested catalog marker in the root directory")
        if entry.linkcount <= 0:
            self.problem(f"{display(path)}: link count {entry.linkcount}")
        if entry.flags & (Flag.DIRECT_IO | Flag.EXTERNAL) and not entry.is_regular:
            self.problem(f"{display(path)}: direct-I/O or external flag on a non-regular file")
        if entry.is_directory:
            if entry.hardlink_group:
                self.problem(f"{display(path)}: directory in a hard-link group")
        elif entry.is_symlink:
            if entry.content_hash is not None or entry.size != len(entry.symlink.encode()):
                self.problem(f"{display(path)}: symlink with a hash or size != target length")
        elif entry.is_special:
            self._check_special(path, entry)
        else:
            self._check_file(path, entry)

    def _check_special(self, path: str, entry: DirEntry) -> None:
        device = stat.S_ISCHR(entry.mode) or stat.S_ISBLK(entry.mode)
        if entry.content_hash is not None or entry.symlink or (entry.size and not device):
            self.problem(f"{display(path)}: special file with a hash, target or size")

    def _check_file(self, path: str, entry: DirEntry) -> None:
        what = f"{self.where}: {display(path)}"
        bits = (entry.flags >> COMPRESSION_SHIFT) & 7
        if bits not in set(Compression):
            self.problem(f"{display(path)}: unknown compression {bits} in its flags")
            return
        if entry.is_external:
            return
        if entry.is_chunked:
            self._check_chunks(path, entry)
            return
        if entry.content_hash is None:
            self.problem(f"{display(path)}: regular file without a content hash")
            return
        size = self.v._object(entry.content_hash, Suffix.NONE, what, entry.compression,
                              entry.size)
        if size is not None and size != entry.size:
            self.problem(f"{display(path)}: content is {size} bytes, the catalog says "
                         f"{entry.size}")

    def _check_chunks(self, path: str, entry: DirEntry) -> None:
        chunks = self.catalog.chunks(path)
        if entry.content_hash is not None:
            self.v._object(entry.content_hash, Suffix.NONE, f"{self.where}: {display(path)}",
                           entry.compression, entry.size)
        if not chunks:
            self.problem(f"{display(path)}: chunked file without chunks")
            return
        offset = 0
        for chunk in chunks:
            if chunk.offset != offset:
                self.problem(f"{display(path)}: chunks do not tile the file (gap or overlap "
                             f"at {offset})")
                return
            size = self.v._object(chunk.content_hash, Suffix.PARTIAL,
                                  f"{self.where}: {display(path)} chunk at {chunk.offset}",
                                  entry.compression, chunk.size)
            if size is not None and size != chunk.size:
                self.problem(f"{display(path)}: chunk at {chunk.offset} is {size} bytes, the "
                             f"catalog says {chunk.size}")
            offset += chunk.size
        if offset != entry.size:
            self.problem(f"{display(path)}: chunks sum to {offset} bytes, file size {entry.size}")

    def _check_groups(self, groups: dict[int, list[tuple[str, DirEntry]]]) -> None:
        for group, members in groups.items():
            paths = ", ".join(display(p) for p, _ in members)
            if any(e.linkcount != len(members) for _, e in members):
                self.problem(f"hard-link group {group} ({paths}): link count differs from "
                             f"its {len(members)} members")
            first = members[0][1]
            if any(_differences(first, e, ignore=("name",)) for _, e in members[1:]):
                self.problem(f"hard-link group {group} ({paths}): members differ")

    def _dangling(self) -> None:
        seen = self.seen_rows
        orphans = [r for r in self.catalog.conn.execute(f"SELECT {self.row} FROM catalog")
                   if r[0] not in seen]
        names = ", ".join(repr(r[12]) for r in orphans[:5])
        self.problem(f"{len(orphans)} row(s) not reachable from the catalog root (wrong parent "
                     f"key?): {names}")

    def _children(self) -> list[tuple[NestedRef, DirEntry | None]]:
        """The child catalogs to check next, each with its mountpoint row."""
        refs = self.catalog.nested()
        registered = Multiset(ref.path for ref in refs)
        for path, count in registered.items():
            if count > 1:
                self.problem(f"nested catalog {path} registered {count} times")
        for path in self.mountpoints - set(registered):
            self.problem(f"mountpoint {display(path)} is not in nested_catalogs")
        children = []
        for ref in refs:
            if ref.path not in self.mountpoints:
                self.problem(f"nested catalog {ref.path} has no mountpoint entry")
                continue
            children.append((ref, self.catalog.lookup(ref.path)))
        return children

    def compare_counters(self, stored: Counters | None, own: Tally, subtree: Tally | None
                         ) -> None:
        """The 24 counters; ``subtree_*`` only when every child could be counted."""
        if stored is not None:
            for name in FIELDS:
                for kind, actual, recorded in (("self", own, stored.own),
                                               ("subtree", subtree, stored.subtree)):
                    if actual is None:
                        continue
                    if getattr(actual, name) != getattr(recorded, name):
                        self.problem(f"statistics counter mismatch: {kind}_{name} is "
                                     f"{getattr(recorded, name)}, recomputed "
                                     f"{getattr(actual, name)}")


def _entry(row: tuple) -> DirEntry:
    return row_to_entry(row[5:])


_COMPARED = ("name", "mode", "size", "mtime", "uid", "gid", "linkcount", "xattr", "symlink",
             "content_hash", "hardlink_group")


def _differences(a: DirEntry, b: DirEntry, ignore: tuple[str, ...] = ()) -> list[str]:
    return [f for f in _COMPARED if f not in ignore and getattr(a, f) != getattr(b, f)]


def verify(storage: Storage, master_keys: list[rsa.RSAPublicKey], *, fqrn: str | None,
           at: dt.datetime | None = None, check_data: bool = True,
           work_dir: Path | None = None, max_object_size: int = MAX_OBJECT_SIZE) -> Report:
    """Verify from scratch: a fresh object cache, so every byte is read from the storage."""
    with tempfile.TemporaryDirectory(prefix="cvmfs-verify-", dir=work_dir) as tmp:
        cache = ObjectCache(Path(tmp), max_object_size)
        return Verifier(storage, cache, check_data=check_data).run(master_keys, fqrn, at)
