"""Writing a repository's head, in the order that keeps every crash harmless.

The certificate and meta-info objects, then the reflog (every root object ever published,
for garbage collection), a durability barrier, and the signed manifest last: the
manifest is the single switch from one revision to the next. ``create`` (revision 0) and
every commit write their head here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..cvmfs.key_material import KeySet
from ..cvmfs.manifest import Manifest
from ..cvmfs.metainfo import default_metainfo
from ..cvmfs.reflog import Reflog, RefType
from ..errors import FormatError, ObjectNotFound
from ..storage.base import REFLOG, Storage

log = logging.getLogger(__name__)


@dataclass
class HeadWriter:
    storage: Storage
    store: Callable[[bytes, Suffix], ContentHash]  # stores one object now, returns its hash
    keys: KeySet
    fqrn: str
    algorithm: Algorithm
    scratch: Path
    now: int
    previous: Manifest | None = None  # the manifest this head replaces (None: a new one)
    previous_raw: bytes | None = None
    reflog_drops: set[str] = field(default_factory=set)

    def publish(self, root: ContentHash, root_size: int, revision: int, ttl: int,
                history: ContentHash | None) -> Manifest:
        old = self.previous
        certificate = self.store(self.keys.certificate, Suffix.CERTIFICATE)
        metainfo = (old.metainfo if old is not None else None) or \
            self.store(default_metainfo(self.fqrn), Suffix.METAINFO)
        refs = [(root, RefType.CATALOG), (certificate, RefType.CERTIFICATE),
                (history, RefType.HISTORY), (metainfo, RefType.METAINFO)]
        reflog = self._reflog([(h, t) for h, t in refs if h is not None])
        manifest = Manifest(
            root_catalog=root,
            catalog_size=root_size,
            revision=revision,
            fqrn=self.fqrn,
            ttl=ttl,
            timestamp=max(self.now, old.timestamp if old is not None else 0),
            certificate=certificate,
            history=history,
            metainfo=metainfo,
            reflog=ContentHash.of(reflog, self.algorithm),
            garbage_collectable=old.garbage_collectable if old is not None else False,
            alt_catalog_path=old.alt_catalog_path if old is not None else False,
        )
        signed = manifest.sign(self.keys.signer())
        self.storage.put(REFLOG, reflog)
        self.storage.flush()
        self.storage.put_manifest(signed, previous=self.previous_raw)
        return manifest

    def _reflog(self, refs: list[tuple[ContentHash, RefType]]) -> bytes:
        file = self.scratch / "reflog.db"
        reflog = self._previous_reflog(file) if self.previous is not None else None
        if reflog is None:
            reflog = Reflog.create(file, self.fqrn)
        reflog.conn.execute("BEGIN")
        for dropped in self.reflog_drops:
            reflog.remove(dropped)
        for content_hash, ref_type in refs:
            reflog.add(content_hash, ref_type, self.now)
        reflog.close()
        return file.read_bytes()

    def _previous_reflog(self, file: Path) -> Reflog | None:
        try:
            file.write_bytes(self.storage.get(REFLOG))
            return Reflog(file, writable=True)
        except (ObjectNotFound, FormatError) as exc:
            log.warning("starting a new reflog: the old one is unusable (%s); garbage "
                        "collection will not see revisions before this one", exc)
            file.unlink(missing_ok=True)
            return None
