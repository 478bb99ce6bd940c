"""What a drop area remembers between runs: its index and its status.

The index maps each published path to what it looked like (kind, size, mtime, mode,
target or ETag, SHA-256 of the content) and the revision that published it, so changes
made while the watcher was down are found by one scan at start. The status is what
``watch-status`` shows. Both live in one JSON file per area under
``$XDG_STATE_HOME/cvmfs-publisher/watch/<repository>/``, replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


def state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "cvmfs-publisher" / "watch"


@dataclass
class IndexEntry:
    signature: list  # FileState.signature as JSON gives it back
    sha256: str | None
    revision: int


@dataclass
class AreaStatus:
    area: str
    repository: str
    path: str
    last_sync: float | None = None  # time of the last successful publish
    last_revision: int | None = None
    last_change: str = ""  # "+3 ~1 -2 files, 12.0 KiB"
    pending: int = 0  # changed paths not yet published
    unsettled: list[str] = field(default_factory=list)
    last_error: str = ""
    failures: int = 0  # consecutive
    problems: list[str] = field(default_factory=list)  # paths the last scan refused
    running: bool = False
    pid: int | None = None


class AreaState:
    def __init__(self, file: Path, status: AreaStatus) -> None:
        self.file = file
        self.status = status
        self.index: dict[str, IndexEntry] = {}

    @classmethod
    def load(cls, repository: str, path: str, area: str) -> AreaState:
        key = hashlib.sha256(f"{area}\0{path}".encode()).hexdigest()[:16]
        file = state_home() / repository / f"{key}.json"
        state = cls(file, AreaStatus(area, repository, path))
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            state.status = AreaStatus(**{**asdict(state.status), **data["status"],
                                         "area": area, "repository": repository, "path": path})
            state.index = {p: IndexEntry(**e) for p, e in data["index"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError):
            state.status.last_error = f"state file {file} was unreadable: starting afresh"
        return state

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        data = {"status": asdict(self.status),
                "index": {p: asdict(e) for p, e in sorted(self.index.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".state.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as sink:
            json.dump(data, sink)
        os.replace(tmp, self.file)


def statuses(repository: str) -> list[AreaStatus]:
    """Every area's status for ``watch-status``."""
    found = []
    for file in sorted((state_home() / repository).glob("*.json")):
        try:
            found.append(AreaStatus(**json.loads(file.read_text(encoding="utf-8"))["status"]))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return found
