#!/usr/bin/env python3
"""Drop-area latency: from the last write to the published revision, next to the quiet period.

    .venv/bin/python bench/watch.py [--quiet 3] [--rounds 5] [--files 10000] [--poll] [--keep DIR]

A real ``cvmfs-publisher watch`` process (inotify, or ``--poll``) on a folder, publishing to a
local native repository. This script writes like a user, and watches the repository's
manifest for the new revision:
  * a small change: one new file, ``--rounds`` times;
  * 10,000 small files dropped at once, written by a separate process.
Latency = new manifest seen - last file closed (CLOCK_MONOTONIC is shared by processes; the
manifest is polled every 2 ms). The floor is the configured quiet period plus the publish
itself (the watcher's own log line, 0.1 s resolution); "overhead" is what remains: event
delivery, the settle check, scheduling. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "bench.example.org"
PATH = "/drop"
LINE = re.compile(r"revision (\d+): \+(\d+) ~(\d+) -(\d+) files, .* in ([\d.]+) s")
WRITER = """\
import os, sys, time
top, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(top, f"d{i // 100:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.dat"), "w") as out:
        out.write(f"{i}\\n" * (i % 7 + 1))
print(time.monotonic())
"""


def cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvmfs_publisher.cli", *map(str, args)],
                          env=env, check=True, capture_output=True, text=True)


def manifest_revision(manifest: Path) -> int:
    for line in manifest.read_bytes().split(b"\n"):
        if line.startswith(b"S"):
            return int(line[1:])
        if line == b"--":
            break
    raise SystemExit(f"{manifest}: no revision line")


class Manifest:
    """The repository's ``.cvmfspublished``: a new revision replaces the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.revision = manifest_revision(path)

    def wait_next(self, timeout: float) -> tuple[int, float]:
        """(revision, monotonic time it was seen) of the next revision."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                revision = manifest_revision(self.path)
            except (OSError, ValueError):
                revision = self.revision  # replaced between open and read: look again
            if revision != self.revision:
                seen = time.monotonic()
                self.revision = revision
                return revision, seen
            time.sleep(0.002)
        raise SystemExit(f"no new revision within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", type=float, default=3.0, help="quiet period, seconds")
    parser.add_argument("--max-delay", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5, help="small changes to time")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--poll", action="store_true", help="the polling observer")
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-watch-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace) -> None:
    home = work / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache"), "XDG_STATE_HOME": str(home / "state"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1"}
    env.pop("CVMFS_PUBLISHER_CONFIG", None)
    cli(env, "init", NAME, "--storage", work / "stratum0")
    area = work / "area"
    area.mkdir()
    (area / "README").write_text("a drop area\n")
    command = [sys.executable, "-m", "cvmfs_publisher.cli", "watch", str(area), "--repo", NAME,
               "--path", PATH, "--quiet-period", f"{args.quiet}s",
               "--max-delay", f"{args.max_delay}s"]
    if args.poll:
        command += ["--poll", "--poll-interval", f"{args.poll_interval}s"]
    manifest = Manifest(work / "stratum0" / NAME / ".cvmfspublished")
    log = (work / "watch.log").open("w+")
    watcher = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        manifest.wait_next(60)  # the catch-up publish at start
        small = []
        for i in range(args.rounds):
            with open(area / f"note-{i}.txt", "w") as out:
                out.write(f"note {i}\n")
            written = time.monotonic()
            revision, seen = manifest.wait_next(60 + args.quiet)
            small.append((revision, seen - written))
        done = subprocess.run([sys.executable, "-c", WRITER, str(area / "bulk"),
                               str(args.files)], check=True, capture_output=True, text=True)
        written = float(done.stdout.strip())
        bulk = []  # revisions until the one that holds every file (max-delay may split it)
        while True:
            revision, seen = manifest.wait_next(300 + args.quiet)
            bulk.append((revision, seen - written))
            if published_files(work, env) >= args.files:
                break
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
        log.seek(0)
        lines = log.read()
        log.close()
    syncs = {int(m[1]): (int(m[2]) + int(m[3]) + int(m[4]), float(m[5]))
             for m in LINE.finditer(lines)}
    report(args, work, small, bulk, syncs)


def published_files(work: Path, env: dict[str, str]) -> int:
    listing = cli(env, "ls", "-R", "--json", f"{PATH}/bulk", "--repo", NAME).stdout \
        if (work / "area" / "bulk").exists() else "[]"
    return listing.count('"type": "file"')


def report(args: argparse.Namespace, work: Path, small: list[tuple[int, float]],
           bulk: list[tuple[int, float]], syncs: dict[int, tuple[int, float]]) -> None:
    mode = f"polling every {args.poll_interval} s" if args.poll else "inotify"
    print(f"configuration: {os.cpu_count()} cpus, {platform.python_implementation()} "
          f"{platform.python_version()}, {mode}, quiet period {args.quiet} s, max delay "
          f"{args.max_delay} s, local native repository in {work}")
    print(f"{'change':<22} {'latency':>9} {'quiet period':>13} {'beyond quiet':>13} "
          f"{'sync (log)':>11} {'revisions':>10}")
    latencies = [latency for _, latency in small]
    median = statistics.median(latencies)
    sync = statistics.median(syncs.get(revision, (0, 0.0))[1] for revision, _ in small)
    print(f"{'one small file':<22} {median:>8.2f}s {args.quiet:>12.2f}s "
          f"{median - args.quiet:>12.2f}s {sync:>10.1f}s {len(small):>10}  (median of "
          f"{len(small)} rounds, {min(latencies):.2f}-{max(latencies):.2f} s)")
    latency = bulk[-1][1]
    sync = sum(syncs.get(revision, (0, 0.0))[1] for revision, _ in bulk)
    print(f"{f'{args.files:,} files at once':<22} {latency:>8.2f}s {args.quiet:>12.2f}s "
          f"{latency - args.quiet:>12.2f}s {sync:>10.1f}s {len(bulk):>10}")
    print("latency: last file closed -> new manifest seen. beyond quiet: latency - quiet "
          "period = event delivery + scan + publish. sync (log): the watcher's own time for "
          "the sync, scan to index saved (it ends after the manifest: the index re-reads "
          "what it published).")


if __name__ == "__main__":
    main()
