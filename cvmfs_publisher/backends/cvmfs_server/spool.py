"""File contents held on local disk between staging and commit.

A classic session stages everything before it opens a ``cvmfs_server`` transaction, so the
transaction (and the repository lock it is) is held only while the tree is written. Entry
streams are readable only once, so their bytes wait here.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ...errors import SourceError

BLOCK = 1 << 20


@dataclass(frozen=True)
class SpooledFile:
    """Content a session holds; ``spool`` identifies the session that owns the file."""

    path: Path
    size: int
    spool: int


class Spool:
    def __init__(self, parent: Path | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="cvmfs-publisher-spool-", dir=parent))
        self.count = 0

    def add(self, stream: BinaryIO, what: str) -> SpooledFile:
        self.count += 1
        path = self.directory / f"{self.count:08d}"
        size = 0
        try:
            with open(path, "wb") as sink:
                while block := stream.read(BLOCK):
                    sink.write(block)
                    size += len(block)
        except OSError as exc:
            raise SourceError(f"cannot read {what}: {exc}") from None
        return SpooledFile(path, size, id(self))

    def owns(self, stored: object) -> bool:
        return isinstance(stored, SpooledFile) and stored.spool == id(self)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
