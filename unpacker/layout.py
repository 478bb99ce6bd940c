"""Paths of the unpacked.cern.ch layout, and the entries that make its links and metadata.

```
<registry>/<repository>:<tag>            -> ../../.flat/<cfg[:2]>/<cfg>   (relative symlink)
.flat/<cfg[:2]>/<cfg>/                   flat rootfs, own nested catalog (.cvmfscatalog)
.metadata/<registry>/<repository>:<tag>/manifest.json   the image manifest as served
.metadata/<registry>/<repository>:<tag>/unpack.json     our state (digests, times)
.multiarch/<arch>[:<variant>]/<registry>/<repository>:<tag>   -> per-arch flat
.metadata/.multiarch/<arch>[:<variant>]/<registry>/<repository>:<tag>/manifest.json
.multiarch/<alias> -> <arch>[:<variant>]  (x86_64, aarch64, arm64, armhf, ...)
```
With several platforms the tag symlink is a CVMFS variant symlink
``.multiarch/$(CVMFS_ARCH:-amd64)/...`` that the client expands. Everything can live
below a prefix (a ``cvmfs_repo`` of ``repo/subdir``).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import InvalidPath

FLAT = ".flat"
METADATA = ".metadata"
MULTIARCH = ".multiarch"
CATALOG_MARKER = ".cvmfscatalog"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "unpack.json"
RELEASED_FILE = ".metadata/.gc/released.json"


@dataclass(frozen=True)
class Layout:
    prefix: str = ""

    def __post_init__(self) -> None:
        parts = [p for p in self.prefix.split("/") if p]
        if any(p in (".", "..") or p.startswith(".cvmfs") for p in parts):
            raise InvalidPath(f"unpack prefix {self.prefix!r} must be plain directory names")
        object.__setattr__(self, "prefix", "/".join(parts))

    def abs(self, rel: str) -> str:
        """A layout path as a repository path for the engine."""
        return "/" + "/".join(p for p in (self.prefix, rel) if p)

    @staticmethod
    def flat(config_hex: str) -> str:
        return f"{FLAT}/{config_hex[:2]}/{config_hex}"

    @staticmethod
    def tag(name: str) -> str:
        return name

    @staticmethod
    def metadata(name: str) -> str:
        return f"{METADATA}/{name}"

    @staticmethod
    def multiarch(key: str, name: str) -> str:
        return f"{MULTIARCH}/{key}/{name}"

    @staticmethod
    def multiarch_metadata(key: str, name: str) -> str:
        return f"{METADATA}/{MULTIARCH}/{key}/{name}"


def relative_target(link: str, target: str) -> str:
    """The target as seen from the link's directory (one ``../`` per component)."""
    return posixpath.relpath(target, posixpath.dirname(link) or ".")


def symlink_entries(target: str, now: int | None = None) -> Iterator[Entry]:
    """A one-entry stream publishing a symlink; its mtime says when it was last synced."""
    yield Entry("", Kind.SYMLINK, mode=0o777, mtime=int(now or time.time()), target=target)


def files_entries(files: dict[str, bytes], now: int | None = None) -> Iterator[Entry]:
    """A directory holding small generated files (metadata)."""
    stamp = int(now or time.time())
    yield Entry("", Kind.DIR, mode=0o755, mtime=stamp)
    for name in sorted(files):
        data = files[name]
        yield Entry(name, Kind.FILE, mode=0o644, mtime=stamp, size=len(data),
                    content=BytesContent(data))


def file_entry(data: bytes, now: int | None = None) -> Iterator[Entry]:
    yield Entry("", Kind.FILE, mode=0o644, mtime=int(now or time.time()), size=len(data),
                content=BytesContent(data))


def catalog_dir_entries(now: int | None = None) -> Iterator[Entry]:
    """An empty directory that is its own nested catalog (``.flat`` itself)."""
    stamp = int(now or time.time())
    yield Entry("", Kind.DIR, mode=0o755, mtime=stamp)
    yield Entry(CATALOG_MARKER, Kind.FILE, mode=0o644, mtime=stamp, size=0,
                content=BytesContent(b""))
