"""The source side of a snapshot: everything that must check out before a byte is written.

``read_source`` runs the client's whole trust chain on the source (``verify_head``:
manifest signature, certificate, whitelist signature with the master key, expiry, name)
and keeps the manifest and whitelist *exactly as verified*: they are the bytes the replica
publishes last. It then reads the history (hash-checked) for its tags and the reflog
(checked against the manifest's ``Y``). Nothing here writes; a refusal leaves the replica
untouched.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.hashes import ContentHash, Suffix
from ..cvmfs.history import History, Tag
from ..cvmfs.manifest import Manifest
from ..engine.reader import CheckedObject, bounded
from ..engine.trust import SIGNED_FILE_LIMIT, TrustedHead, verify_head
from ..errors import FormatError, ObjectNotFound
from ..storage.base import MANIFEST, MASTER_REPLICA, REFLOG, WHITELIST, ObjectStream, Storage
from ..storage.wrappers import StorageWrapper

log = logging.getLogger(__name__)


@dataclass
class SourceHead:
    """A verified source revision and the head files a replica of it needs."""

    storage: Storage
    trusted: TrustedHead
    whitelist: bytes  # .cvmfswhitelist, byte for byte what verify_head accepted
    history: bytes | None  # the history object as stored (its hash is the manifest's H)
    tags: list[Tag]
    reflog: bytes | None  # .cvmfsreflog when its checksum is the manifest's Y
    master_replica: bool  # the source carries .cvmfs_master_replica
    warnings: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Manifest:
        return self.trusted.manifest

    @property
    def raw_manifest(self) -> bytes:
        return self.trusted.raw


class _Recording(StorageWrapper):
    """Keeps the bytes of the manifest and whitelist that pass through ``open``, so that
    what the trust chain verified is exactly what the replica gets."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.seen: dict[str, bytes] = {}

    def open(self, key: str) -> ObjectStream:
        if key not in (MANIFEST, WHITELIST):
            return self.inner.open(key)
        with self.inner.open(key) as stream:
            data = b""
            # one byte past the limit, so the reader behind us still sees "too large"
            while len(data) <= SIGNED_FILE_LIMIT and (block := stream.read(
                    SIGNED_FILE_LIMIT + 1 - len(data))):
                data += block
            name = stream.name
        self.seen[key] = data
        return ObjectStream(io.BytesIO(data), len(data), name)


def read_source(storage: Storage, master_keys: list[rsa.RSAPublicKey], fqrn: str,
                at: dt.datetime | None, max_object_size: int, scratch: Path) -> SourceHead:
    """The verified head of the source; ``SignatureError`` or ``FormatError`` on refusal."""
    recording = _Recording(storage)
    trusted = verify_head(recording, master_keys, fqrn=fqrn, at=at)
    manifest = trusted.manifest
    warnings: list[str] = []
    history, tags = _history(storage, manifest, max_object_size, scratch)
    reflog = _reflog(storage, manifest, max_object_size, warnings)
    master_replica = storage.exists(MASTER_REPLICA)
    if not master_replica:
        warnings.append(f"{storage.location} has no {MASTER_REPLICA} (upstream's snapshot "
                        "refuses such a source); replicated anyway")
    return SourceHead(storage, trusted, recording.seen[WHITELIST], history, tags, reflog,
                      master_replica, warnings)


def _history(storage: Storage, manifest: Manifest, limit: int, scratch: Path
             ) -> tuple[bytes | None, list[Tag]]:
    """The history object's stored bytes (hash-checked) and its tags."""
    if manifest.history is None:
        return None, []
    key = manifest.history.object_key(Suffix.HISTORY)
    try:
        with CheckedObject.fetch(storage, manifest.history, Suffix.HISTORY, limit) as stored, \
                tempfile.NamedTemporaryFile(suffix=".db", dir=scratch) as db:
            for piece in stored.content(limit):
                db.write(piece)
            db.flush()
            stored.spool.seek(0)
            data = stored.spool.read()
            history = History(Path(db.name), writable=False)
            try:
                if history.fqrn and history.fqrn != manifest.fqrn:
                    raise FormatError(f"it is the history of {history.fqrn!r}")
                tags = history.tags()
            finally:
                history.conn.close()
    except ObjectNotFound:
        raise FormatError(f"the source names history {key} but does not have it") from None
    except FormatError as exc:
        raise FormatError(f"history {key}: {exc}") from None
    return data, tags


def _reflog(storage: Storage, manifest: Manifest, limit: int, warnings: list[str]
            ) -> bytes | None:
    """``.cvmfsreflog`` if it is the one the manifest's ``Y`` names; else None and a warning.

    The reflog is not what clients read, so a source without a matching one (an upstream
    Stratum 1 keeps a reflog of its own) is replicated without it rather than refused.
    """
    if manifest.reflog is None:
        return None
    try:
        with storage.open(REFLOG) as stream:
            data = b"".join(bounded(stream, limit, f"{REFLOG} at {storage.location}"))
    except ObjectNotFound:
        warnings.append(f"the source has no {REFLOG} although its manifest names one; "
                        "the replica's reflog is left as it is")
        return None
    actual = ContentHash.of(data, manifest.root_catalog.algorithm)
    if actual != manifest.reflog:
        warnings.append(f"the source's {REFLOG} is not the one its manifest names (checksum "
                        f"{actual}, Y is {manifest.reflog}); not copied")
        return None
    return data
