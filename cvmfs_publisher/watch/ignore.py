"""What a drop area never publishes: editor and download leftovers, and ``.cvmfsignore``.

The defaults are the files editors, office suites, browsers, sync clients and network
file systems leave while they work (Syncthing's and lsyncd's lists). An area's own
``.cvmfsignore`` (gitignore syntax, read with ``pathspec``) adds rules; ``!pattern``
re-includes what a default would hide. The ignore file itself is not published.
"""

from __future__ import annotations

from pathlib import Path

import pathspec

IGNORE_FILE = ".cvmfsignore"
DEFAULTS = (
    "*~", ".*.sw?", ".*.swx", "4913", ".#*", "#*#", "~$*", "*.tmp", "*.temp", "*.part",
    "*.partial", "*.crdownload", "*.download", ".DS_Store", "._*", "Thumbs.db",
    "desktop.ini", ".~lock.*", ".nfs*", ".fuse_hidden*", ".goutputstream-*",
    ".syncthing.*", ".stfolder", ".sync", ".Trash-*", IGNORE_FILE,
)


class IgnoreRules:
    def __init__(self, extra: list[str] | None = None) -> None:
        self.spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULTS, *(extra or [])])

    @classmethod
    def for_folder(cls, root: Path) -> IgnoreRules:
        """The defaults plus the area's ``.cvmfsignore``, read afresh at every scan."""
        try:
            text = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return cls()
        return cls(text.splitlines())

    @classmethod
    def from_text(cls, text: str | None) -> IgnoreRules:
        return cls(text.splitlines() if text else None)

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        """``rel`` is relative to the area root, ``/``-separated."""
        return bool(self.spec.match_file(rel + "/" if is_dir else rel))
