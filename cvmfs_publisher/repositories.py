"""Turning what a user names (a configured name, a directory, a URL) into a repository.

``open_publisher`` is the one place that decides which backend publishes to a configured
repository; everything that writes asks it and nothing else (``open_dry_run`` is the same
for a publish that must write nothing). ``open_reader`` gives the verified read access
``ls``, ``cat``, ``verify`` and friends need, for any repository. ``configured`` explains
what was given when a configured repository was needed; ``status`` says where one stands.

Backends and the parts of the engine only some commands use are imported when used, so a
command that only reads pays for nothing else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, RepositoryConfig, cache_dir, config_home, default_keys_dir
from .cvmfs.names import check_fqrn
from .engine import key_files
from .engine.options import EngineOptions
from .engine.repository import WHITELIST_WARN_DAYS, NativeRepository
from .errors import (
    FormatError,
    InvalidName,
    PublisherError,
    RepositoryExists,
    RepositoryNotFound,
    SignatureError,
    UsageError,
)
from .storage import Storage, open_storage, wrapped_by
from .storage.base import MANIFEST, LockInfo, ObjectStream

if TYPE_CHECKING:
    from .engine.diff import Change
    from .publisher import Publisher
    from .releases.trust import TrustStore

CLASSIC = "cvmfs_server"
CLASSIC_STORAGE = "/srv/cvmfs"  # cvmfs_server's local storage; an S3 or HTTP URL also works
CLASSIC_KEYS = Path("/etc/cvmfs/keys")
log = logging.getLogger(__name__)


def storage_for(repo: RepositoryConfig, *, read_only: bool = False) -> Storage:
    return open_storage(repo.location(), fqrn=repo.name, s3=repo.setting("s3"),
                         read_only=read_only)


def open_publisher(repo: RepositoryConfig, **overrides: Any) -> Publisher:
    """The Publisher for a configured repository; ``overrides`` are config settings.

    ``owner`` and ``compression_level`` given on a command line arrive here, so front
    ends never reach into a backend's options.
    """
    if overrides:
        repo = repo.with_settings(overrides)
    if repo.backend == CLASSIC:
        from .backends.cvmfs_server import CvmfsServerPublisher

        return CvmfsServerPublisher.from_config(repo)
    from .backends.native import NativePublisher

    return NativePublisher(open_native(repo))


@contextlib.contextmanager
def open_dry_run(repo: RepositoryConfig, **overrides: Any) -> Iterator[Publisher]:
    """A Publisher whose sessions do everything a publish does and write nothing.

    The storage is wrapped in ``DryRunStorage`` (reads go through, writes are kept in
    memory, no lock is taken; another publisher's lock is still reported as busy), and the
    engine's caches live in a temporary directory removed afterwards, so neither the
    repository nor the local content index learns of objects that were never stored. A
    commit "publishes" into that memory: ``changes_of`` can read the result.

    The classic backend cannot: ``cvmfs_server`` has no way to stage a publish without
    opening a transaction on the real repository.
    """
    if overrides:
        repo = repo.with_settings(overrides)
    if repo.backend == CLASSIC:
        raise UsageError(f"--dry-run is not available for {repo.name}: its backend is "
                         "cvmfs_server, which cannot try a publish without opening a real "
                         "transaction; publish, then 'cvmfs-publisher diff trunk-previous' "
                         "shows what changed")
    from .backends.native import NativePublisher
    from .storage.wrappers import DryRunStorage

    with tempfile.TemporaryDirectory(prefix="cvmfs-publisher-dry-run-") as tmp:
        storage = DryRunStorage(storage_for(repo))
        yield NativePublisher(open_native(repo, storage=storage, caches=Path(tmp)))


def changes_of(publisher: Publisher, root_hash: str) -> list[Change] | None:
    """What the revision with root catalog ``root_hash`` changed against the one before it.

    For native repositories (also inside ``open_dry_run``); None where the backend cannot
    read revisions (cvmfs_server: its storage may not be reachable from here).
    """
    repository = getattr(publisher, "repository", None)
    if not isinstance(repository, NativeRepository):
        return None
    from .cvmfs.hashes import ContentHash
    from .engine.diff import diff

    reader = repository.reader()
    try:
        new = ContentHash.parse(root_hash)
        old = reader.catalog(new).previous_revision
        if old is None or old.digest == bytes(20):
            return None
        return sorted(diff(reader, old, new), key=lambda change: change.path)
    finally:
        reader.close()


def register_repository(config: Config, repo: RepositoryConfig) -> dict[str, Any]:
    """``init``: create a native repository, or check and record a classic one.

    A native entry is saved before the repository is created, so running ``init`` again
    after an interruption completes it.
    """
    existing = config.repositories.get(repo.name)
    if existing is not None and (existing.storage, existing.keys) != (repo.storage, repo.keys):
        raise RepositoryExists(f"{repo.name} is already configured in {config.path} with "
                               f"storage {existing.storage}; remove it there first")
    public_key = key_files.key_paths(repo.keys, repo.name)["pub"]
    info: dict[str, Any] = {"repository": repo.name, "backend": repo.backend,
                            "location": repo.location(), "keys": str(repo.keys),
                            "public_key": str(public_key), "config": str(config.path)}
    if repo.backend == CLASSIC:
        from .backends.cvmfs_server import CvmfsServerPublisher

        info["revision"] = CvmfsServerPublisher.from_config(repo).check_served()
        config.add(repo)
        config.save()
        return info
    config.add(repo)
    config.save()
    repository = open_native(repo)
    info["location"] = repository.storage.location
    warning = repository.storage.check_locking()
    if warning:
        log.warning("%s; see docs/s3.md", warning)
    info["revision"] = repository.create().revision
    return info


def open_native(repo: RepositoryConfig, public_keys: list[Path] | None = None, *,
                storage: Storage | None = None, caches: Path | None = None
                ) -> NativeRepository:
    """``storage`` and ``caches`` replace the configured storage and cache directory."""
    storage = storage or storage_for(repo)
    options = repo.engine_options()
    if caches is not None:
        options.cache_dir = caches
    parallelism = storage.capabilities().parallelism
    if options.workers is None and parallelism:
        options.workers = parallelism  # S3 is bound by request latency, not by cores
    return NativeRepository(storage, repo.name, keys_dir=repo.keys,
                            public_keys=list(public_keys or []), options=options)


def open_directory_publisher(directory: str, fqrn: str, keys_dir: Path) -> Publisher:
    """A native repository that is not configured: a directory and its key directory."""
    from .backends.native import NativePublisher

    check_fqrn(fqrn)
    storage = open_storage(directory)
    return NativePublisher(NativeRepository(storage, fqrn, keys_dir=keys_dir,
                                            options=EngineOptions(cache_dir=cache_dir())))


# -- what the user named ----------------------------------------------------------------------


def configured(config: Config, spec: str) -> RepositoryConfig:
    """The configured repository ``spec`` names, or an error that says what ``spec`` is.

    Commands that write need a configured repository (its keys, its backend); a
    repository directory or URL given instead is recognised as one and the message says
    how to use it, and a near miss of a configured name gets a suggestion.
    """
    if spec in config.repositories:
        return config.repositories[spec]
    if spec.startswith(("http://", "https://")):
        raise UsageError(f"{spec} is a URL; this command writes, so it needs the name of a "
                         f"configured repository (see 'cvmfs-publisher list')")
    directory = Path(spec).expanduser()
    if directory.is_dir():
        raise UsageError(_directory_instead_of_name(config, directory))
    raise RepositoryNotFound(config.missing(spec))


def _directory_instead_of_name(config: Config, directory: Path) -> str:
    resolved = directory.resolve()
    for name, repo in sorted(config.repositories.items()):
        location = repo.location()
        if not location.startswith(("s3://", "http://", "https://")) and \
                Path(location).expanduser().resolve() == resolved:
            return (f"{directory} is the directory of the configured repository {name}: "
                    f"use --repo {name}")
    fqrn = _manifest_name(directory)
    if fqrn is None:
        return (f"{directory} is a directory, not a repository (it has no {MANIFEST}) nor "
                f"the name of a configured repository")
    return (f"{directory} is the directory of repository {fqrn}, which is not configured in "
            f"{config.path}; this command writes, so it needs a configured name: add "
            f"'{fqrn}: {{storage: {resolved.parent}, keys: KEY_DIR}}' under repositories "
            "there (KEY_DIR holding its keys)")


def _manifest_name(directory: Path) -> str | None:
    """The name a directory's manifest claims, unverified (for messages and key lookup)."""
    from .engine.trust import read_manifest

    try:
        manifest, _ = read_manifest(open_storage(str(directory), read_only=True))
    except PublisherError:
        return None
    return manifest.fqrn


def open_reader(
    spec: str,
    config: Config,
    *,
    keys: list[Path] | None = None,
    fqrn: str | None = None,
) -> NativeRepository:
    """A configured name, a repository directory, or an http(s) URL of one, to read.

    For a directory or URL the master public key must come from ``keys``, or from the
    key directory (of the configured repository of that name, else the default one) when
    it holds ``<fqrn>.pub``; the name comes from ``fqrn``, the URL, or the manifest.
    Repositories of both backends are read the way a client reads them, with every
    signature checked. A directory or URL without a manifest, or one that cannot be
    reached, is reported as such here, in one line.
    """
    if spec in config.repositories:
        repo = config.get(spec)
        if repo.backend == CLASSIC:
            return _read_only(storage_for(repo, read_only=True), repo.name,
                              keys or [key_files.key_paths(repo.keys, repo.name)["pub"]])
        return open_native(repo, keys)
    url = spec.startswith(("http://", "https://"))
    if url:
        fqrn = fqrn or _name_from_url(spec)
    elif not Path(spec).is_dir():
        raise RepositoryNotFound(_neither(config, spec))
    if fqrn is not None:
        check_fqrn(fqrn)
    storage = open_storage(spec, read_only=True)
    claimed = _claimed_name(storage, spec, url)
    public = list(keys or [])
    name = fqrn or claimed
    if not public and name:
        candidate = key_files.key_paths(config_keys_dir(config, name), name)["pub"]
        if candidate.exists():
            public = [candidate]
    return _read_only(storage, fqrn, public)


def _neither(config: Config, spec: str) -> str:
    text = (f"{spec!r} is neither a configured repository (see {config.path}), a "
            "repository directory nor an http(s) URL")
    close = config.close_names(spec)
    return f"{text}; did you mean {' or '.join(repr(n) for n in close)}?" if close else text


def _claimed_name(storage: Storage, spec: str, url: bool) -> str | None:
    """The manifest's name, after checking there is one: a directory or URL that holds no
    repository, or cannot be reached, fails here with one line."""
    from .engine.trust import read_manifest

    try:
        manifest, _ = read_manifest(storage)
    except RepositoryNotFound:
        what = "URL" if url else "directory"
        hint = "" if url else _repositories_below(Path(spec))
        raise RepositoryNotFound(f"{spec} is not a CVMFS repository: the {what} has no "
                                 f"{MANIFEST}{hint}") from None
    except (FormatError, SignatureError):
        return None  # a malformed manifest: verifying it says what is wrong
    # a StorageError (unreachable, refused) goes up as it is: one line
    return manifest.fqrn


def _repositories_below(directory: Path) -> str:
    """``; did you mean DIR/NAME?`` for a Stratum 0 root holding repositories."""
    try:
        found = sorted(str(child) for child in directory.iterdir()
                       if (child / MANIFEST).is_file())
    except OSError:
        return ""
    return f"; did you mean {' or '.join(found[:3])}?" if found else ""


def _read_only(storage: Storage, fqrn: str | None, public: list[Path]) -> NativeRepository:
    return NativeRepository(storage, fqrn, public_keys=public,
                            options=EngineOptions(cache_dir=cache_dir()))


def _name_from_url(url: str) -> str | None:
    """``.../cvmfs/<fqrn>`` or a bucket URL ending in the repository name."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    try:
        return check_fqrn(last)
    except InvalidName:
        return None


def trust_store(repo: RepositoryConfig) -> TrustStore:
    """The repository's release trust policy: ``trust`` in the config, else the default."""
    from .releases.trust import TrustStore

    configured_path = repo.setting("trust")
    return TrustStore(Path(str(configured_path)).expanduser() if configured_path
                      else config_home() / "trust" / repo.name)


def config_keys_dir(config: Config, fqrn: str) -> Path:
    repo = config.repositories.get(fqrn)
    return repo.keys if repo else default_keys_dir()


# -- where a repository stands ----------------------------------------------------------------


@dataclass
class Status:
    """What ``list`` and ``info`` show; None where it cannot be told (``notes`` says why)."""

    repository: str
    backend: str
    storage: str
    default: bool = False
    revision: int | None = None
    published: dt.datetime | None = None
    tags: list[str] | None = None
    objects: int | None = None
    bytes: int | None = None
    lock: LockInfo | None = None
    whitelist_expires: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def whitelist_left(self) -> dt.timedelta | None:
        if self.whitelist_expires is None:
            return None
        return self.whitelist_expires - dt.datetime.now(dt.UTC)

    @property
    def whitelist_expiring(self) -> bool:
        left = self.whitelist_left
        return left is not None and left < dt.timedelta(days=WHITELIST_WARN_DAYS)


def status(config: Config, name: str, *, detail: bool = True) -> Status:
    """Where a configured repository stands, read as a client reads it (verified).

    ``detail`` adds what costs more than reading the head: the tags, the lock holder and,
    where the storage can list, the objects and their bytes. Whatever cannot be read is a
    note, not an error, so one unreachable repository never hides the others in ``list``.
    """
    repo = configured(config, name)
    found = Status(name, repo.backend, repo.location(), default=name == config.default_name())
    if repo.backend == CLASSIC:
        _classic_status(repo, found, detail)
    else:
        _native_status(repo, found, detail)
    return found


def _native_status(repo: RepositoryConfig, found: Status, detail: bool) -> None:
    repository = open_native(repo)
    try:
        head = _head(repository)
    except PublisherError as exc:
        found.notes.append(str(exc))
        return
    found.revision = head.manifest.revision
    found.published = _when(head.manifest.timestamp)
    found.whitelist_expires = head.whitelist.expires
    if not detail:
        return
    found.tags = _tag_names(repository)
    _count_objects(repository.storage, found)
    try:
        found.lock = repository.storage.lock_holder()
    except PublisherError as exc:
        found.notes.append(f"lock: {exc}")


def _classic_status(repo: RepositoryConfig, found: Status, detail: bool) -> None:
    """What cvmfs_server says (tags, its transaction lock), and its storage where readable."""
    publisher = open_publisher(repo)
    try:
        tags = publisher.tags()
    except PublisherError as exc:
        found.notes.append(f"cvmfs_server: {exc}")
        tags = []
    trunk = next((t for t in tags if t.name == "trunk"), None)
    if trunk is not None:
        found.revision, found.published = trunk.revision, _when(trunk.timestamp)
    if detail:
        found.tags = sorted(t.name for t in tags)
        found.lock = publisher.lock_holder()
    try:
        repository = _read_only(storage_for(repo, read_only=True), repo.name,
                                [key_files.key_paths(repo.keys, repo.name)["pub"]])
        head = _head(repository)
    except PublisherError as exc:
        found.notes.append(f"storage {repo.location()} not readable here ({exc}): no "
                           "whitelist expiry or object counts")
        return
    found.whitelist_expires = head.whitelist.expires
    if found.revision is None:
        found.revision = head.manifest.revision
        found.published = _when(head.manifest.timestamp)
    if detail:
        _count_objects(repository.storage, found)


def _head(repository: NativeRepository) -> Any:
    """The verified head; with an expired whitelist, verified as of the epoch instead, so
    the expiry can be reported (every signature is still checked)."""
    try:
        return repository.head()
    except SignatureError:
        return repository.head(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))


def _tag_names(repository: NativeRepository) -> list[str]:
    reader = repository.reader(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    try:
        history = reader.history()
        if history is None:
            return []
        try:
            return sorted(tag.name for tag in history.tags())
        finally:
            history.conn.close()
    finally:
        reader.close()


def _count_objects(storage: Storage, found: Status) -> None:
    if not storage.capabilities().listable:
        found.notes.append("the storage cannot list objects: no object counts")
        return
    objects = total = 0
    try:
        for key, size in storage.list_with_sizes("data/"):
            if key.startswith("data/txn/"):
                continue
            objects += 1
            total += max(size, 0)
    except PublisherError as exc:
        found.notes.append(f"listing objects failed: {exc}")
        return
    found.objects, found.bytes = objects, total


def _when(timestamp: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC) if timestamp else None


# -- watching storage work, for progress bars ---------------------------------------------------


@contextlib.contextmanager
def observed(on_read: Callable[[int], None], on_list: Callable[[], None],
             on_delete: Callable[[int], None]) -> Iterator[None]:
    """Every storage opened inside the block reports its reads, listings and deletions:
    how long-running commands (``verify``, ``gc``) show progress without the engine
    knowing about terminals."""
    observing = _observing_class()
    with wrapped_by(lambda storage: observing(storage, on_read, on_list, on_delete)):
        yield


@functools.cache
def _observing_class() -> type[Storage]:
    """The wrapper ``observed`` uses, defined on first use (only verify and gc need it)."""
    from .storage.wrappers import StorageWrapper

    class ObservedStorage(StorageWrapper):
        """Calls ``on_read(bytes)`` for every object read, ``on_list()`` for every key listed
        and ``on_delete(keys)`` for every deletion; changes nothing else."""

        def __init__(self, inner: Storage, on_read: Callable[[int], None],
                     on_list: Callable[[], None], on_delete: Callable[[int], None]) -> None:
            super().__init__(inner)
            self.on_read, self.on_list, self.on_delete = on_read, on_list, on_delete

        def get(self, key: str) -> bytes:
            data = self.inner.get(key)
            self.on_read(len(data))
            return data

        def open(self, key: str) -> ObjectStream:
            stream = self.inner.open(key)
            self.on_read(stream.size or 0)
            return stream

        def exists(self, key: str) -> bool:
            found = self.inner.exists(key)
            self.on_read(0)
            return found

        def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
            for item in self.inner.list_with_sizes(prefix):
                self.on_list()
                yield item

        def list(self, prefix: str = "") -> Iterator[str]:
            for key in self.inner.list(prefix):
                self.on_list()
                yield key

        def delete(self, key: str) -> None:
            self.inner.delete(key)
            self.on_delete(1)

        def delete_many(self, keys: list[str]) -> None:
            self.inner.delete_many(keys)  # a batch: reported when it is done
            self.on_delete(len(keys))

    return ObservedStorage
