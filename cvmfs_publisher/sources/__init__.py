"""Producers of entry streams from what librarians hand us: a directory, a file, a tarball.

Each producer yields ``Entry`` objects (see ``cvmfs_publisher.entries``); nothing is
unpacked or copied to disk first. ``open_source`` picks the producer for a path.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..entries import Entry
from ..errors import SourceError
from .directory import directory_entries, file_entry, scan_directory
from .tarball import TAR_SUFFIXES, tarball_entries


@dataclass(frozen=True)
class SourceEstimate:
    """Totals for a progress bar; ``None`` where a stream cannot know in advance."""

    files: int | None
    bytes: int | None


def open_source(src: Path) -> tuple[Iterator[Entry], SourceEstimate]:
    """Pick the producer for a path given on the command line.

    A directory is scanned here, so it is read before anything is locked, and its
    estimate comes from that scan.
    """
    try:
        st = src.lstat()
    except FileNotFoundError:
        raise SourceError(f"source {src} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read source {src}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        entries, top = scan_directory(src)
        return entries, SourceEstimate(top.files, top.size)
    if stat.S_ISREG(st.st_mode) and src.name.endswith(TAR_SUFFIXES):
        return tarball_entries(src), SourceEstimate(None, st.st_size)
    if stat.S_ISREG(st.st_mode):
        return iter([file_entry(src, "", st)]), SourceEstimate(1, st.st_size)
    raise SourceError(f"source {src} is neither a directory, a regular file nor a tarball")


__all__ = ["SourceEstimate", "directory_entries", "open_source", "tarball_entries"]
