"""One native publish: stage changes, then commit them as a new signed revision.

Commit order is what keeps every crash harmless: file objects, then catalogs from the
leaves up, the history, certificate and meta-info, the reflog, a durability barrier, and
the manifest last. Until the manifest is replaced, clients and the next publisher see the
previous revision; what was uploaded before is unreferenced and garbage collection takes it.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..cvmfs.catalog import Catalog
from ..cvmfs.compression import Compression, check_and_decode
from ..cvmfs.hashes import ContentHash, Suffix, parent_path, parse_object_key
from ..cvmfs.history import RESERVED, History, Tag, check_tag_name
from ..cvmfs.key_material import KeySet
from ..cvmfs.manifest import Manifest
from ..cvmfs.metainfo import default_metainfo
from ..cvmfs.names import display, is_within, normalize_path
from ..cvmfs.reflog import Reflog, RefType
from ..entries import Entry, Kind, PathContent
from ..errors import (
    FormatError,
    ObjectNotFound,
    PathNotFound,
    SourceError,
    TagError,
    UsageError,
)
from ..storage.base import MANIFEST, REFLOG, Storage
from .catalog_tree import MARKER, CatalogTree
from .content_index import ContentIndex
from .diff import diff
from .dirtab import DIRTAB, Dirtab
from .gc import GcPlan, plan
from .options import EngineOptions
from .pipeline import ObjectPipeline, PendingFile, StoredFile, completed
from .reader import ObjectCache, RepositoryReader
from .staging import Node, StagedTree
from .trust import TrustedHead

log = logging.getLogger(__name__)


@dataclass
class CommitResult:
    revision: int
    root_hash: str
    tag: str | None
    files: int
    bytes_in: int
    objects_written: int
    objects_skipped: int
    objects_reused: int
    bytes_written: int
    catalogs_written: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Op:
    path: str
    tree: StagedTree | None  # None: remove


class Transaction:
    def __init__(
        self,
        storage: Storage,
        head: TrustedHead,
        keys: KeySet,
        options: EngineOptions,
        scratch: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.storage = storage
        self.head = head
        self.keys = keys
        self.options = options
        self.scratch = scratch
        self.started = time.monotonic()
        self.now = int(time.time())
        self.cache = ObjectCache(options.cache_dir / "objects")
        self.reader = RepositoryReader(storage, head.manifest, self.cache)
        self.index = ContentIndex.for_storage(options.cache_dir, storage.location)
        self.pipeline = ObjectPipeline(
            storage,
            algorithm=options.algorithm,
            level=options.compression_level,
            chunking=options.chunking,
            workers=options.workers,
            progress=progress,
            index=self.index,
        )
        self.ops: list[_Op] = []
        self.tag_changes: list[tuple[Tag, bool]] = []  # (tag, add?) in order
        self.rollback_to: Tag | None = None
        self.reflog_drops: set[str] = set()  # hash strings garbage collection deletes
        self.finished = False

    @property
    def fqrn(self) -> str:
        return self.head.manifest.fqrn

    # -- staging ----------------------------------------------------------------------------

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        """Make ``path`` hold exactly what ``entries`` describe; content outside is kept."""
        path = normalize_path(path)
        tree = StagedTree(self.now, self.options.owner, self.options.default_owner)
        tree.add_stream(entries, self._store)
        self.ops.append(_Op(path, tree))

    def remove(self, path: str) -> None:
        path = normalize_path(path)
        if path == "":
            raise PathNotFound("refusing to remove the repository root; publish an empty "
                               "directory at / to clear it")
        self.ops.append(_Op(path, None))

    def _store(self, entry: Entry) -> PendingFile:
        if entry.content is None:
            raise SourceError(f"file entry {entry.path!r} has no content")
        if isinstance(entry.content, PathContent):
            return self.pipeline.add_path(entry.content.path, entry.size)
        with entry.content.open() as stream:
            return self.store(stream, entry.size)

    def store(self, stream: BinaryIO, size_hint: int,
              compression: Compression = Compression.ZLIB) -> PendingFile:
        """Consume one file's bytes now; objects are written in the background.

        For producers that must read content before the final tree is known (see
        ``Entry.stored``). Objects of content that ends up unused are harmless orphans.
        ``Compression.NONE`` stores the bytes as they are (valid CVMFS, faster, larger).
        """
        return self.pipeline.add_file(stream, size_hint, compression)

    def checkpoint(self) -> int:
        """A mark to ``discard`` back to, e.g. when one image of a batch fails."""
        return len(self.ops)

    def discard(self, mark: int) -> None:
        """Forget every change staged after ``mark``; their objects become orphans."""
        del self.ops[mark:]

    # -- garbage collection ------------------------------------------------------------------

    def plan_gc(self, keep_revisions: int, keep_since: dt.datetime | None) -> GcPlan:
        """What garbage collection would delete; nothing is changed."""
        return plan(self.reader, self.storage, keep_revisions, keep_since)

    def apply_gc(self, plan: GcPlan) -> None:
        """Forget dropped tags and deleted roots in the history and reflog at commit."""
        for name in plan.dropped_tags:
            self.tag_changes.append((Tag(name, ContentHash.zero(), 0, 0), False))
        self.reflog_drops = {str(parse_object_key(key)[0]) for key in plan.garbage}

    # -- tags and rollback --------------------------------------------------------------------

    def check_tag(self, tag: str) -> None:
        """Fail before any work when a tag name cannot be used."""
        check_tag_name(tag)
        if tag in RESERVED:
            raise TagError(f"tag name {tag!r} is reserved")
        if self.reader.tag(tag) is not None:
            raise TagError(f"tag {tag!r} already exists; remove it first or pick another name")

    def add_tag(self, name: str, target: str | None = None, message: str = "") -> Tag:
        """Name an existing revision (default: the current one) without new content."""
        self.check_tag(name)
        found = self.reader.resolve(target)
        tag = Tag(name, found.root_hash, found.revision, found.timestamp, message, found.size)
        self.tag_changes.append((tag, True))
        return tag

    def remove_tag(self, name: str) -> None:
        if name in RESERVED:
            raise TagError(f"tag {name!r} is maintained automatically and cannot be removed")
        if self.reader.tag(name) is None:
            raise TagError(f"tag {name!r} does not exist")
        self.tag_changes.append((Tag(name, ContentHash.zero(), 0, 0), False))

    def rollback(self, target: str) -> Tag:
        """Publish a new revision whose content equals ``target`` (a tag or revision)."""
        found = self.reader.resolve(target)
        current = self.head.manifest.root_catalog
        if next(diff(self.reader, found.root_hash, current), None) is None:
            raise TagError(f"{target} is already the current content")
        self.rollback_to = found
        return found

    # -- committing -------------------------------------------------------------------------

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult:
        if tag is not None:
            self.check_tag(tag)
        if self.rollback_to is not None:
            return self._finish(*self._rollback_root(), ["/"], tag, message)
        if not self.ops:
            if not self.tag_changes and not self.reflog_drops:
                raise UsageError("nothing to publish")
            old = self.head.manifest
            return self._finish(old.root_catalog, old.catalog_size, old.revision, [], None,
                                message, new_revision=False)
        self.pipeline.drain()
        empty = self.pipeline.store_now(b"", Suffix.NONE)
        self._mark_catalogs(empty)
        tree = CatalogTree(
            self.scratch,
            lambda h: self.cache.fetch(self.storage, h, Suffix.CATALOG),
            self.head.manifest.root_catalog,
            now=self.now,
            owner=self.options.owner or self.options.default_owner,
            algorithm=self.options.algorithm,
            empty_file=empty,
            max_entries=self.options.autocatalog_max,
            min_entries=self.options.autocatalog_min,
        )
        try:
            for op in self.ops:
                self._apply(tree, op)
            root = tree.finalize(self._store_catalog, self.options.ttl)
            written = [wc.mountpoint or "/" for wc in tree.loaded.values() if wc.done]
        finally:
            tree.close()
        assert root.done is not None and root.previous is not None
        root_hash, root_size, _ = root.done
        return self._finish(root_hash, root_size, root.previous[1] + 1, written, tag, message)

    def _rollback_root(self) -> tuple[ContentHash, int, int]:
        """The target's root catalog as the next revision: nested catalogs are shared."""
        assert self.rollback_to is not None
        file = self.scratch / "rollback.db"
        shutil.copyfile(self.cache.fetch(self.storage, self.rollback_to.root_hash,
                                         Suffix.CATALOG), file)
        catalog = Catalog.open(file, writable=True)
        catalog.begin()
        revision = self.head.manifest.revision + 1
        catalog.set_property("revision", revision)
        catalog.set_property("last_modified", self.now)
        catalog.set_property("previous_revision", str(self.head.manifest.root_catalog))
        catalog.close()
        data = file.read_bytes()
        return self._store_catalog(data), len(data), revision

    def _finish(self, root_hash: ContentHash, root_size: int, revision: int,
                written: list[str], tag: str | None, message: str,
                new_revision: bool = True) -> CommitResult:
        manifest = self._publish_head(root_hash, root_size, revision, tag, message,
                                      new_revision)
        self.finished = True
        stats = self.pipeline.stats
        return CommitResult(
            revision=manifest.revision,
            root_hash=str(root_hash),
            tag=tag,
            files=stats.files,
            bytes_in=stats.bytes_in,
            objects_written=stats.objects_written,
            objects_skipped=stats.objects_skipped,
            objects_reused=stats.objects_reused,
            bytes_written=stats.bytes_written,
            catalogs_written=sorted(written),
            seconds=time.monotonic() - self.started,
        )

    # -- nested catalog rules ------------------------------------------------------------

    def _mark_catalogs(self, empty: ContentHash) -> None:
        """Add ``.cvmfscatalog`` to staged directories the dirtab (or release rule) names."""
        rules = self._catalog_rules()
        if not rules:
            return
        owner = self.options.owner or self.options.default_owner
        for op in self.ops:
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

    def _catalog_rules(self) -> Dirtab | None:
        text = self._dirtab_text()
        if text is not None:
            return Dirtab.parse(text)
        patterns = self.options.release_catalogs
        return Dirtab.from_patterns(patterns) if patterns else None

    def _dirtab_text(self) -> str | None:
        """The ``/.cvmfsdirtab`` this publish ends with: staged if any, else the current one."""
        for op in reversed(self.ops):
            if op.tree is None and is_within(f"/{DIRTAB}", op.path):
                return None
            if op.tree is not None and op.path in ("", f"/{DIRTAB}"):
                node = op.tree.find(DIRTAB) if op.path == "" else op.tree.root
                if node is not None and node.kind is Kind.FILE and node.content is not None:
                    return self._read_stored(node.content.result()).decode("utf-8", "replace")
                if op.path == "":
                    return None
        found = self.reader.lookup(f"/{DIRTAB}")
        if found is None or not found.entry.is_regular:
            return None
        return b"".join(self.reader.read(f"/{DIRTAB}")).decode("utf-8", "replace")

    def _read_stored(self, stored: StoredFile) -> bytes:
        if stored.content_hash is None:
            raise SourceError(f"{DIRTAB} is too large to be a dirtab")
        data = self.storage.get(stored.content_hash.object_key(Suffix.NONE))
        return check_and_decode(data, stored.content_hash, stored.compression)

    def _store_catalog(self, data: bytes) -> ContentHash:
        return self._store_and_cache(data, Suffix.CATALOG)

    def _store_and_cache(self, data: bytes, suffix: Suffix) -> ContentHash:
        content_hash = self.pipeline.store_now(data, suffix)
        self.cache.adopt(data, content_hash, suffix)
        return content_hash

    def _apply(self, tree: CatalogTree, op: _Op) -> None:
        if op.tree is None:
            if not tree.remove(op.path):
                raise PathNotFound(f"{display(op.path)} does not exist in {self.fqrn}")
            return
        existed = bool(op.path) and tree.lookup(op.path) is not None
        if op.path:
            tree.ensure_directory(parent_path(op.path))
        if existed or op.path == "":
            tree.remove(op.path, retime=False, merge=False)
        tree.insert(op.path, op.tree, existed=existed)

    def _publish_head(
        self, root_hash: ContentHash, root_size: int, revision: int, tag: str | None,
        message: str, new_revision: bool = True,
    ) -> Manifest:
        store = self.pipeline.store_now
        history = self._write_history(root_hash, root_size, revision, tag, message,
                                      new_revision)
        certificate = store(self.keys.certificate, Suffix.CERTIFICATE)
        old = self.head.manifest
        metainfo = old.metainfo or store(default_metainfo(self.fqrn), Suffix.METAINFO)
        reflog = self._updated_reflog(
            [(root_hash, RefType.CATALOG), (certificate, RefType.CERTIFICATE),
             (history, RefType.HISTORY), (metainfo, RefType.METAINFO)]
        )
        manifest = Manifest(
            root_catalog=root_hash,
            catalog_size=root_size,
            revision=revision,
            fqrn=self.fqrn,
            ttl=self.options.ttl,
            timestamp=max(self.now, old.timestamp),
            certificate=certificate,
            history=history,
            metainfo=metainfo,
            reflog=ContentHash.of(reflog, self.options.algorithm),
            garbage_collectable=old.garbage_collectable,
            alt_catalog_path=old.alt_catalog_path,
        )
        signed = manifest.sign(self.keys.signer())
        self.storage.put(REFLOG, reflog)
        self.storage.flush()
        self.storage.put(MANIFEST, signed)
        return manifest

    def _write_history(self, root_hash: ContentHash, size: int, revision: int,
                       tag: str | None, message: str, new_revision: bool) -> ContentHash:
        file = self.scratch / "history.db"
        previous = self.head.manifest.history
        if previous is not None:
            shutil.copyfile(self.cache.fetch(self.storage, previous, Suffix.HISTORY), file)
            history = History(file, writable=True)
        else:
            history = History.create(file, self.fqrn, self.options.algorithm)
        history.conn.execute("BEGIN")
        for change, add in self.tag_changes:
            history.remove(change.name)
            if add:
                history.insert(change)
        if new_revision:
            head = Tag("", root_hash, revision, self.now, message, size)
            name = tag or (generic_tag_name(history, self.now) if self.options.auto_tag
                           else None)
            if name is not None:
                history.insert(Tag(name, root_hash, revision, self.now, message, size))
            history.update_trunk(head)
        history.set_previous_revision(previous or ContentHash.zero(self.options.algorithm))
        history.close()
        return self._store_and_cache(file.read_bytes(), Suffix.HISTORY)

    def _updated_reflog(self, refs: list[tuple[ContentHash, RefType]]) -> bytes:
        file = self.scratch / "reflog.db"
        try:
            file.write_bytes(self.storage.get(REFLOG))
            reflog = Reflog(file, writable=True)
        except (ObjectNotFound, FormatError) as exc:
            log.warning("starting a new reflog: the old one is unusable (%s); garbage "
                        "collection will not see revisions before this one", exc)
            file.unlink(missing_ok=True)
            reflog = Reflog.create(file, self.fqrn)
        reflog.conn.execute("BEGIN")
        for dropped in self.reflog_drops:
            reflog.remove(dropped)
        for content_hash, ref_type in refs:
            reflog.add(content_hash, ref_type, self.now)
        reflog.close()
        return file.read_bytes()

    def abort(self) -> None:
        self.pipeline.close(cancel=True)
        self._release()

    def close(self) -> None:
        self.pipeline.close()
        self._release()

    def _release(self) -> None:
        """Objects that were stored stay valid hints even if this publish aborted."""
        self.index.close()
        self.reader.close()


def generic_tag_name(history: History, now: int) -> str:
    """``generic-<UTC time>`` like ``cvmfs_server``'s auto tags, numbered on collision."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name, n = f"generic-{stamp}", 0
    while history.get(name) is not None:
        n += 1
        name = f"generic_{n}-{stamp}"
    return name
