"""Kill -9 at every storage write of init, publish and resign; stop a lock holder.

After every kill the previous revision (or the new one, if the manifest made it) must pass
the full verify, and a rerun must succeed. This is the transaction guarantee users rely on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvmfs_publisher.config import Config
from cvmfs_publisher.repositories import open_configured

DRIVER = Path(__file__).with_name("crash_driver.py")
NAME = "crash.example.org"


def driver(tmp: Path, target: int, mode: str, *args: str | Path) -> subprocess.CompletedProcess:
    count_file = tmp / "writes"
    count_file.unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, str(DRIVER), str(count_file), str(target), mode, "--",
         *[str(a) for a in args]],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )


def writes(tmp: Path) -> int:
    return int((tmp / "writes").read_text())


def state(storage_root: Path) -> tuple[int | None, list[str]]:
    """(revision, verify problems) of the repository as configured."""
    repository = open_configured(Config.load().get(NAME))
    if not (storage_root / NAME / ".cvmfspublished").exists():
        return None, []
    report = repository.verify()
    return report.revision, report.problems


def make_tree(root: Path) -> Path:
    """Enough entries for many writes: files in two catalogs, a symlink, a hard link."""
    src = root / "src"
    (src / "lib").mkdir(parents=True)
    (src / "nested" / "deep").mkdir(parents=True)
    (src / "nested" / ".cvmfscatalog").write_bytes(b"")
    for i in range(8):
        (src / "lib" / f"f{i}.txt").write_text(f"content {i}\n" * (i + 1))
        (src / "nested" / "deep" / f"g{i}.bin").write_bytes(os.urandom(100 + i))
    (src / "link").symlink_to("lib/f0.txt")
    os.link(src / "lib" / "f1.txt", src / "lib" / "f1-hardlink.txt")
    return src


def test_kill_at_every_write(tmp_path: Path, cli) -> None:
    stratum0, keys = tmp_path / "stratum0", tmp_path / "keys"
    init_args = ("init", NAME, "--storage", stratum0, "--keys", keys)
    src = make_tree(tmp_path)
    publish_args = ("publish", src, "--repo", NAME, "--path", "/sw/app/1.0", "--no-progress")
    points = 0

    # init: count its writes, then kill before/after each one in a fresh storage
    assert driver(tmp_path, 0, "count", *init_args).returncode == 0
    init_writes = writes(tmp_path)
    assert init_writes >= 6
    for n in range(1, init_writes + 1):
        for mode in ("before", "after"):
            shutil.rmtree(stratum0)
            died = driver(tmp_path, n, mode, *init_args)
            assert died.returncode == -signal.SIGKILL, died.stderr
            revision, problems = state(stratum0)
            if revision is None:  # not created yet: a rerun must create it
                rerun = cli(*init_args)
                assert rerun.code == 0, rerun.err
                revision, problems = state(stratum0)
            assert (revision, problems) == (0, []), f"init {mode} write {n}"
            points += 1

    # publish: base is revision 0; each kill leaves 0 (or 1 if the manifest landed)
    base = tmp_path / "base"
    shutil.copytree(stratum0, base)
    assert driver(tmp_path, 0, "count", *publish_args).returncode == 0
    publish_writes = writes(tmp_path)
    assert publish_writes >= 20
    for n in range(1, publish_writes + 1):
        for mode in ("before", "after"):
            shutil.rmtree(stratum0)
            shutil.copytree(base, stratum0)
            died = driver(tmp_path, n, mode, *publish_args)
            assert died.returncode == -signal.SIGKILL, died.stderr
            last = n == publish_writes and mode == "after"
            assert state(stratum0) == (1 if last else 0, []), f"publish {mode} write {n}"
            rerun = cli(*publish_args)
            assert rerun.code == 0, rerun.err
            assert state(stratum0) == (2 if last else 1, []), f"rerun after {mode} write {n}"
            points += 1

    # resign: one write; the old or the new whitelist, never a broken one
    for mode in ("before", "after"):
        died = driver(tmp_path, 1, mode, "resign", "--repo", NAME)
        assert died.returncode == -signal.SIGKILL
        assert state(stratum0)[1] == []
        assert cli("resign", "--repo", NAME).code == 0
        assert state(stratum0)[1] == []
        points += 1
    assert points >= 50


def test_busy_against_stopped_holder(tmp_path: Path, cli) -> None:
    stratum0 = tmp_path / "stratum0"
    assert cli("init", NAME, "--storage", stratum0).code == 0
    src = make_tree(tmp_path)
    count_file = tmp_path / "writes"
    holder = subprocess.Popen(
        [sys.executable, str(DRIVER), str(count_file), "1", "stop", "--", "publish", src,
         "--repo", NAME, "--path", "/first", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_stopped(holder.pid)
        busy = cli("publish", src, "--repo", NAME, "--path", "/second")
        assert busy.code == 75
        assert "busy" in busy.err and f"pid {holder.pid}" in busy.err
        waiter = subprocess.Popen(
            [sys.executable, "-m", "cvmfs_publisher.cli", "publish", str(src), "--repo", NAME,
             "--path", "/second", "--wait", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(1.0)
        assert waiter.poll() is None, "the --wait publisher must wait for the lock"
        os.kill(holder.pid, signal.SIGCONT)
        assert holder.wait(60) == 0
        assert waiter.wait(60) == 0, waiter.stderr.read() if waiter.stderr else ""
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
    revision, problems = state(stratum0)
    assert (revision, problems) == (2, [])
    listing = cli("ls", "/", "--repo", NAME, "--json")
    assert {"first", "second"} <= {item["path"] for item in _json(listing.out)}


def test_killed_holder_releases_the_lock(tmp_path: Path, cli) -> None:
    stratum0 = tmp_path / "stratum0"
    assert cli("init", NAME, "--storage", stratum0).code == 0
    src = make_tree(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, str(DRIVER), str(tmp_path / "writes"), "1", "stop", "--", "publish",
         src, "--repo", NAME, "--path", "/first", "--no-progress"],
    )
    _wait_stopped(holder.pid)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(30)
    result = cli("publish", src, "--repo", NAME, "--path", "/second")
    assert result.code == 0, result.err
    assert state(stratum0) == (1, [])


def _wait_stopped(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1].startswith("T"):
                return
        time.sleep(0.05)
    pytest.fail("the lock holder never reached its first write")


def _json(text: str):  # type: ignore[no-untyped-def]
    import json

    return json.loads(text)
