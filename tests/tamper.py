"""Shared helpers for the fixture proof tests: open the upstream reference repository, and
re-sign edited copies of it so that exactly one consistency rule is broken.

Everything here is written with our own format layer (``Catalog.open(writable=True)``,
``encode``, ``Reflog``, ``History``, ``Manifest.sign``, ``Whitelist.new(...).sign``), never
with the engine that is under test: a tamper test must not depend on the writer it checks.

Re-signing a catalog edit means doing by hand what a publisher does:

1. edit a decompressed copy of the catalog (SQLite), close it fully committed;
2. recompress it (zlib level 6), store it under its new name ``data/xx/...C``;
3. walk up to the root catalog: each parent's ``nested_catalogs`` row gets the child's new
   hash string and uncompressed size, and the parent is stored under its own new name;
4. every tag of the history that pointed at the old root catalog now points at the new one
   (otherwise ``trunk`` would disagree with the manifest), the history is stored anew;
5. the reflog learns the new root catalog and history (unless a test wants ``C`` missing);
6. the manifest gets the new ``C``, ``B``, ``H`` and ``Y`` and is signed with the repository
   key; the whitelist is signed afresh with the master key.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cvmfs_publisher.cvmfs.catalog import Catalog
from cvmfs_publisher.cvmfs.compression import decode, encode
from cvmfs_publisher.cvmfs.hashes import Algorithm, ContentHash, Suffix
from cvmfs_publisher.cvmfs.history import History
from cvmfs_publisher.cvmfs.key_material import certificate_fingerprint, load_private_key
from cvmfs_publisher.cvmfs.manifest import Manifest, parse_manifest
from cvmfs_publisher.cvmfs.names import is_within
from cvmfs_publisher.cvmfs.reflog import Reflog, RefType
from cvmfs_publisher.cvmfs.whitelist import Whitelist
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.storage.base import MANIFEST, REFLOG, WHITELIST
from cvmfs_publisher.storage.local import LocalStorage

FQRN = "ref.local.repo"
ZLIB_LEVEL = 6  # upstream's deflateInit(Z_DEFAULT_COMPRESSION)


def key_file(copy: Path, kind: str) -> Path:
    """``kind`` is one of key, masterkey, pub, crt."""
    return copy / "keys" / f"{FQRN}.{kind}"


def open_repository(storage: Path, cache: Path, *, keys_dir: Path | None = None,
                    public_keys: list[Path] | None = None) -> NativeRepository:
    return NativeRepository(LocalStorage(storage), FQRN, keys_dir=keys_dir,
                            public_keys=list(public_keys or []),
                            options=EngineOptions(cache_dir=cache))


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    """Flip bits of one byte of a file in place (negative offsets count from the end).

    The default flips the lowest bit, so an ASCII digit stays a digit ('3' -> '2'): the
    text still parses and only the signature or hash can notice.
    """
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def object_path(storage: Path, content_hash: ContentHash, suffix: Suffix = Suffix.NONE) -> Path:
    return storage / content_hash.object_key(suffix)


class Resigner:
    """A fixture copy (``storage/`` and ``keys/``) being edited and signed again."""

    def __init__(self, copy: Path, work: Path) -> None:
        self.copy = copy
        self.storage_dir = copy / "storage"
        self.storage = LocalStorage(self.storage_dir)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.manifest, _ = parse_manifest(self.storage.get(MANIFEST))
        self._names = 0
        self._new_refs: list[tuple[ContentHash, RefType]] = []

    @property
    def algorithm(self) -> Algorithm:
        return self.manifest.root_catalog.algorithm

    # -- objects ------------------------------------------------------------------------------

    def _scratch(self, name: str) -> Path:
        self._names += 1
        return self.work / f"{self._names}-{name}"

    def read_object(self, content_hash: ContentHash, suffix: Suffix) -> bytes:
        return decode(self.storage.get(content_hash.object_key(suffix)))

    def store_object(self, data: bytes, suffix: Suffix) -> ContentHash:
        content_hash, stored = encode(data, self.algorithm, ZLIB_LEVEL)
        self.storage.put(content_hash.object_key(suffix), stored)
        return content_hash

    # -- catalogs -----------------------------------------------------------------------------

    def catalog_chain(self, mountpoint: str) -> list[tuple[str, ContentHash]]:
        """(mountpoint, hash) from the root catalog down to the one mounted at ``mountpoint``."""
        chain = [("", self.manifest.root_catalog)]
        while chain[-1][0] != mountpoint:
            catalog = self.open_catalog(chain[-1][1])
            try:
                step = next(((ref.path, ref.content_hash) for ref in catalog.nested()
                             if is_within(mountpoint, ref.path)), None)
            finally:
                catalog.conn.close()
            if step is None:
                raise KeyError(f"no nested catalog mounted at {mountpoint!r}")
            chain.append(step)
        return chain

    def open_catalog(self, content_hash: ContentHash, *, writable: bool = False) -> Catalog:
        file = self._scratch(f"{content_hash}.db")
        file.write_bytes(self.read_object(content_hash, Suffix.CATALOG))
        return Catalog.open(file, writable=writable)

    def _rewrite_catalog(self, content_hash: ContentHash,
                         edit: Callable[[Catalog], None]) -> tuple[ContentHash, int]:
        catalog = self.open_catalog(content_hash, writable=True)
        catalog.begin()
        edit(catalog)
        catalog.close()  # commits: the file on disk is complete and journal-free
        data = catalog.file.read_bytes()
        return self.store_object(data, Suffix.CATALOG), len(data)

    def edit_catalog(self, mountpoint: str, edit: Callable[[Catalog], None]) -> None:
        """Apply ``edit`` to the catalog mounted at ``mountpoint`` ("" is the root catalog)
        and propagate its new hash and size up to the manifest."""
        chain = self.catalog_chain(mountpoint)
        new_hash, new_size = self._rewrite_catalog(chain[-1][1], edit)
        for (child, _), (_, parent_hash) in reversed(list(zip(chain[1:], chain[:-1],
                                                              strict=True))):
            def relink(catalog: Catalog, child=child, new_hash=new_hash,
                       new_size=new_size) -> None:
                updated = catalog.conn.execute(
                    "UPDATE nested_catalogs SET sha1 = ?, size = ? WHERE path = ?",
                    (str(new_hash), new_size, child)).rowcount
                assert updated == 1, child

            new_hash, new_size = self._rewrite_catalog(parent_hash, relink)
        self._new_root(new_hash, new_size)

    def execute(self, mountpoint: str, sql: str, args: tuple = ()) -> None:
        """Shorthand: one SQL statement on a catalog that must change exactly one row."""

        def edit(catalog: Catalog) -> None:
            changed = catalog.conn.execute(sql, args).rowcount
            assert changed == 1, f"{sql} changed {changed} rows"

        self.edit_catalog(mountpoint, edit)

    def _new_root(self, root_hash: ContentHash, size: int) -> None:
        old = self.manifest.root_catalog
        self.manifest = self.manifest.evolve(root_catalog=root_hash, catalog_size=size)
        self._new_refs.append((root_hash, RefType.CATALOG))
        if self.manifest.history is not None:
            self.edit_history(lambda conn: conn.execute(
                "UPDATE tags SET hash = ?, size = ? WHERE hash = ?",
                (str(root_hash), size, str(old))))

    def edit_history(self, edit: Callable[[sqlite3.Connection], None]) -> None:
        """Edit the tag database; the manifest's ``H`` and the reflog follow."""
        assert self.manifest.history is not None
        file = self._scratch("history.db")
        file.write_bytes(self.read_object(self.manifest.history, Suffix.HISTORY))
        history = History(file, writable=True)
        history.conn.execute("BEGIN")
        edit(history.conn)
        history.close()
        new_history = self.store_object(file.read_bytes(), Suffix.HISTORY)
        self.manifest = self.manifest.evolve(history=new_history)
        self._new_refs.append((new_history, RefType.HISTORY))

    # -- reflog, manifest, whitelist ------------------------------------------------------------

    def edit_reflog(self, edit: Callable[[sqlite3.Connection], None]) -> None:
        self._update_reflog(edit)

    def _update_reflog(self, edit: Callable[[sqlite3.Connection], None] | None = None,
                       refs: tuple[tuple[ContentHash, RefType], ...] = ()) -> None:
        file = self._scratch("reflog.db")
        file.write_bytes(self.storage.get(REFLOG))
        reflog = Reflog(file, writable=True)
        reflog.conn.execute("BEGIN")
        for content_hash, ref_type in refs:
            reflog.add(content_hash, ref_type, self.manifest.timestamp)
        if edit is not None:
            edit(reflog.conn)
        reflog.close()
        data = file.read_bytes()
        self.storage.put(REFLOG, data)
        self.manifest = self.manifest.evolve(
            reflog=ContentHash.of(data, self.algorithm))

    def commit(self, *, record_root_in_reflog: bool = True, now: dt.datetime | None = None,
               whitelist_days: int = 30, whitelist_fqrn: str = FQRN) -> Manifest:
        """Write the reflog, the signed manifest and a freshly signed whitelist."""
        refs = tuple((h, t) for h, t in self._new_refs
                     if record_root_in_reflog or t is not RefType.CATALOG)
        if refs:
            self._update_reflog(refs=refs)
        self._new_refs = []
        self.write_manifest(self.manifest)
        self.sign_whitelist(now=now, days=whitelist_days, fqrn=whitelist_fqrn)
        return self.manifest

    def write_manifest(self, manifest: Manifest) -> None:
        signer = load_private_key(key_file(self.copy, "key").read_bytes(), "repository key")
        self.storage.put_manifest(manifest.sign(signer), previous=self.storage.get(MANIFEST))
        self.manifest = manifest

    def sign_whitelist(self, *, now: dt.datetime | None = None, days: int = 30,
                       fqrn: str = FQRN) -> Whitelist:
        now = now or dt.datetime.now(dt.UTC)
        master = load_private_key(key_file(self.copy, "masterkey").read_bytes(), "master key")
        fingerprint = certificate_fingerprint(key_file(self.copy, "crt").read_bytes())
        whitelist = Whitelist.new(fqrn, (fingerprint,), now, days)
        self.storage.put(WHITELIST, whitelist.sign(master))
        return whitelist


def damaged_key_pem(pem: bytes) -> bytes:
    """The same public half (n, e), wrong private exponents: what a bit flip in a key file
    can leave, and what parsing no longer rejects (it skips OpenSSL's slow arithmetic check)."""
    good = load_private_key(pem, "key").private_numbers()
    bad = rsa.RSAPrivateNumbers(good.p, good.q, good.d ^ 2, good.dmp1 ^ 2, good.dmq1 ^ 2,
                                good.iqmp, good.public_numbers)
    return bad.private_key(unsafe_skip_rsa_key_validation=True).private_bytes(
        Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
