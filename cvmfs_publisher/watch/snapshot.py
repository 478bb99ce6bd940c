"""What a drop area holds right now: a snapshot of paths, and its entry stream.

A snapshot maps each path (relative to the area, ``""`` the area itself) to what
``lstat`` (or an S3 listing) says of it. Symlinks are recorded as symlinks and never
followed; names that break the repository's name rules, special files and unreadable
paths are reported, not published. The entry stream is built from the snapshot, so what
is published is exactly what was scanned and judged stable.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..cvmfs.names import check_name, check_symlink_target
from ..entries import Entry, Kind, OpenerContent
from ..errors import InvalidPath, SourceError
from .ignore import IgnoreRules


@dataclass(frozen=True)
class FileState:
    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0o644
    target: str = ""
    etag: str = ""  # bucket objects: their ETag, which changes with the content

    @property
    def signature(self) -> tuple:
        """What must not change for the path to count as unchanged."""
        return (self.kind.value, self.size, self.mtime_ns, self.mode, self.target, self.etag)


@dataclass
class Snapshot:
    paths: dict[str, FileState] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # shown in watch-status

    @property
    def files(self) -> int:
        return sum(1 for s in self.paths.values() if s.kind is Kind.FILE)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.paths.values() if s.kind is Kind.FILE)


def _state(st: os.stat_result, target: str = "") -> FileState | None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        kind = Kind.FILE
    elif stat.S_ISDIR(mode):
        kind = Kind.DIR
    elif stat.S_ISLNK(mode):
        kind = Kind.SYMLINK
    else:
        return None
    size = st.st_size if kind is Kind.FILE else 0
    return FileState(kind, size, st.st_mtime_ns, stat.S_IMODE(mode), target)


def scan_folder(root: Path) -> Snapshot:
    """Every publishable path of the area, without following any symlink."""
    rules = IgnoreRules.for_folder(root)
    snapshot = Snapshot()
    st = os.lstat(root)
    snapshot.paths[""] = FileState(Kind.DIR, 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    pending = [("", root)]
    while pending:
        rel_dir, directory = pending.pop()
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            snapshot.problems.append(f"{rel_dir or '/'}: cannot list ({exc.strerror})")
            continue
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            state = _scan_one(child, rel, rules, snapshot.problems)
            if state is not None:
                snapshot.paths[rel] = state
                if state.kind is Kind.DIR:
                    pending.append((rel, Path(child.path)))
    return snapshot


def _scan_one(child: os.DirEntry, rel: str, rules: IgnoreRules, problems: list[str]
              ) -> FileState | None:
    try:
        check_name(child.name, "a drop area file")
        st = child.stat(follow_symlinks=False)
        if rules.ignored(rel, stat.S_ISDIR(st.st_mode)):
            return None
        target = check_symlink_target(os.readlink(child.path), rel) \
            if stat.S_ISLNK(st.st_mode) else ""
    except InvalidPath as exc:
        problems.append(f"{rel!r} not published: {exc}")
        return None
    except OSError as exc:
        problems.append(f"{rel}: not published ({exc.strerror})")
        return None
    state = _state(st, target)
    if state is None:
        problems.append(f"{rel}: not published (sockets, pipes and devices are not synced)")
    return state


def snapshot_entries(snapshot: Snapshot, content: Callable[[str, FileState], Entry],
                     previous: Callable[[str], Entry | None], unstable: set[str]
                     ) -> Iterator[Entry]:
    """The area as an entry stream, parents first; an unstable file keeps its previous
    published version (``previous``), or is left out until it settles."""
    for rel in sorted(snapshot.paths, key=lambda p: p.split("/") if p else []):
        state = snapshot.paths[rel]
        if rel in unstable:
            kept = previous(rel)
            if kept is not None:
                yield kept
            continue
        if state.kind is Kind.FILE:
            yield content(rel, state)
        else:
            yield Entry(rel, state.kind, state.mode, os.geteuid(), os.getegid(),
                        state.mtime_ns // 1_000_000_000, target=state.target)


def folder_content(root: Path) -> Callable[[str, FileState], Entry]:
    def entry(rel: str, state: FileState) -> Entry:
        return Entry(rel, Kind.FILE, state.mode, os.geteuid(), os.getegid(),
                     state.mtime_ns // 1_000_000_000, state.size,
                     OpenerContent(lambda: SettledFile(root / rel, state)))

    return entry


class SettledFile:
    """A file read for publishing: it must still have the size and mtime the scan judged
    settled, when opened and when read to its end. A writer that started after the scan
    fails the sync (it is retried) instead of getting its half-written file published."""

    def __init__(self, path: Path, state: FileState) -> None:
        self.path, self.expected = path, (state.size, state.mtime_ns)
        try:
            self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        self._check()

    def _check(self) -> None:
        st = os.fstat(self.file.fileno())
        if (st.st_size, st.st_mtime_ns) != self.expected:
            self.file.close()
            raise SourceError(f"{self.path} changed while being published; the sync is "
                              "retried")

    def read(self, size: int | None = -1) -> bytes:
        data = self.file.read(size)
        if size is None or size < 0 or not data:
            self._check()
        return data

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> SettledFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
