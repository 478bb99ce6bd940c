"""Kill at every storage write of init, publish and resign; stop a lock holder.

After every kill the previous revision (or the new one, if the manifest made it) must pass
the full verify, and a rerun must succeed. This is the transaction guarantee users rely on.

The kills are injected by ``FaultInjectingStorage``, which the storage factory's hook wraps
around every storage the CLI opens (``crash_driver.install``). Most points run the CLI in a
forked child of this process that dies with ``os._exit`` at the chosen write, so no
interpreter starts per point; a sample of points runs ``crash_driver.py`` as a real
subprocess killed by a real SIGKILL. Both die without unwinding: no ``finally``, no
``atexit``, the kernel closes the files and drops the flock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from crash_driver import KILLED, fault, install

from cvmfs_publisher.cli import main
from cvmfs_publisher.config import Config
from cvmfs_publisher.repositories import open_native
from cvmfs_publisher.storage import wrapped_by
from cvmfs_publisher.storage.wrappers import FaultInjectingStorage, WriteEvent, WriteSequence

DRIVER = Path(__file__).with_name("crash_driver.py")
NAME = "crash.example.org"
Args = Sequence[str | Path]


def count_writes(cli, *args: str | Path) -> int:  # type: ignore[no-untyped-def]
    """Run the CLI in this process with its storage writes counted."""
    sequence = WriteSequence()
    with wrapped_by(lambda s: FaultInjectingStorage(s, lambda _e: None, sequence=sequence)):
        result = cli(*args)
    assert result.code == 0, result.err
    assert sequence.count > 0, ("no storage writes seen: the CLI must open its storage "
                                "through cvmfs_publisher.storage.open_storage")
    return sequence.count


def fork_cli(args: Args, on_write: Callable[[WriteEvent], None], log: Path) -> int:
    """Start the CLI in a forked child whose storages call ``on_write``; the child's pid."""
    pid = os.fork()
    if pid == 0:  # the child: it must never return into pytest
        code = 70
        try:
            with open(log, "w") as err, open(os.devnull, "w") as out:
                sys.stdout, sys.stderr = out, err
                # a killed child leaves its scratch directory: in the test's, not in /tmp
                tempfile.tempdir = str(log.parent)
                try:
                    install(on_write)
                    code = main([str(a) for a in args])
                except BaseException:
                    traceback.print_exc(file=err)
        finally:
            os._exit(code)
    return pid


def die_in_fork(tmp: Path, target: int, mode: str, args: Args) -> None:
    log = tmp / "child.log"
    pid = fork_cli(args, fault(target, mode, lambda: os._exit(KILLED)), log)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code == KILLED, f"{mode} write {target}: exit {code}\n{log.read_text()}"


def die_in_subprocess(target: int, mode: str, args: Args) -> None:
    died = subprocess.run([sys.executable, str(DRIVER), str(target), mode, "--", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert died.returncode == -signal.SIGKILL, died.stderr


def die(tmp: Path, target: int, mode: str, args: Args, sigkill: set[tuple[int, str]]) -> None:
    if (target, mode) in sigkill:
        die_in_subprocess(target, mode, args)
    else:
        die_in_fork(tmp, target, mode, args)


def state(storage_root: Path) -> tuple[int | None, list[str]]:
    """(revision, verify problems) of the repository as configured."""
    if not (storage_root / NAME / ".cvmfspublished").exists():
        return None, []
    report = open_native(Config.load().get(NAME)).verify()
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
    points, killed = 0, 0

    # init: count its writes, then kill before/after each one in a fresh storage
    init_writes = count_writes(cli, *init_args)
    assert init_writes >= 6
    shutil.rmtree(stratum0)
    sigkill = {(1, "after"), (init_writes, "before")}
    for n in range(1, init_writes + 1):
        for mode in ("before", "after"):
            shutil.rmtree(stratum0, ignore_errors=True)
            die(tmp_path, n, mode, init_args, sigkill)
            revision, problems = state(stratum0)
            if revision is None:  # not created yet: a rerun must create it
                rerun = cli(*init_args)
                assert rerun.code == 0, rerun.err
                revision, problems = state(stratum0)
            assert (revision, problems) == (0, []), f"init {mode} write {n}"
            points += 1
    killed += len(sigkill)

    # publish: base is revision 0; each kill leaves 0 (or 1 if the manifest landed)
    base = tmp_path / "base"
    shutil.copytree(stratum0, base)
    publish_writes = count_writes(cli, *publish_args)
    assert publish_writes >= 20
    sigkill = {(1, "before"), (publish_writes // 2, "after"), (publish_writes, "before"),
               (publish_writes, "after")}
    for n in range(1, publish_writes + 1):
        for mode in ("before", "after"):
            shutil.rmtree(stratum0)
            shutil.copytree(base, stratum0)
            die(tmp_path, n, mode, publish_args, sigkill)
            last = n == publish_writes and mode == "after"
            assert state(stratum0) == (1 if last else 0, []), f"publish {mode} write {n}"
            rerun = cli(*publish_args)
            assert rerun.code == 0, rerun.err
            assert state(stratum0) == (2 if last else 1, []), f"rerun after {mode} write {n}"
            points += 1
    killed += len(sigkill)

    # resign: one write; the old or the new whitelist, never a broken one
    resign_args = ("resign", "--repo", NAME)
    assert count_writes(cli, *resign_args) == 1
    sigkill = {(1, "after")}
    for mode in ("before", "after"):
        die(tmp_path, 1, mode, resign_args, sigkill)
        assert state(stratum0)[1] == []
        assert cli(*resign_args).code == 0
        assert state(stratum0)[1] == []
        points += 1
    killed += len(sigkill)
    assert points >= 50 and killed == 7


def stopped_holder(args: Args, log: Path) -> int:
    """A forked publisher that stops itself at its first write, holding the lock."""
    pid = fork_cli(args, fault(1, "stop", lambda: None), log)
    _, status = os.waitpid(pid, os.WUNTRACED)  # returns once it stopped (or died)
    assert os.WIFSTOPPED(status), (f"the holder never stopped at a storage write (wait "
                                   f"status {status})\n{log.read_text()}")
    return pid


def waiting_on_flock(pid: int) -> bool:
    """Whether ``pid`` is blocked in flock: /proc/locks lists its request after "->"."""
    with open("/proc/locks") as locks:
        return any(line.split()[1:3] == ["->", "FLOCK"] and line.split()[5] == str(pid)
                   for line in locks)


def test_busy_against_stopped_holder(tmp_path: Path, cli) -> None:
    stratum0 = tmp_path / "stratum0"
    assert cli("init", NAME, "--storage", stratum0).code == 0
    src = make_tree(tmp_path)
    holder = stopped_holder(("publish", src, "--repo", NAME, "--path", "/first",
                             "--no-progress"), tmp_path / "holder.log")
    waiter = subprocess.Popen(
        [sys.executable, "-m", "cvmfs_publisher.cli", "publish", str(src), "--repo", NAME,
         "--path", "/second", "--wait", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    reaped = False
    try:
        busy = cli("publish", src, "--repo", NAME, "--path", "/second")
        assert busy.code == 75
        assert "busy" in busy.err and f"pid {holder}" in busy.err
        deadline = time.monotonic() + 60
        while not waiting_on_flock(waiter.pid):
            assert waiter.poll() is None, f"the --wait publisher did not wait: {waiter.stderr}"
            assert time.monotonic() < deadline, "the --wait publisher never asked for the lock"
            time.sleep(0.02)
        os.kill(holder, signal.SIGCONT)
        status, reaped = os.waitpid(holder, 0)[1], True
        assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "holder.log").read_text()
        assert waiter.wait(60) == 0, waiter.stderr.read() if waiter.stderr else ""
    finally:
        if waiter.poll() is None:
            waiter.kill()
        if not reaped:
            os.kill(holder, signal.SIGKILL)
            os.waitpid(holder, 0)
    revision, problems = state(stratum0)
    assert (revision, problems) == (2, [])
    listing = cli("ls", "/", "--repo", NAME, "--json")
    assert {"first", "second"} <= {item["path"] for item in json.loads(listing.out)}


def test_killed_holder_releases_the_lock(tmp_path: Path, cli) -> None:
    """A real subprocess, stopped at its first write with the lock held, then SIGKILLed."""
    stratum0 = tmp_path / "stratum0"
    assert cli("init", NAME, "--storage", stratum0).code == 0
    src = make_tree(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, str(DRIVER), "1", "stop", "--", "publish", src, "--repo", NAME,
         "--path", "/first", "--no-progress"],
    )
    _, status = os.waitpid(holder.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the holder never stopped at a storage write ({status})"
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(30) == -signal.SIGKILL
    result = cli("publish", src, "--repo", NAME, "--path", "/second")
    assert result.code == 0, result.err
    assert state(stratum0) == (1, [])

