"""Knobs of the native engine, with upstream's defaults; the config layer fills them in."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..cvmfs.compression import DEFAULT_LEVEL
from ..cvmfs.dirtab import RELEASE_CATALOGS
from ..cvmfs.hashes import Algorithm
from ..cvmfs.manifest import DEFAULT_TTL
from ..cvmfs.whitelist import DEFAULT_DAYS
from ..entries import Owner
from .chunking import ChunkPolicy


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cvmfs-publisher"


@dataclass
class EngineOptions:
    ttl: int = DEFAULT_TTL
    compression_level: int = DEFAULT_LEVEL
    algorithm: Algorithm = Algorithm.SHA1
    chunking: ChunkPolicy | None = field(default_factory=ChunkPolicy)
    workers: int | None = None  # default: os.cpu_count()
    owner: Owner | None = None  # map every uid/gid to this owner (None keeps them)
    default_owner: Owner = field(default_factory=lambda: Owner(os.getuid(), os.getgid()))
    auto_tag: bool = True  # a generic-<time> tag for untagged revisions, as upstream
    whitelist_days: int = DEFAULT_DAYS
    # Nested catalogs: without a /.cvmfsdirtab, directories matching these patterns become
    # catalogs (one per release); catalogs above autocatalog_max rows are split.
    release_catalogs: list[str] = field(default_factory=lambda: list(RELEASE_CATALOGS))
    autocatalog_max: int | None = 100_000
    autocatalog_min: int = 1_000
    cache_dir: Path = field(default_factory=default_cache_dir)
    work_dir: Path | None = None  # scratch for catalogs in flight; default: system temp

    def __post_init__(self) -> None:
        if not 1 <= self.compression_level <= 9:
            raise ValueError("compression level must be between 1 and 9")

    def scratch(self) -> tempfile.TemporaryDirectory:
        return tempfile.TemporaryDirectory(prefix="cvmfs-publisher-", dir=self.work_dir)
