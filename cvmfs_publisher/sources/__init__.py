"""Producers of entry streams from what librarians hand us: a directory, a file, a tarball.

Each producer yields ``Entry`` objects (see ``cvmfs_publisher.entries``); nothing is
unpacked or copied to disk first. ``open_source`` picks the producer for a path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..entries import Entry
from ..errors import SourceError
from .directory import directory_entries, file_entry
from .tarball import TAR_SUFFIXES, tarball_entries


@dataclass(frozen=True)
class SourceEstimate:
    """Totals for a progress bar; ``None`` where a stream cannot know in advance."""

    files: int | None
    bytes: int | None


def open_source(src: Path, estimate: bool = True) -> tuple[Iterator[Entry], SourceEstimate]:
    """Pick the producer for a path given on the command line.

    A directory's estimate is a walk of its own (0.4 s for 100,000 files, a tenth of
    their unchanged re-publish): ``estimate=False`` when no progress bar will show it.
    """
    try:
        st = src.lstat()
    except FileNotFoundError:
        raise SourceError(f"source {src} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot read source {src}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return directory_entries(src), (estimate_directory(src) if estimate
                                        else SourceEstimate(None, None))
    if stat.S_ISREG(st.st_mode) and src.name.endswith(TAR_SUFFIXES):
        return tarball_entries(src), SourceEstimate(None, st.st_size)
    if stat.S_ISREG(st.st_mode):
        return iter([file_entry(src, "", st)]), SourceEstimate(1, st.st_size)
    raise SourceError(f"source {src} is neither a directory, a regular file nor a tarball")


def estimate_directory(root: Path) -> SourceEstimate:
    """Files and bytes below ``root``, walked with a stack (``os.walk`` recurses per level)."""
    files = total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                found = list(listing)
        except OSError:
            continue  # the walk proper reports what cannot be read
        for entry in found:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
    return SourceEstimate(files, total)


__all__ = ["SourceEstimate", "directory_entries", "open_source", "tarball_entries"]
