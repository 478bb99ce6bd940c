"""One native publish: stage changes, then commit them as a new signed revision.

Commit order is what keeps every crash harmless: file objects, then catalogs from the
leaves up (``catalog_tree``), the history (``history_edits``), and the head (``head``:
certificate, meta-info, reflog, a durability barrier, the manifest last). Until the
manifest is replaced, clients and the next publisher see the previous revision; what was
uploaded before is unreferenced and garbage collection takes it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..cvmfs.catalog import Catalog
from ..cvmfs.compression import Compression, check_and_decode
from ..cvmfs.dirtab import DIRTAB
from ..cvmfs.hashes import ContentHash, Suffix, parent_path
from ..cvmfs.history import Tag
from ..cvmfs.key_material import KeySet
from ..cvmfs.manifest import Manifest
from ..cvmfs.names import display, is_within, normalize_path, removable_path
from ..entries import Entry, PathContent, Subtree, checked_stream
from ..errors import PathNotFound, SourceError, StorageError, UsageError
from ..publisher import CommitResult
from ..storage.base import Storage
from .catalog_rules import catalog_rules, mark_catalogs, rules_print
from .catalog_tree import CatalogTree
from .content_index import ContentIndex, Signature
from .head import HeadWriter
from .history_edits import HistoryEdits, generic_tag_name
from .options import EngineOptions
from .pipeline import ObjectPipeline, PendingFile
from .reader import ObjectCache, RepositoryReader
from .staging import StagedTree
from .trust import TrustedHead

log = logging.getLogger(__name__)


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
        self.cache = ObjectCache(options.cache_dir / "objects", options.max_object_size)
        self.reader = RepositoryReader(storage, head.manifest, self.cache)
        self.index = ContentIndex.for_storage(options.cache_dir, storage.location)
        self.index.begin(head.manifest)
        self.pipeline = ObjectPipeline(
            storage,
            algorithm=options.algorithm,
            level=options.compression_level,
            preset=options.compression,
            chunking=options.chunking,
            workers=options.workers,
            progress=progress,
            index=self.index,
        )
        self.ops: list[_Op] = []
        self.edits = HistoryEdits(self.reader)
        self.finished = False
        self.committed: Manifest | None = None
        # files read from disk whose signature goes into the stat shortcut once stored
        self.read_files: list[tuple[str, Signature, PendingFile]] = []
        # the catalog rules (``rules_print``) subtrees were kept under, and committed with
        self._staged_rules: str | None = None
        self._rules = ""

    @property
    def fqrn(self) -> str:
        return self.head.manifest.fqrn

    # -- staging ----------------------------------------------------------------------------

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        """Make ``path`` hold exactly what ``entries`` describe; content outside is kept."""
        path = normalize_path(path)
        tree = StagedTree(self.now, self.options.owner, self.options.default_owner)
        keep = None if self.ops else functools.partial(self._keep, path)
        tree.add_stream(checked_stream(entries, path), self._store, keep)
        self.ops.append(_Op(path, tree))

    def _keep(self, base: str, rel: str, subtree: Subtree) -> bytes | None:
        """The print of the head's nested catalog at ``rel`` if it was written from this
        very source subtree under the rules in force, so its files need not be staged.

        Only for the first replace of a session: a later one may edit the tree the catalog
        replaces. ``commit`` stages the subtree after all if the session ends otherwise.
        """
        assert subtree.digest is not None
        path = f"{base}/{rel}" if rel else base
        if not path:
            return None
        holder = self.reader.catalog_for(parent_path(path))  # the one mounting ``path``
        if not self._kept_by_removal(base, path, holder):
            return None
        if self._staged_rules is None:
            self._staged_rules = rules_print(catalog_rules(
                [], self.reader, self._read_stored, self.options.release_catalogs))
        mark = self.index.source_print(self._source_key(path, subtree.digest,
                                                        self._staged_rules))
        if mark is None:
            return None
        ref = next((r for r in holder.nested() if r.path == path), None)
        if ref is None or not ref.size or self.index.catalog_print(ref.content_hash) != mark:
            return None
        self.pipeline.add_kept(subtree.files, subtree.size)
        return mark

    def _kept_by_removal(self, base: str, path: str, holder: Catalog) -> bool:
        """Whether replacing ``base`` keeps the catalog mounted at ``path`` (in ``holder``)
        for taking back (``CatalogTree.remove``): the catalogs it drops and the ones nested
        right in them."""
        target = self.reader.catalog_for(base)  # at a mountpoint: the one mounted there
        mounted = bool(base) and target.mountpoint == base
        if path == base:
            return mounted
        if holder is target:
            return True
        inside = holder.mountpoint != base and is_within(holder.mountpoint, base)
        return (not mounted and inside
                and self.reader.catalog_for(parent_path(holder.mountpoint)) is target)

    def _source_key(self, path: str, digest: bytes, rules: str) -> bytes:
        """A source subtree as published at ``path``: what else decides its catalog rows."""
        options = self.options
        context = (path, rules, options.owner, options.default_owner, options.algorithm.value)
        return hashlib.blake2b(digest + repr(context).encode(), digest_size=20).digest()

    def remove(self, path: str) -> None:
        self.ops.append(_Op(removable_path(path), None))

    def _store(self, entry: Entry) -> PendingFile:
        content = entry.content
        if content is None:
            raise SourceError(f"file entry {entry.path!r} has no content")
        if not isinstance(content, PathContent):
            with content.open() as stream:
                return self.store(stream, entry.size)
        sig = content.signature
        if sig is None:
            return self.pipeline.add_path(content.path, entry.size)
        path = str(content.path)
        known = self.index.unchanged(path, sig)
        pending = self.pipeline.add_known(path, entry.size, known) if known else None
        if pending is None:
            pending = self.pipeline.add_path(path, entry.size)
        if known is None or not known.verified:
            self.read_files.append((path, sig, pending))
        return pending

    def store(self, stream: BinaryIO, size_hint: int,
              compression: Compression = Compression.ZLIB) -> PendingFile:
        """Consume one file's bytes now; objects are written in the background.

        For producers that must read content before the final tree is known (see
        ``Entry.stored``). Objects of content that ends up unused are harmless orphans.
        ``Compression.NONE`` stores the bytes as they are (valid CVMFS, faster, larger).
        """
        return self.pipeline.add_file(stream, size_hint, compression)

    # -- committing -------------------------------------------------------------------------

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult:
        if tag is not None:
            self.edits.check_new_tag(tag)
        if self.edits.rollback_to is not None:
            if self.ops or self.edits.tags_changed:
                raise UsageError("a rollback is a revision of its own: stage nothing else "
                                 "in the same session")
            return self._finish(*self._rollback_root(), ["/"], tag, message)
        if not self.ops:
            if tag is not None or not self.edits.tags_changed:
                raise UsageError("nothing to publish")
            old = self.head.manifest
            return self._finish(old.root_catalog, old.catalog_size, old.revision, [], None,
                                message, new_revision=False)
        root_hash, root_size, revision, written = self._write_catalogs()
        return self._finish(root_hash, root_size, revision, written, tag, message)

    def _write_catalogs(self) -> tuple[ContentHash, int, int, list[str]]:
        """Every staged change applied, catalogs written leaves first."""
        self.pipeline.drain()
        empty = self.pipeline.store_now(b"", Suffix.NONE)
        owner = self.options.owner or self.options.default_owner
        rules = catalog_rules(self.ops, self.reader, self._read_stored,
                              self.options.release_catalogs)
        self._rules = rules_print(rules)
        self._stage_kept_if_stale()
        if rules:
            mark_catalogs(self.ops, rules, empty, owner)
        tree = CatalogTree(
            self.scratch,
            lambda h: self.cache.fetch(self.storage, h, Suffix.CATALOG),
            self.head.manifest.root_catalog,
            now=self.now,
            owner=owner,
            algorithm=self.options.algorithm,
            empty_file=empty,
            max_entries=self.options.autocatalog_max,
            min_entries=self.options.autocatalog_min,
            prints=self.index.catalog_print,
        )
        try:
            for op in self.ops:
                self._apply(tree, op)
            root = tree.finalize(self._store_catalog, self.options.ttl)
            written = [wc.mountpoint or "/" for wc in tree.loaded.values() if wc.done]
            self._record_prints(tree)
        finally:
            tree.close()
        assert root.done is not None and root.previous is not None
        root_hash, root_size, _ = root.done
        return root_hash, root_size, root.previous[1] + 1, written

    def _stage_kept_if_stale(self) -> None:
        """Stage the subtrees ``_keep`` left out after all, unless the session is still
        the one they were kept for: a single replace, under the same rules."""
        if len(self.ops) == 1 and self._rules == self._staged_rules:
            return
        staged = False
        for op in self.ops:
            for subtree in op.tree.take_back_kept() if op.tree is not None else []:
                self.pipeline.unkeep(subtree.files, subtree.size)
                op.tree.add_stream(checked_stream(subtree.entries(), op.path), self._store)
                staged = True
        if staged:
            self.pipeline.drain()

    def _record_prints(self, tree: CatalogTree) -> None:
        """Which subtree each new nested catalog was written from, and which source
        subtree each placed catalog came from, for the next publish.

        Only when one staged tree was placed: then a new catalog's rows are those its
        subtree made (splits and merges drop the prints they touch). A row is true of the
        catalog's bytes whether this publish commits or not; it is only ever used for a
        catalog a later head references.
        """
        if len(self.ops) != 1:
            return
        for wc in tree.loaded.values():
            mark = tree.placed_prints.get(wc.mountpoint)
            if mark is not None and wc.done is not None:
                self.index.record_catalog_print(wc.done[0], mark)
        op = self.ops[0]
        if op.tree is None:
            return
        for path, mark in tree.placed_prints.items():
            if not is_within(path, op.path):
                continue
            source = op.tree.sources.get(path[len(op.path) + 1:] if path != op.path else "")
            if source is not None and source[1] < self.index.racy_ns:
                self.index.record_source_print(self._source_key(path, source[0], self._rules),
                                               mark)

    def _rollback_root(self) -> tuple[ContentHash, int, int]:
        """The target's root catalog as the next revision: nested catalogs are shared."""
        target = self.edits.rollback_to
        assert target is not None
        file = self.scratch / "rollback.db"
        shutil.copyfile(self.cache.fetch(self.storage, target.root_hash, Suffix.CATALOG), file)
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
        history = self._write_history(root_hash, root_size, revision, tag, message,
                                      new_revision)
        writer = HeadWriter(self.storage, self.pipeline.store_now, self.keys, self.fqrn,
                            self.options.algorithm, self.scratch, self.now,
                            self.head.manifest, self.head.raw, self.edits.reflog_drops)
        manifest = writer.publish(root_hash, root_size, revision, self.options.ttl, history)
        self.finished = True
        self.committed = manifest
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

    def _write_history(self, root_hash: ContentHash, size: int, revision: int,
                       tag: str | None, message: str, new_revision: bool) -> ContentHash:
        old = self.head.manifest.history
        previous = self.cache.fetch(self.storage, old, Suffix.HISTORY) if old else None
        head = Tag("", root_hash, revision, self.now, message, size) if new_revision else None
        name = tag
        if name is None and new_revision and self.options.auto_tag:
            name = generic_tag_name(previous, self.now)
        file = self.scratch / "history.db"
        self.edits.write(file, previous, head, name, self.fqrn, self.options.algorithm)
        return self._store_and_cache(file.read_bytes(), Suffix.HISTORY)

    def _read_stored(self, pending: PendingFile) -> bytes:
        stored = pending.result()
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

    def abort(self) -> None:
        self.pipeline.close(cancel=True)
        try:  # what was stored stays a valid hint, once it is durable
            self.storage.flush()
        except (StorageError, OSError) as exc:
            log.warning("not keeping index entries of this aborted publish: %s", exc)
            self.read_files.clear()
            self.index.discard()
        self._release()

    def close(self) -> None:
        self.pipeline.close()
        self._release()

    def _release(self) -> None:
        """Record what was stored; the head is ours only after a commit (then gc's forget)."""
        try:
            for path, sig, pending in self.read_files:
                stored = pending.stored()
                if stored is not None:
                    self.index.record(path, sig, stored.compression, stored.content_hash,
                                      stored.chunks)
            if self.committed is not None:
                self.index.end(self.committed)
        finally:
            self.index.close()
            self.reader.close()
