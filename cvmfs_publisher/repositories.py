"""Turning what a user names (a configured name, a directory, a URL) into a repository."""

from __future__ import annotations

from pathlib import Path

from .config import Config, RepositoryConfig, cache_dir, default_keys_dir
from .cvmfs.names import check_fqrn
from .engine import key_files
from .engine.options import EngineOptions
from .engine.repository import NativeRepository
from .errors import InvalidName, RepositoryNotFound
from .storage.base import Storage
from .storage.http import HttpStorage
from .storage.local import LocalStorage


def storage_for(repo: RepositoryConfig) -> Storage:
    if repo.is_s3:
        from .storage.s3 import S3Settings, S3Storage

        settings = S3Settings.from_url_and_mapping(repo.storage, repo.setting("s3") or {})
        return S3Storage.from_settings(settings, repo.name)
    return LocalStorage(Path(repo.location()))


def open_configured(repo: RepositoryConfig, public_keys: list[Path] | None = None
                    ) -> NativeRepository:
    storage = storage_for(repo)
    options = repo.engine_options()
    parallelism = getattr(getattr(storage, "settings", None), "parallelism", None)
    if options.workers is None and parallelism:
        options.workers = parallelism  # S3 is bound by request latency, not by cores
    return NativeRepository(storage, repo.name, keys_dir=repo.keys,
                            public_keys=list(public_keys or []), options=options)


def open_any(
    spec: str,
    config: Config,
    *,
    keys: list[Path] | None = None,
    fqrn: str | None = None,
) -> NativeRepository:
    """A configured name, a repository directory, or an http(s) URL of one.

    For a directory or URL the master public key must come from ``keys``, or from the
    default key directory when it holds ``<fqrn>.pub``.
    """
    if spec in config.repositories:
        return open_configured(config.get(spec), keys)
    if spec.startswith(("http://", "https://")):
        storage: Storage = HttpStorage(spec)
        fqrn = fqrn or _name_from_url(spec)
    elif Path(spec).is_dir():
        storage = LocalStorage(Path(spec), read_only=True)
    else:
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
    return NativeRepository(storage, fqrn, public_keys=public,
                            options=EngineOptions(cache_dir=cache_dir()))


def _name_from_url(url: str) -> str | None:
    """``.../cvmfs/<fqrn>`` or a bucket URL ending in the repository name."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    try:
        return check_fqrn(last)
    except InvalidName:
        return None


def config_keys_dir(config: Config, fqrn: str) -> Path:
    repo = config.repositories.get(fqrn)
    return repo.keys if repo else default_keys_dir()

