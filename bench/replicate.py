#!/usr/bin/env python3
"""Replication throughput over loopback HTTP next to the raw download rate of the same objects.

A repository of 10,000 small files (1-64 KiB, real files from /usr, as bench/publish.py
picks them) is served by ``cvmfs-publisher serve`` in its own process. Measured in one run:

  * full snapshot into an empty directory (every object downloaded, hash-checked, written);
  * raw download: plain GETs of exactly the objects the full snapshot copied, same number of
    threads, bodies read and dropped (no hashing, no writing): the limit of the transport;
  * incremental snapshot after a publish that changes 1 % of the files, next to the raw
    download of exactly the objects it copied.

Prints objects/s and MB/s (stored bytes). Not a test.

Usage: python bench/replicate.py [--files N] [--changed N] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from publish import make_small  # bench/publish.py: 1-64 KiB real files from /usr

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.replication import load_master_keys, open_replica, open_source, snapshot
from cvmfs_publisher.sources import open_source as open_tree
from cvmfs_publisher.storage.local import LocalStorage

FQRN = "bench.example.org"


def data_keys(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "data").rglob("*")
            if p.is_file() and p.parent.name != "txn"}


def serve(directory: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``cvmfs-publisher serve`` on a free loopback port, in its own process."""
    err = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "cvmfs_publisher.cli", "serve", "--repo", str(directory),
         "--fqrn", FQRN, "--port", "0"], stderr=err, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"at (http://\S+/cvmfs/\S+?)/?$", log.read_text(), re.M)
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise SystemExit(f"serve exited: {log.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise SystemExit("serve did not start")


def raw_download(url: str, keys: list[str], workers: int) -> tuple[float, int]:
    """Seconds and bytes to GET every key in ``workers`` threads, bodies dropped."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=workers))

    def get(key: str) -> int:
        response = session.get(f"{url}/{key}", timeout=60)
        response.raise_for_status()
        return len(response.content)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(get, keys))
    return time.perf_counter() - start, total


def publish(repo: NativeRepository, src: Path, path: str) -> None:
    entries, _ = open_tree(src)
    with repo.transaction() as txn:
        txn.replace(path, entries)
        txn.commit()


def change_files(tree: Path, count: int) -> None:
    rng = random.Random(1)
    for path in rng.sample(sorted(p for p in tree.rglob("*") if p.is_file()), count):
        path.write_bytes(path.read_bytes() + os.urandom(64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-replicate-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace) -> None:
    tree = work / "tree"
    size = make_small(tree, args.files)
    stratum0 = work / "stratum0" / FQRN
    repo = NativeRepository(LocalStorage(stratum0), FQRN, keys_dir=work / "keys",
                            options=EngineOptions(cache_dir=work / "cache"))
    repo.create()
    publish(repo, tree, "/sw")
    print(f"configuration: {os.cpu_count()} cpus, {platform.python_implementation()} "
          f"{platform.python_version()}, {args.workers} download threads, source served by "
          f"'cvmfs-publisher serve' (own process) on loopback, replica in a local directory "
          f"({work})")
    print(f"repository: {args.files} files ({size / 2**20:.1f} MiB) from /usr, "
          f"{len(data_keys(stratum0))} objects stored")

    process, url = serve(stratum0, work / "serve.log")
    try:
        keys = load_master_keys([work / "keys" / f"{FQRN}.pub"])
        source = open_source(url)
        replica = open_replica(str(work / "stratum1"), FQRN)
        rows = []

        full = snapshot(source, replica, FQRN, keys, workers=args.workers)
        copied = sorted(data_keys(work / "stratum1" / FQRN))
        raw_s, raw_bytes = raw_download(url, copied, args.workers)
        rows.append(("full", full.objects_copied, full.bytes_copied, full.seconds,
                     len(copied), raw_bytes, raw_s))

        before = set(copied)
        change_files(tree, args.changed)
        publish(repo, tree, "/sw")
        incremental = snapshot(source, replica, FQRN, keys, workers=args.workers)
        new = sorted(data_keys(work / "stratum1" / FQRN) - before)
        raw_s, raw_bytes = raw_download(url, new, args.workers)
        rows.append((f"incremental ({args.changed} files changed)",
                     incremental.objects_copied, incremental.bytes_copied,
                     incremental.seconds, len(new), raw_bytes, raw_s))
        if replica.exists(".cvmfs_is_snapshotting"):
            raise SystemExit("snapshot left .cvmfs_is_snapshotting behind")
    finally:
        process.terminate()
        process.wait(10)

    print(f"{'snapshot':<32} {'objects':>8} {'MB':>8} {'s':>7} {'obj/s':>8} {'MB/s':>7} "
          f"{'raw obj/s':>10} {'raw MB/s':>9} {'ratio':>6}")
    for name, objects, nbytes, seconds, raw_objects, raw_bytes, raw_seconds in rows:
        rate, raw_rate = objects / seconds, raw_objects / raw_seconds
        print(f"{name:<32} {objects:>8} {nbytes / 1e6:>8.1f} {seconds:>7.2f} {rate:>8.0f} "
              f"{nbytes / 1e6 / seconds:>7.1f} {raw_rate:>10.0f} "
              f"{raw_bytes / 1e6 / raw_seconds:>9.1f} {rate / raw_rate:>6.0%}")
    print("(snapshot: verify the head, walk catalogs, download + hash-check + write each new "
          "object, catalogs, head files, manifest last; raw: GET of the same objects, body "
          "dropped; MB = stored (compressed) bytes)")


if __name__ == "__main__":
    main()
