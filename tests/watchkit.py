"""Helpers of the drop-area tests: a real watcher in a thread, the area and the repository as
comparable listings, and waiting on real conditions with a deadline.

The oracle is independent of the watcher's own scan: ``area_tree`` walks the folder with
``os.scandir`` (no symlink followed) and leaves out only what the test itself names as
ignored. ``published_tree`` reads the repository back through the Publisher's view and hashes
every file. A plain module (not conftest), imported by ``tests/`` and ``tests/s3/`` alike.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cvmfs_publisher.config import Config
from cvmfs_publisher.publisher import Publisher
from cvmfs_publisher.repositories import open_native
from cvmfs_publisher.watch.area import AreaSync, SyncResult
from cvmfs_publisher.watch.runner import Watcher, WatchSettings
from cvmfs_publisher.watch.state import AreaStatus, statuses

NAME = "sw.example.org"
GRANT = "/users/alice"
# Short enough for fast tests, long enough that a burst of writes is one change.
FAST = WatchSettings(quiet=0.3, max_delay=5.0, rescan=3600.0, poll_interval=0.2)

Tree = dict[str, tuple]  # rel ("" = the area itself) -> (kind, mode, size, sha256 or target)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def area_tree(root: Path, ignored: Callable[[str], bool] = lambda rel: False,
              content: bool = True) -> Tree:
    """What the area holds: directories, files (with their hash) and symlinks (with their
    target), never following a symlink; ``ignored(rel)`` drops a path and all below it."""
    st = os.lstat(root)
    tree: Tree = {"": ("dir", stat.S_IMODE(st.st_mode), 0, "")}
    pending = [("", root)]
    while pending:
        rel_dir, directory = pending.pop()
        for child in os.scandir(directory):
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            if ignored(rel):
                continue
            st = child.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                tree[rel] = ("dir", mode, 0, "")
                pending.append((rel, Path(child.path)))
            elif stat.S_ISLNK(st.st_mode):
                tree[rel] = ("symlink", 0o777, 0, os.readlink(child.path))
            else:
                what = sha(Path(child.path).read_bytes()) if content else ""
                tree[rel] = ("file", mode, st.st_size, what)
    return tree


def published_tree(publisher: Publisher, top: str = GRANT, content: bool = True
                   ) -> Tree | None:
    """The repository below ``top`` in the same shape; None if ``top`` is not published."""
    with publisher.view() as view:
        if view.lookup(top) is None:
            return None
        tree: Tree = {}
        for path, info in view.walk(top):
            rel = path[len(top) + 1:]
            kind = info.kind.value
            if info.is_regular:
                what = sha(b"".join(view.read(path))) if content else ""
                tree[rel] = (kind, info.mode, info.size, what)
            elif info.is_symlink:
                tree[rel] = (kind, 0o777, 0, info.target)
            else:
                tree[rel] = (kind, info.mode, 0, "")
        return tree


def differences(expected: Tree | None, found: Tree | None) -> str:
    if expected is None or found is None:
        return f"expected {'nothing' if expected is None else 'a tree'}, " \
               f"found {'nothing' if found is None else 'a tree'}"
    lines = [f"missing {p}: {expected[p]}" for p in sorted(set(expected) - set(found))]
    lines += [f"extra {p}: {found[p]}" for p in sorted(set(found) - set(expected))]
    lines += [f"differs {p}: expected {expected[p]}, found {found[p]}"
              for p in sorted(set(expected) & set(found)) if expected[p] != found[p]]
    return "\n".join(lines[:20]) + (f"\n... {len(lines) - 20} more" if len(lines) > 20 else "")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0,
             explain: Callable[[], str] = lambda: "") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}\n{explain()}", pytrace=False)
        time.sleep(0.05)


def wait_published(publisher: Publisher, expected: Tree | None, what: str, top: str = GRANT,
                   timeout: float = 20.0) -> Tree | None:
    """Until the repository below ``top`` equals ``expected``: each new revision is compared
    once, kinds, modes, sizes and targets first (cheap), then every file's hash."""

    def strip(tree: Tree | None) -> Tree | None:
        return None if tree is None else {p: (*v[:3], "") if v[0] == "file" else v
                                          for p, v in tree.items()}

    shape = strip(expected)
    compared: list[int] = []  # revisions already compared: each is read once

    def check() -> bool:
        now = revision()
        if now in compared:
            return False
        compared.append(now)
        if strip(published_tree(publisher, top, content=False)) != shape:
            return False
        return published_tree(publisher, top) == expected

    wait_for(check, what, timeout, lambda: differences(expected, published_tree(publisher, top)))
    return published_tree(publisher, top)


def revision() -> int:
    """The revision the repository ``NAME`` publishes now."""
    reader = open_native(Config.load().get(NAME)).reader()
    try:
        return reader.manifest.revision
    finally:
        reader.close()


def status_of(repository: str = NAME, path: str = GRANT) -> AreaStatus | None:
    found = [s for s in statuses(repository) if s.path == path]
    return found[0] if found else None


def status_after_publish(at_least: int | None = None, repository: str = NAME,
                         path: str = GRANT) -> AreaStatus:
    """The area's status once the watcher has recorded a publish of revision ``at_least``
    (default: the one published now) or later: the watcher saves it just after the commit,
    so a test reading it at once races that save."""
    wanted = revision() if at_least is None else at_least
    return wait_for(lambda: (s := status_of(repository, path)) is not None
                    and (s.last_revision or 0) >= wanted and s,
                    "the status of the publish", explain=lambda: repr(status_of(repository, path)))


def area_files(root: Path) -> dict[str, tuple]:
    """Everything the user has in the area, to prove the watcher never touches it:
    rel -> (mode, size, mtime_ns, content hash or target), ignored files included."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            what = os.readlink(path) if path.is_symlink() else \
                sha(path.read_bytes()) if stat.S_ISREG(st.st_mode) else ""
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, what)
    return out


@dataclass
class Report:
    area: AreaSync
    result: SyncResult | None
    error: str
    seen: Any = None  # what ``inspect`` found right after a publish


@dataclass
class WatcherThread:
    """``Watcher.run()`` in a thread, stopped with its ``stop`` event; every report kept.

    ``inspect(area, result)`` runs in the watcher's thread right after each publish, before
    anything else can publish: it sees exactly the revision just made.
    """

    areas: list[AreaSync]
    settings: WatchSettings = field(default_factory=lambda: FAST)
    inspect: Callable[[AreaSync, SyncResult], Any] | None = None
    reports: list[Report] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.watcher = Watcher(self.areas, self.settings, self._report, stop=self.stop)
        self.thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def _report(self, area: AreaSync, result: SyncResult | None, error: str) -> None:
        seen = self.inspect(area, result) if self.inspect and result and result.published \
            else None
        with self.lock:
            self.reports.append(Report(area, result, error, seen))

    def __enter__(self) -> WatcherThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the watcher did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error

    def snapshot(self) -> list[Report]:
        with self.lock:
            return list(self.reports)

    def published(self) -> list[Report]:
        return [r for r in self.snapshot() if r.result is not None and r.result.published]

    def wait_reports(self, count: int, what: str, timeout: float = 20.0,
                     published: bool = False) -> list[Report]:
        """Until at least ``count`` reports (only publishes if ``published``) arrived."""
        def check() -> list[Report] | None:
            if self.error is not None:
                raise self.error
            found = self.published() if published else self.snapshot()
            return found if len(found) >= count else None

        return wait_for(check, what, timeout, lambda: repr(self.snapshot()[-3:]))
