"""Folder drop areas (``cvmfs-publisher watch``): real files, the real watchdog observer, a
real repository; every wait is on a condition with a deadline.

The watcher runs in-process (``Watcher.run()`` in a thread, ``watchkit.WatcherThread``) with a
0.3 s quiet period, or as the CLI in a subprocess where a signal matters. After each change
the published path must equal the area (kind, mode, size and SHA-256 of every file, symlink
targets) and ``verify`` must pass.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from publishers import make_native
from watchkit import (
    FAST,
    GRANT,
    NAME,
    WatcherThread,
    area_files,
    area_tree,
    published_tree,
    revision,
    sha,
    status_after_publish,
    status_of,
    wait_for,
    wait_published,
)

from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import SourceError
from cvmfs_publisher.publisher import Publisher, publish
from cvmfs_publisher.storage.local import LOCK_FILE
from cvmfs_publisher.values import parse_duration
from cvmfs_publisher.watch.area import AreaSync, Grant
from cvmfs_publisher.watch.areas import load_areas
from cvmfs_publisher.watch.folder import FolderSource
from cvmfs_publisher.watch.runner import WatchSettings
from cvmfs_publisher.watch.snapshot import Snapshot


@dataclass
class Drop:
    root: Path
    publisher: Publisher
    tmp: Path

    def area(self, source: FolderSource | None = None, **grant: int) -> AreaSync:
        return AreaSync(source or FolderSource(self.root), Grant(NAME, GRANT, **grant),
                        self.publisher)


@pytest.fixture
def drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Drop:
    """A native repository ``sw.example.org`` and an empty drop area; state in the test home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(isolated_home / "state"))
    publisher = make_native(tmp_path, NAME)
    root = tmp_path / "area"
    root.mkdir()
    return Drop(root, publisher, tmp_path)


def verified(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("verify", "--repo", NAME)
    assert result.code == 0, result.out + result.err


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# -- the area follows ---------------------------------------------------------------------


def test_changes_of_every_kind_are_published(drop: Drop, cli, tmp_path: Path) -> None:
    root, outside = drop.root, tmp_path / "outside"
    outside.mkdir()

    def create() -> None:
        write(root / "a.txt", "a\n")
        write(root / "docs" / "guide" / "index.md", "# guide\n")
        write(root / "tool.sh", "#!/bin/sh\necho tool\n")
        (root / "empty").mkdir()

    def modify() -> None:
        with open(root / "a.txt", "a") as out:
            out.write("more\n")
        write(root / "docs" / "guide" / "index.md", "# guide, second edition\n")

    def move_in() -> None:  # a whole tree arrives with one event for its top directory
        for i in range(30):
            write(outside / "pkg" / f"lib{i % 3}" / f"mod{i}.py", f"x = {i}\n")
        (outside / "pkg" / "lib0" / "deep" / "er").mkdir(parents=True)
        os.rename(outside / "pkg", root / "pkg")

    def move_out() -> None:  # a whole tree leaves with one event for its top directory
        os.rename(root / "pkg", outside / "pkg-gone")

    def replace_file_by_directory() -> None:
        (root / "a.txt").unlink()
        write(root / "a.txt" / "inside", "a directory now\n")

    steps = [
        ("create files and directories", create),
        ("modify files", modify),
        ("chmod a file", lambda: os.chmod(root / "tool.sh", 0o755)),
        ("rename a file", lambda: os.rename(root / "tool.sh", root / "tool")),
        ("rename a directory", lambda: os.rename(root / "docs", root / "manual")),
        ("move a directory in from outside", move_in),
        ("delete a file and a subtree", lambda: (
            (root / "tool").unlink(), shutil.rmtree(root / "pkg" / "lib1"))),
        ("move a directory out", move_out),
        ("a name that starts with two dots", lambda: write(root / "..notes", "a plain name\n")),
        ("replace a file by a directory", replace_file_by_directory),
        ("delete everything", lambda: [shutil.rmtree(p) if p.is_dir() else p.unlink()
                                       for p in root.iterdir()]),
    ]
    with WatcherThread([drop.area()]):
        wait_published(drop.publisher, area_tree(root), "the empty area")
        for what, step in steps:
            before = area_tree(root)
            step()
            after = area_tree(root)
            assert after != before, f"step {what!r} changes nothing"
            wait_published(drop.publisher, after, f"the area after: {what}")
            verified(cli)


def test_large_file_written_slowly_is_never_published_half_written(drop: Drop, cli) -> None:
    """While a file is open for writing, revisions keep publishing the rest of the area: the
    file is absent (new) or its previous version (rewritten), never a part of it."""
    root, big = drop.root, drop.root / "big.bin"
    first = [os.urandom(2 << 20) for _ in range(3)]  # 6 MiB: above the 4 MiB chunking minimum
    second = [os.urandom(2 << 20) for _ in range(3)]

    def inspect(area: AreaSync, result: object) -> str | None:
        with drop.publisher.view() as view:
            if view.lookup(f"{GRANT}/big.bin") is None:
                return None
            return sha(b"".join(view.read(f"{GRANT}/big.bin")))

    def slowly(chunks: list[bytes], label: str, watcher: WatcherThread) -> list[str | None]:
        """Write chunk by chunk, and after each one let the watcher publish a side file."""
        seen = []
        with open(big, "wb") as out:
            for i, chunk in enumerate(chunks):
                out.write(chunk)
                out.flush()
                write(root / f"side-{label}-{i}.txt", f"{label} {i}\n")
                count = len(watcher.published())
                done = watcher.wait_reports(count + 1, f"a revision while big.bin is open "
                                            f"({label}, chunk {i})", published=True)
                seen.append(done[-1].seen)
                assert f"side-{label}-{i}.txt" in published_tree(drop.publisher, content=False)
        return seen

    with WatcherThread([drop.area()], inspect=inspect) as watcher:
        wait_published(drop.publisher, area_tree(root), "the empty area")
        while_new = slowly(first, "new", watcher)
        assert while_new == [None] * len(first)  # a new file waits until it is closed
        wait_published(drop.publisher, area_tree(root), "big.bin once closed")
        verified(cli)
        while_rewritten = slowly(second, "rewrite", watcher)
        old = sha(b"".join(first))
        assert while_rewritten == [old] * len(second)  # the previous version stays
        wait_published(drop.publisher, area_tree(root), "big.bin rewritten")
        verified(cli)
    allowed = {None, old, sha(b"".join(second))}
    every = [r.seen for r in watcher.published()]
    assert set(every) <= allowed, "a revision published big.bin half-written"


def test_editor_saves_publish_only_the_saved_file(drop: Drop, cli) -> None:
    root, notes = drop.root, drop.root / "notes.txt"
    versions = {sha(f"v{i}\n".encode()) for i in (1, 2, 3)}
    notes.write_text("v1\n")

    def inspect(area: AreaSync, result: object) -> dict:
        return published_tree(drop.publisher) or {}

    with WatcherThread([drop.area()], inspect=inspect) as watcher:
        wait_published(drop.publisher, area_tree(root), "notes.txt v1")

        # gedit, VS Code, atomic writers: a temporary file, then os.replace over the old one
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".notes.txt.")
        with os.fdopen(fd, "w") as out:
            out.write("v2\n")
        os.replace(tmp, notes)
        wait_published(drop.publisher, area_tree(root), "notes.txt v2")
        verified(cli)

        # vim: a swap file while editing (and a sync while it exists), then :w with a backup
        # (rename to notes.txt~, write anew, delete the backup), then :q removes the swap
        swap = write(root / ".notes.txt.swp", b"b0VIM 9.0\0" + bytes(4086))
        count = len(watcher.snapshot())
        watcher.wait_reports(count + 1, "a sync while the swap file exists")
        write(root / "4913", "")  # vim's probe whether it may create files here
        (root / "4913").unlink()
        os.rename(notes, root / "notes.txt~")
        notes.write_text("v3\n")
        (root / "notes.txt~").unlink()
        swap.unlink()
        wait_published(drop.publisher, area_tree(root), "notes.txt v3")
        verified(cli)
    for report in watcher.published():
        assert set(report.seen) == {"", "notes.txt"}, report.seen
        assert report.seen["notes.txt"][3] in versions


def drop_files(top: Path, count: int) -> None:
    """``count`` small files written by another process, as a user's copy would be (and
    without competing with the watcher thread for this interpreter's lock)."""
    code = ("import os, sys\n"
            "top, count = sys.argv[1], int(sys.argv[2])\n"
            "for i in range(count):\n"
            "    d = os.path.join(top, f'd{i // 100:03d}')\n"
            "    os.makedirs(d, exist_ok=True)\n"
            "    with open(os.path.join(d, f'f{i:05d}.dat'), 'w') as out:\n"
            "        out.write(f'{i}\\n' * (i % 7 + 1))\n")
    subprocess.run([sys.executable, "-c", code, str(top), str(count)], check=True)


def test_ten_thousand_files_dropped_at_once(drop: Drop, cli) -> None:
    root = drop.root
    with WatcherThread([drop.area()]):
        wait_published(drop.publisher, area_tree(root), "the empty area")
        drop_files(root / "bulk", 10_000)
        wait_published(drop.publisher, area_tree(root), "10,000 files", timeout=60)
        verified(cli)
        shutil.rmtree(root / "bulk")
        wait_published(drop.publisher, area_tree(root), "10,000 files removed", timeout=30)
    verified(cli)


def test_changes_made_while_stopped_are_published_at_start(drop: Drop, cli, tmp_path) -> None:
    root = drop.root
    for name in ("keep.txt", "change.txt", "gone.txt", "dir/inner.txt"):
        write(root / name, f"{name}\n")
    with WatcherThread([drop.area()]):
        wait_published(drop.publisher, area_tree(root), "the first state")
    published = revision()

    write(root / "change.txt", "changed while nobody watched\n")
    (root / "gone.txt").unlink()
    os.rename(root / "dir", root / "renamed")
    write(root / "new.txt", "new\n")
    write(tmp_path / "elsewhere" / "sub" / "f.txt", "moved in\n")
    os.rename(tmp_path / "elsewhere", root / "elsewhere")

    with WatcherThread([drop.area()]) as watcher:
        first = watcher.wait_reports(1, "the catch-up sync")[0]
        assert first.result is not None and first.result.revision == published + 1
        assert published_tree(drop.publisher) == area_tree(root)  # by the catch-up alone
    verified(cli)

    with WatcherThread([drop.area()]) as watcher:  # nothing changed: the index says so
        first = watcher.wait_reports(1, "the catch-up sync")[0]
        assert first.result is not None and not first.result.published
    assert revision() == published + 1


# -- what never reaches the repository -----------------------------------------------------


def test_ignore_rules_keep_files_out_of_the_repository(drop: Drop, cli) -> None:
    root = drop.root
    kept = ["report.pdf", "keep.log", "important.part", "sub/data.csv"]
    ignored = [  # defaults
        "report.pdf.part", "video.crdownload", ".~lock.report.odt#", ".DS_Store", "notes.txt~",
        ".notes.txt.swp", "Thumbs.db", "desktop.ini", "sub/.#draft", ".Trash-1000/files/x",
        # .cvmfsignore
        ".cvmfsignore", "build/out.o", "sub/build/y.o", "debug.log", "sub/trace.log",
    ]
    for rel in kept + ignored:
        write(root / rel, f"{rel}\n")
    (root / ".cvmfsignore").write_text("# local rules\nbuild/\n*.log\n!keep.log\n"
                                       "!important.part\n")
    hidden = {"report.pdf.part", "video.crdownload", ".~lock.report.odt#", ".DS_Store",
              "notes.txt~", ".notes.txt.swp", "Thumbs.db", "desktop.ini", "sub/.#draft",
              ".Trash-1000", ".cvmfsignore", "build", "sub/build", "debug.log",
              "sub/trace.log"}

    def expected(extra: frozenset[str] = frozenset()) -> dict:
        return area_tree(root, lambda rel: rel in hidden or rel in extra)

    def inspect(area: AreaSync, result: object) -> set[str]:
        return set(published_tree(drop.publisher, content=False) or {})

    with WatcherThread([drop.area()], inspect=inspect) as watcher:
        tree = wait_published(drop.publisher, expected(), "the area without ignored files")
        assert tree is not None
        assert set(tree) == {"", "report.pdf", "keep.log", "important.part", "sub",
                             "sub/data.csv"}
        verified(cli)

        # ignored files alone make no revision, though their directory's mtime changed
        before, count = revision(), len(watcher.snapshot())
        write(root / ".~lock.notes.odt#", "lock\n")
        write(root / "sub" / "partial.tmp", "tmp\n")
        watcher.wait_reports(count + 1, "a sync after ignored files appeared")
        assert revision() == before

        # a download: written as .part, renamed when complete
        with open(root / "movie.mkv.part", "wb") as out:
            out.write(os.urandom(300_000))
        os.rename(root / "movie.mkv.part", root / "movie.mkv")
        wait_published(drop.publisher, expected(frozenset({".~lock.notes.odt#",
                                                           "sub/partial.tmp"})),
                       "the finished download")

        # a new rule in .cvmfsignore takes effect at the next sync
        with open(root / ".cvmfsignore", "a") as out:
            out.write("*.pdf\n")
        hidden |= {"report.pdf"}
        wait_published(drop.publisher, expected(frozenset({".~lock.notes.odt#",
                                                           "sub/partial.tmp"})),
                       "report.pdf ignored by the new rule")
        verified(cli)
    for report in watcher.published():
        assert not report.seen & (hidden - {"report.pdf"}), report.seen
        assert "movie.mkv.part" not in report.seen
        assert ".~lock.notes.odt#" not in report.seen


def test_an_area_publishes_only_below_its_grant(drop: Drop, cli, tmp_path: Path) -> None:
    """Symlinks pointing out are published as symlinks; a symlinked directory is not
    descended; sockets, pipes and undecodable names are reported, not published; another
    area and the rest of the repository are left as they were."""
    root = drop.root
    publish(drop.publisher, [
        ("/sw/app", [Entry("", Kind.DIR, 0o755, 0, 0, 1),
                     Entry("bin", Kind.FILE, 0o755, 0, 0, 1, 4, BytesContent(b"app\n"))]),
        ("/users/carol", [Entry("", Kind.DIR, 0o755, 0, 0, 1),
                          Entry("c.txt", Kind.FILE, 0o644, 0, 0, 1, 6, BytesContent(b"carol\n"))]),
    ])
    secret = write(tmp_path / "outside" / "secret.txt", "the secret outside the area\n")
    write(root / "readme.txt", "alice\n")
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink("../../../../../../etc", root / "up")
    os.symlink(secret.parent, root / "outside-dir")
    os.symlink(".", root / "loop")
    os.mkfifo(root / "fifo")
    undecodable = os.fsdecode(b"\xff\xfe.bin")
    with open(os.path.join(os.fsencode(root), b"\xff\xfe.bin"), "wb") as out:
        out.write(b"bad name\n")
    bob = tmp_path / "bob"
    write(bob / "b.txt", "bob\n")
    config = write(tmp_path / "watch.yaml", f"areas:\n"
                   f"  - {{source: {root}, repo: {NAME}, path: {GRANT}}}\n"
                   f"  - {{source: {bob}, repo: {NAME}, path: /users/bob}}\n")
    _, specs = load_areas(config, lambda text: parse_duration(text).total_seconds())
    before = published_tree(drop.publisher, "")
    assert before is not None

    def others() -> dict:
        tree = published_tree(drop.publisher, "") or {}
        return {p: v for p, v in tree.items() if not p.startswith(("users/alice", "users/bob"))
                and p != "users"}

    unchanged = {p: v for p, v in before.items() if p != "users"}
    with WatcherThread([spec.open(drop.publisher) for spec in specs]):
        expected = area_tree(root, lambda rel: rel in ("fifo", undecodable))
        tree = wait_published(drop.publisher, expected, "alice's area")
        wait_published(drop.publisher, area_tree(bob), "bob's area", top="/users/bob")
        assert tree is not None
        assert tree["outside-dir"] == ("symlink", 0o777, 0, str(secret.parent))
        assert tree["up"][3] == "../../../../../../etc" and "outside-dir/secret.txt" not in tree
        assert others() == unchanged
        status = status_after_publish(at_least=1)  # alice's first publish
        assert any("fifo" in p for p in status.problems), status.problems
        assert any("UTF-8" in p for p in status.problems), status.problems

        write(root / "more.txt", "more\n")  # alice changes: bob and the rest stay
        bob_before = published_tree(drop.publisher, "/users/bob")
        wait_published(drop.publisher, area_tree(root, lambda rel: rel in ("fifo", undecodable)),
                       "alice's new file")
        assert published_tree(drop.publisher, "/users/bob") == bob_before
        assert others() == unchanged
    everything = published_tree(drop.publisher, "") or {}
    assert sha(secret.read_bytes()) not in {v[3] for v in everything.values()}
    verified(cli)


def test_nested_or_root_grants_are_refused(drop: Drop, cli, tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    bob.mkdir()
    nested = write(tmp_path / "nested.yaml", f"areas:\n"
                   f"  - {{source: {alice}, repo: {NAME}, path: /users}}\n"
                   f"  - {{source: {bob}, repo: {NAME}, path: /users/bob}}\n")
    result = cli("watch", "--config", nested, "--once")
    assert result.code == 2 and "nested paths" in result.err, result.err
    same = write(tmp_path / "same.yaml", f"areas:\n"
                 f"  - {{source: {alice}, repo: {NAME}, path: /users/x}}\n"
                 f"  - {{source: {bob}, repo: {NAME}, path: /users/x/}}\n")
    assert cli("watch", "--config", same, "--once").code == 2
    for path in ("/", "", "/users/../etc", "/users/./alice"):
        result = cli("watch", alice, "--repo", NAME, "--path", path, "--once")
        assert result.code == 2, (path, result.err)
    result = cli("watch", alice, "--repo", NAME, "--path", GRANT, "--quiet-period", "3",
                 "--once")
    assert result.code == 2 and "unit" in result.err, result.err
    unitless = write(tmp_path / "unitless.yaml", f"max_delay: 60\nareas:\n"
                     f"  - {{source: {alice}, repo: {NAME}, path: /users/alice}}\n")
    assert cli("watch", "--config", unitless, "--once").code == 2
    assert published_tree(drop.publisher, "/users") is None  # nothing was published


def last_error() -> str:
    status = status_of()
    return "no status" if status is None else status.last_error


def test_quota_refuses_a_sync_and_publishes_nothing(drop: Drop, cli) -> None:
    root = drop.root
    for i in range(3):
        write(root / f"f{i}.txt", f"{i}\n")
    result = cli("watch", root, "--repo", NAME, "--path", GRANT, "--quota-files", "2", "--once")
    assert result.code == 1 and "quota is 2" in result.err, result.err
    assert published_tree(drop.publisher) is None
    status = json.loads(cli("watch-status", "--repo", NAME, "--json").out)
    assert len(status) == 1 and "quota is 2" in status[0]["last_error"]

    with WatcherThread([drop.area(quota_files=4, quota_bytes=1000)]):
        tree = wait_published(drop.publisher, area_tree(root), "three files")
        write(root / "big.bin", os.urandom(2000))  # over the byte quota
        wait_for(lambda: "quota is 1000" in last_error(), "the byte quota error in the status")
        assert published_tree(drop.publisher) == tree
        (root / "big.bin").unlink()
        write(root / "f3.txt", "3\n")
        write(root / "f4.txt", "4\n")  # over the file quota
        wait_for(lambda: "quota is 4" in last_error(), "the file quota error in the status")
        assert published_tree(drop.publisher) == tree
        assert status_of().pending >= 2  # type: ignore[union-attr]
        (root / "f0.txt").unlink()
        wait_published(drop.publisher, area_tree(root), "back within the quota")
        wait_for(lambda: last_error() == "", "the error cleared")
    verified(cli)


# -- status, failure and stopping ------------------------------------------------------------


def test_busy_repository_is_retried_and_status_shows_it(drop: Drop, cli) -> None:
    root = drop.root
    write(root / "a.txt", "a\n")
    with WatcherThread([drop.area()]) as watcher:
        wait_published(drop.publisher, area_tree(root), "the first state")
        published = revision()

        def status() -> dict | None:
            found = json.loads(cli("watch-status", "--repo", NAME, "--json").out)
            return found[0] if found else None

        recorded = wait_for(lambda: (status() or {}).get("last_revision") == published
                            and status(), "the status of the first publish")
        assert recorded["last_error"] == ""
        assert recorded["pending"] == 0 and recorded["last_sync"] is not None

        lock = os.open(drop.tmp / "stratum0" / NAME / LOCK_FILE, os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)  # another publisher holds the repository
        try:
            write(root / "b.txt", "b\n")
            write(root / "dir" / "c.txt", "c\n")
            user_files = area_files(root)

            failing = wait_for(lambda: (status() or {}).get("failures", 0) >= 3 and status(),
                               "three failed attempts")
            assert "busy" in failing["last_error"] and failing["pending"] >= 3, failing
            assert failing["last_revision"] == published
            human = cli("watch-status", "--repo", NAME)
            assert human.code == 0 and "busy" in human.out and str(published) in human.out
            assert revision() == published
            # the loop reports an attempt just after recording it in the status file
            wait_for(lambda: len([r for r in watcher.snapshot() if r.error]) >= 3,
                     "three failed attempts reported")
        finally:
            os.close(lock)
        wait_published(drop.publisher, area_tree(root), "the retried publish")
        assert area_files(root) == user_files  # the user's files were never touched
        done = wait_for(lambda: (status() or {}).get("last_revision") == revision()
                        and status(), "the status of the retried publish")
        assert done["last_error"] == "" and done["failures"] == 0 and done["pending"] == 0
        assert done["last_change"] == "+3 ~1 -0, 4 bytes", done  # b.txt dir dir/c.txt, ""
    verified(cli)


def watch_process(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cvmfs_publisher.cli", "watch",
                             *[str(a) for a in args]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_ends_a_running_watch_cleanly(drop: Drop, cli, tmp_path: Path) -> None:
    """SIGTERM while a publish is under way: exit 143, the previous revision intact (or the
    whole new one), the lock free, verify passes, and a restart publishes the rest."""
    root = drop.root
    write(root / "first.txt", "first\n")
    incoming = tmp_path / "incoming"  # arrives in one rename: one change, one publish
    for i in range(1000):
        write(incoming / "many" / f"d{i // 100}" / f"f{i}.txt", f"{i}\n")
    for i in range(2):
        write(incoming / "big" / f"r{i}.bin", os.urandom(5 << 20))
    process = watch_process(root, "--repo", NAME, "--path", GRANT, "--quiet-period", "0.3s")
    try:
        wait_published(drop.publisher, area_tree(root), "the first state", timeout=30)
        old, published = area_tree(root), revision()
        os.rename(incoming, root / "incoming")
        new = area_tree(root)
        wait_for(lambda: drop.publisher.lock_holder() is not None or revision() != published,
                 "the watcher publishing", timeout=30)
        assert revision() == published, "the publish ended before it could be interrupted"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, err
    assert drop.publisher.lock_holder() is None
    assert published_tree(drop.publisher) in (old, new)
    verified(cli)
    status = status_of()
    assert status is not None and status.last_revision in (published, revision())

    result = cli("watch", root, "--repo", NAME, "--path", GRANT, "--once")
    assert result.code == 0, result.err
    assert published_tree(drop.publisher) == new
    verified(cli)


# -- settling --------------------------------------------------------------------------------


def test_polled_folder_waits_for_a_growing_file(drop: Drop, cli) -> None:
    """No inotify (--poll): no ``closed`` events, so a file counts as settled once its size
    and mtime stay put across the quiet period and since the last poll. A file still growing
    is left out while the rest of the area is published (not a failed sync, not a part of
    the file)."""
    root = drop.root
    settings = WatchSettings(quiet=0.3, max_delay=5.0, rescan=3600.0, poll_interval=0.5)

    def inspect(area: AreaSync, result: object) -> tuple[int | None, bool]:
        with drop.publisher.view() as view:
            info = view.lookup(f"{GRANT}/log.bin")
            side = view.lookup(f"{GRANT}/side.txt") is not None
            return (None if info is None else info.size), side

    write(root / "a.txt", "a\n")
    chunk, count = os.urandom(64 << 10), 0
    with WatcherThread([drop.area(FolderSource(root, polling=True))], settings,
                       inspect=inspect) as watcher:
        wait_published(drop.publisher, area_tree(root), "the first state")
        with open(root / "log.bin", "wb") as out:
            # keep the file growing until a revision published side.txt next to it
            while not any(r.seen[1] for r in watcher.published()):
                out.write(chunk)
                out.flush()
                count += 1
                if count == 10:
                    write(root / "side.txt", "published while log.bin grows\n")
                assert count < 400, "side.txt was not published while log.bin grew"
                time.sleep(0.05)  # a writer appending every 50 ms
        wait_published(drop.publisher, area_tree(root), "the finished file", timeout=30)
    seen = [r.seen for r in watcher.published()]
    assert {size for size, _ in seen} <= {None, count * len(chunk)}, seen
    assert (None, True) in seen  # side.txt without any of log.bin
    verified(cli)


class HookedSource(FolderSource):
    """Runs ``after_scan`` once, right after a scan: something happens in the area while a
    publish is already under way."""

    def __init__(self, root: Path, after_scan) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self.after_scan = after_scan

    def scan(self) -> Snapshot:
        snapshot = super().scan()
        hook, self.after_scan = self.after_scan, None
        if hook is not None:
            hook()
        return snapshot


def test_a_file_rewritten_during_a_publish_is_not_published_half_written(drop: Drop) -> None:
    root = drop.root
    old, new = os.urandom(1 << 20), os.urandom(1 << 20)
    write(root / "data.bin", old)
    area = drop.area()
    assert area.sync().published
    write(root / "other.txt", "makes the next sync publish\n")

    def rewrite() -> None:  # a writer opens the file again after the scan judged it settled
        out = open(root / "data.bin", "wb")  # noqa: SIM115 - stays open, half-written
        out.write(new[: len(new) // 2])
        out.flush()
        rewriting.append(out)

    rewriting: list = []
    area = drop.area(HookedSource(root, rewrite))
    try:
        with pytest.raises(SourceError, match="changed"):
            area.sync()
    finally:
        for out in rewriting:
            out.write(new[len(new) // 2:])
            out.close()
    assert published_tree(drop.publisher)["data.bin"][3] == sha(old)
    assert area.sync().published
    assert published_tree(drop.publisher) == area_tree(root)


def test_changes_during_a_publish_are_not_lost(drop: Drop) -> None:
    """Events that arrive while a publish runs belong to the next one."""
    root = drop.root
    for i in range(200):
        write(root / "first" / f"f{i}.txt", f"{i}\n")
    seen = threading.Event()

    def late() -> None:
        write(root / "late.txt", "written while the first publish ran\n")
        assert seen.wait(10), "no event for late.txt"

    watcher = WatcherThread([drop.area(HookedSource(root, late))], FAST,
                            inspect=lambda area, result: set(published_tree(drop.publisher)
                                                             or {}))
    events = watcher.watcher.watched[0].events
    record = events.record

    def noting(rel: str, kind: str, stat: tuple[int, int] | None = None) -> None:
        record(rel, kind, stat)
        if rel == "late.txt":
            seen.set()

    events.record = noting  # type: ignore[method-assign]
    with watcher:
        first = watcher.wait_reports(1, "the first publish")[0]
        assert first.result is not None and first.result.published
        assert "first/f0.txt" in first.seen and "late.txt" not in first.seen
        wait_published(drop.publisher, area_tree(root), "late.txt")
