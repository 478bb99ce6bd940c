"""A directory as a drop area: watched with inotify, or polled on NFS and FUSE mounts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..entries import Entry
from .area import file_sha256
from .snapshot import FileState, Snapshot, folder_content, scan_folder

BLOCK = 1 << 20


class FolderSource:
    def __init__(self, root: Path, *, polling: bool = False) -> None:
        self.root = root.resolve()
        self.name = str(self.root)
        self.polling = polling

    def scan(self) -> Snapshot:
        return scan_folder(self.root)

    def content(self) -> Callable[[str, FileState], Entry]:
        return folder_content(self.root)

    def sha256(self, rel: str) -> str | None:
        try:
            with open(self.root / rel, "rb") as handle:
                return file_sha256(lambda: handle.read(BLOCK))
        except OSError:
            return None
