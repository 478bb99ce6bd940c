"""Knobs of the native engine, with upstream's defaults; the config layer fills them in."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..cvmfs.compression import DEFAULT_LEVEL, DEFAULT_PRESET, PRESETS
from ..cvmfs.dirtab import RELEASE_CATALOGS
from ..cvmfs.hashes import Algorithm
from ..cvmfs.manifest import DEFAULT_TTL
from ..cvmfs.whitelist import DEFAULT_DAYS
from ..entries import Owner
from .chunking import ChunkPolicy

# The knobs a repository may be written with, inclusive; the configuration's schema uses
# these ranges too. Nothing outside them makes sense: a TTL of 0 or a whitelist that expires
# before it is published only breaks clients.
LIMITS = {
    "compression_level": (1, 9),  # deflate level of the zlib and balanced presets
    "ttl": (1, 86_400),  # seconds a client may cache the manifest: at most a day
    "workers": (1, 1024),
    "whitelist_days": (1, 3650),
    "autocatalog_max": (1, 10_000_000),  # None: never split
    "autocatalog_min": (1, 10_000_000),
    "max_object_size": (1 << 20, 1 << 40),  # bytes, 1 MiB to 1 TiB
}
# Reading: the most bytes one object (catalog, history, file, chunk) may inflate to. Memory
# never depends on it (objects stream in 1 MiB pieces); it bounds the disk and time a
# hostile reference can cost. Catalogs reach hundreds of MB, chunks 16 MiB, and only files
# published without chunking come near it.
MAX_OBJECT_SIZE = 4 << 30


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cvmfs-publisher"


@dataclass
class EngineOptions:
    ttl: int = DEFAULT_TTL
    compression: str = DEFAULT_PRESET  # one of PRESETS
    compression_level: int = DEFAULT_LEVEL  # of the zlib and balanced presets
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
    max_object_size: int = MAX_OBJECT_SIZE

    def __post_init__(self) -> None:
        """Refuse knobs outside ``LIMITS``: a caller that skipped the configuration's checks
        must not sign a manifest with a negative TTL or a whitelist expiring in the past."""
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be from {low} to {high}, not {value}")
        if self.autocatalog_max is not None and self.autocatalog_max < self.autocatalog_min:
            raise ValueError("autocatalog_max must not be below autocatalog_min")
        if self.compression not in PRESETS:
            raise ValueError(f"compression must be one of {', '.join(PRESETS)}, "
                             f"not {self.compression!r}")

    def scratch(self) -> tempfile.TemporaryDirectory:
        return tempfile.TemporaryDirectory(prefix="cvmfs-publisher-", dir=self.work_dir)
