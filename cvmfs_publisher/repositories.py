"""Turning what a user names (a configured name, a directory, a URL) into a repository.

``open_publisher`` is the one place that decides which backend publishes to a configured
repository; everything that writes asks it and nothing else. ``open_reader`` gives the
verified read access ``ls``, ``cat``, ``verify`` and friends need, for any repository.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .backends.native import NativePublisher
from .config import Config, RepositoryConfig, cache_dir, config_home, default_keys_dir
from .cvmfs.names import check_fqrn
from .engine import key_files
from .engine.options import EngineOptions
from .engine.repository import NativeRepository
from .errors import InvalidName, RepositoryExists, RepositoryNotFound
from .publisher import Publisher
from .releases.trust import TrustStore
from .storage import Storage, open_storage

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
    return NativePublisher(open_native(repo))


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


def open_native(repo: RepositoryConfig, public_keys: list[Path] | None = None
                ) -> NativeRepository:
    storage = storage_for(repo)
    options = repo.engine_options()
    parallelism = storage.capabilities().parallelism
    if options.workers is None and parallelism:
        options.workers = parallelism  # S3 is bound by request latency, not by cores
    return NativeRepository(storage, repo.name, keys_dir=repo.keys,
                            public_keys=list(public_keys or []), options=options)


def open_directory_publisher(directory: str, fqrn: str, keys_dir: Path) -> Publisher:
    """A native repository that is not configured: a directory and its key directory."""
    check_fqrn(fqrn)
    storage = open_storage(directory)
    return NativePublisher(NativeRepository(storage, fqrn, keys_dir=keys_dir,
                                            options=EngineOptions(cache_dir=cache_dir())))


def open_reader(
    spec: str,
    config: Config,
    *,
    keys: list[Path] | None = None,
    fqrn: str | None = None,
) -> NativeRepository:
    """A configured name, a repository directory, or an http(s) URL of one, to read.

    For a directory or URL the master public key must come from ``keys``, or from the
    default key directory when it holds ``<fqrn>.pub``. Repositories of both backends are
    read the way a client reads them, with every signature checked.
    """
    if spec in config.repositories:
        repo = config.get(spec)
        if repo.backend == CLASSIC:
            return _read_only(storage_for(repo, read_only=True), repo.name,
                              keys or [key_files.key_paths(repo.keys, repo.name)["pub"]])
        return open_native(repo, keys)
    if spec.startswith(("http://", "https://")):
        fqrn = fqrn or _name_from_url(spec)
    elif not Path(spec).is_dir():
        raise RepositoryNotFound(
            f"{spec!r} is neither a configured repository (see {config.path}), "
            "a repository directory nor an http(s) URL"
        )
    if fqrn is not None:
        check_fqrn(fqrn)
    public = list(keys or [])
    if not public and fqrn:
        candidate = key_files.key_paths(config_keys_dir(config, fqrn), fqrn)["pub"]
        if candidate.exists():
            public = [candidate]
    return _read_only(open_storage(spec, read_only=True), fqrn, public)


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
    configured = repo.setting("trust")
    return TrustStore(Path(str(configured)).expanduser() if configured
                      else config_home() / "trust" / repo.name)


def config_keys_dir(config: Config, fqrn: str) -> Path:
    repo = config.repositories.get(fqrn)
    return repo.keys if repo else default_keys_dir()
