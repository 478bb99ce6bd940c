#!/usr/bin/env python3
"""Publish throughput per compression preset, next to the limit measured in the same run.

Two workloads of real data from this machine:
  * 10,000 small files of 1-64 KiB copied from /usr (files/s);
  * one 512 MiB file concatenated from real binaries (MB/s).
For each preset (``zlib`` at level 6 = upstream's bytes, ``balanced``, ``fast``) the limit
is the same compressor plus SHA-1 over the same bytes in os.cpu_count() threads, in 1 MiB
pieces (small files: one piece each), with no repository work at all; for small files also
the limit that writes and renames one object file per file, as any store must. Then the
small-file directory is published again unchanged, and with one file added (the stat
shortcut: unchanged files are not read).

Usage: python bench/publish.py [--small N] [--large-mib M] [--presets zlib,balanced,fast]
                               [--rounds R] [--keep DIR]
On a disk whose write rate changes after deletes (this machine's does, up to 10x), the
shares swing between runs: ``--keep /dev/shm/bench-publish --rounds 3`` measures on
tmpfs, where what is left is CPU work, ours and the limit's alike.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cputime import own_and_children

from cvmfs_publisher.cvmfs.compression import PRESETS, deflater
from cvmfs_publisher.engine.chunking import ChunkPolicy
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.publisher import CommitResult
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.local import LocalStorage

SOURCES = ("/usr/lib", "/usr/bin", "/usr/libexec", "/usr/share")
PIECE = 1 << 20
Deflate = Callable[[bytes], bytes]


def real_files(minimum: int, maximum: int) -> Iterator[Path]:
    for root in SOURCES:
        for dirpath, _dirs, names in os.walk(root):
            for name in sorted(names):
                path = Path(dirpath) / name
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    if minimum <= path.stat().st_size <= maximum and os.access(path, os.R_OK):
                        yield path
                except OSError:
                    continue


def make_small(target: Path, count: int) -> int:
    rng = random.Random(42)
    candidates = list(real_files(1024, 64 * 1024))
    if len(candidates) < count:
        raise SystemExit(f"only {len(candidates)} real files of 1-64 KiB under {SOURCES}")
    total = 0
    for i, path in enumerate(rng.sample(candidates, count)):
        sub = target / f"d{i // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, sub / f"{i:05d}-{path.name}")
        total += path.stat().st_size
    return total


def make_large(target: Path, size: int) -> None:
    """Distinct real binaries, no file twice, so no chunk repeats and dedup cannot cheat."""
    written = 0
    with open(target, "wb") as out:
        for path in real_files(256 * 1024, 1 << 40):
            data = path.read_bytes()[: size - written]
            out.write(data)
            written += len(data)
            if written >= size:
                return
    raise SystemExit(f"only {written} bytes of real binaries found")


def limit(pieces: list[bytes], deflate: Deflate, workers: int) -> tuple[float, int]:
    """Seconds to compress and hash all pieces in ``workers`` threads, and stored bytes."""
    def work(piece: bytes) -> int:
        stored = deflate(piece)
        hashlib.sha1(stored).digest()
        return len(stored)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        stored = sum(pool.map(work, pieces))
    return time.perf_counter() - start, stored


_FORKED: tuple[list[bytes], Deflate, Path] | None = None  # what forked limit workers use


def _write_object(index: int, piece: bytes, deflate: Deflate, target: Path) -> None:
    stored = deflate(piece)
    name = hashlib.sha1(stored).hexdigest()
    tmp = target / f"{index}.{os.getpid()}.tmp"
    tmp.write_bytes(stored)
    os.replace(tmp, target / name)


def _write_range(bounds: tuple[int, int]) -> None:
    assert _FORKED is not None
    pieces, deflate, target = _FORKED
    for index in range(*bounds):
        _write_object(index, pieces[index], deflate, target)


def limit_with_files(pieces: list[bytes], deflate: Deflate, workers: int,
                     target: Path) -> tuple[float, float]:
    """The same, plus what any store must do per object: a file, written and renamed.

    Seconds with ``workers`` threads, and with ``workers`` forked processes (each writing
    a share of the pieces), in fresh directories after a sync: the limit is the better one.
    """
    global _FORKED
    for name in ("threads", "processes"):
        (target / name).mkdir(parents=True)
    os.sync()
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda item: _write_object(*item, deflate, target / "threads"),
                      enumerate(pieces)))
    threads = time.perf_counter() - start
    _FORKED = (pieces, deflate, target / "processes")
    step = -(-len(pieces) // (workers * 8))
    os.sync()
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_write_range, [(i, min(i + step, len(pieces)))
                                for i in range(0, len(pieces), step)])
    processes = time.perf_counter() - start
    _FORKED = None
    return threads, processes


def file_pieces(paths: list[Path]) -> list[bytes]:
    pieces = []
    for path in paths:
        data = path.read_bytes()
        pieces.extend(data[i : i + PIECE] for i in range(0, max(len(data), 1), PIECE))
    return pieces


def publish(repo: NativeRepository, src: Path, path: str) -> tuple[float, CommitResult]:
    start = time.perf_counter()
    entries, _ = open_source(src)  # scans the directory: timed
    with repo.transaction() as txn:
        txn.replace(path, entries)
        result = txn.commit()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every measurement, each in a fresh repository; the "
                        "best of each counts (this machine's speed varies between runs)")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-publish-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args, workers)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace, workers: int) -> None:
    small, large = work / "small", work / "large" / "blob.bin"
    large.parent.mkdir(parents=True, exist_ok=True)
    if not small.is_dir():
        make_small(small, args.small)
    if not large.is_file() or large.stat().st_size != args.large_mib << 20:
        make_large(large, args.large_mib << 20)
    for old in [p for p in work.iterdir() if p.name not in ("small", "large")]:
        shutil.rmtree(old)  # of an earlier run with --keep
    os.sync()
    time.sleep(2)  # the data is older than the stat shortcut's racy window
    small_paths = sorted(p for p in small.rglob("*") if p.is_file())
    small_bytes = sum(p.stat().st_size for p in small_paths)
    policy = ChunkPolicy()
    print(f"configuration: {workers} cpus, {platform.python_implementation()} "
          f"{platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, "
          f"chunks {policy.min_size >> 20}/{policy.avg_size >> 20}/{policy.max_size >> 20} MiB, "
          f"local storage in {work}, load before: {os.getloadavg()[0]:.2f}")
    print(f"data: {len(small_paths)} small files from {', '.join(SOURCES)} "
          f"({small_bytes / 2**20:.1f} MiB, 1-64 KiB each); one {args.large_mib} MiB file of "
          "concatenated distinct binaries from the same trees")
    small_pieces, large_pieces = file_pieces(small_paths), file_pieces([large])
    n, mb = len(small_paths), (args.large_mib << 20) / 1e6
    rows = []
    for preset in args.presets.split(","):
        rounds = [measure(work / f"{preset}-{i}", small, large, small_pieces, large_pieces,
                          preset, workers) for i in range(args.rounds)]
        best = {key: min(r[key] for r in rounds) for key in rounds[0]}  # seconds: less is better
        rows.append({"preset": preset, "small": n / best["ours_small"],
                     "small_limit": n / best["t_small"],
                     "small_files_limit": n / min(best["t_threads"], best["t_processes"]),
                     "small_files_threads": n / best["t_threads"],
                     "small_files_processes": n / best["t_processes"],
                     "large": mb / best["ours_large"], "large_limit": mb / best["t_large"],
                     "small_ratio": rounds[0]["small_stored"] / small_bytes,
                     "large_ratio": rounds[0]["large_stored"] / (args.large_mib << 20),
                     "unchanged": best["unchanged"], "one_new": best["one_new"],
                     "first": best["ours_small"], **cpu_per_file(rounds, n, workers)})
    report(rows, workers)


def measure(work: Path, small: Path, large: Path, small_pieces: list[bytes],
            large_pieces: list[bytes], preset: str, workers: int) -> dict[str, float]:
    """One round for one preset: the limits, then the publishes into a fresh repository."""
    deflate = deflater(preset)
    t_small, small_stored = limit(small_pieces, deflate, workers)
    t_threads, t_processes = limit_with_files(small_pieces, deflate, workers,
                                              work / "limit-objects")
    t_large, large_stored = limit(large_pieces, deflate, workers)
    options = EngineOptions(cache_dir=work / "cache", compression=preset)
    repo = NativeRepository(LocalStorage(work / "repo"), "bench.example.org",
                            keys_dir=work / "keys", options=options)
    repo.create()
    os.sync()
    before = own_and_children()
    ours_small, _ = publish(repo, small, "/small")
    main_cpu, workers_cpu = (b - a for a, b in zip(before, own_and_children(), strict=True))
    ours_large, _ = publish(repo, large, "/large/blob.bin")
    unchanged, _ = publish(repo, small, "/small")
    extra = small / "d000" / "zz-new-file"
    extra.write_bytes(os.urandom(4096))
    one_new, _ = publish(repo, small, "/small")
    extra.unlink()
    problems = repo.verify(check_data=False).problems
    if problems:
        raise SystemExit(f"published repository does not verify: {problems[:3]}")
    return {"t_small": t_small, "small_stored": small_stored, "t_threads": t_threads,
            "t_processes": t_processes, "t_large": t_large, "large_stored": large_stored,
            "ours_small": ours_small, "ours_large": ours_large, "unchanged": unchanged,
            "one_new": one_new, "main_cpu": main_cpu, "workers_cpu": workers_cpu}


def cpu_per_file(rounds: list[dict[str, float]], files: int, workers: int) -> dict[str, float]:
    """CPU microseconds per small file in the fastest round: ours, its workers', the limit's."""
    fastest = min(rounds, key=lambda r: r["ours_small"])
    limit_s = workers * min(fastest["t_threads"], fastest["t_processes"])
    return {"main_us": fastest["main_cpu"] / files * 1e6,
            "workers_us": fastest["workers_cpu"] / files * 1e6,
            "limit_us": limit_s / files * 1e6}


def report(rows: list[dict], workers: int) -> None:
    base = next((r for r in rows if r["preset"] == "zlib"), rows[0])
    print(f"\n{'preset':<9} {'workload':<12} {'unit':<8} {'publish':>9} {'limit':>9} "
          f"{'of limit':>8} {'vs zlib-6':>9} {'limit vs zlib-6':>15} {'size':>6} "
          f"{'vs zlib-6':>9}")
    for r in rows:
        for name, unit, key, ratio in (("small files", "files/s", "small", "small_ratio"),
                                       ("large file", "MB/s", "large", "large_ratio")):
            print(f"{r['preset']:<9} {name:<12} {unit:<8} {r[key]:>9.1f} "
                  f"{r[key + '_limit']:>9.1f} {r[key] / r[key + '_limit']:>8.0%} "
                  f"{r[key] / base[key]:>8.2f}x {r[key + '_limit'] / base[key + '_limit']:>14.2f}x"
                  f" {r[ratio]:>6.3f} {r[ratio] / base[ratio]:>8.3f}x")
    print(f"(publish = whole transaction incl. catalogs, history and manifest; limit = the "
          f"preset's compressor + SHA-1 in {workers} threads, 1 MiB pieces; size = stored / "
          "raw bytes in the limit run)")
    print(f"\n{'preset':<9} {'small files: limit incl. object files':>38} {'publish of it':>14}"
          f" {'re-publish unchanged':>21} {'one file added':>15}")
    for r in rows:
        share = r["small"] / r["small_files_limit"]
        print(f"{r['preset']:<9} {r['small_files_limit']:>30.1f} files/s {share:>14.0%}"
              f" {r['unchanged']:>13.2f} s ({r['unchanged'] / r['first']:>3.0%})"
              f" {r['one_new']:>13.2f} s")
        print(f"{'':<9} (threads {r['small_files_threads']:.0f} files/s, processes "
              f"{r['small_files_processes']:.0f} files/s)")
    print("(goals: publish >= 80 % of the limit incl. object files, the better of threads and "
          "processes; one file added <= 0.66 s. Nothing is deleted until the end: deleting "
          "thousands of files slows this file system for a while.)")
    print(f"\n{'preset':<9} {'CPU us per small file: publishing process':>41} {'workers':>8}"
          f" {'limit':>6} {'left for the publishing process at 80 %':>40}")
    for r in rows:
        left = r["limit_us"] / 0.8 - r["workers_us"]
        print(f"{r['preset']:<9} {r['main_us']:>41.0f} {r['workers_us']:>8.0f}"
              f" {r['limit_us']:>6.0f} {left:>40.0f}")
    print(f"(first publish of the small files, its fastest round. On {workers} cores "
          "a publish at 80 % of the limit has 1 / 0.8 of the limit's CPU time per file: what "
          "the workers do not use of it is all the publishing process may spend)")


if __name__ == "__main__":
    main()
