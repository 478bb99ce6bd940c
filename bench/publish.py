#!/usr/bin/env python3
"""Publish throughput next to the physical limit measured on the same bytes in the same run.

Two workloads of real data from this machine:
  * 10,000 small files of 1-64 KiB copied from /usr (files/s);
  * one 512 MiB file concatenated from real binaries (MB/s).
The limit is zlib at the same level plus SHA-1 over the same bytes in os.cpu_count()
threads, in 1 MiB pieces (small files: one piece each), with no repository work at all.

Usage: python bench/publish.py [--small N] [--large-mib M] [--level L] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvmfs_publisher.engine.chunking import ChunkPolicy
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.local import LocalStorage

SOURCES = ("/usr/lib", "/usr/bin", "/usr/libexec", "/usr/share")
PIECE = 1 << 20


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


def limit(pieces: list[bytes], level: int, workers: int) -> float:
    """Seconds to compress and hash all pieces in ``workers`` threads, nothing else."""
    def work(piece: bytes) -> None:
        hashlib.sha1(zlib.compress(piece, level)).digest()

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, pieces))
    return time.perf_counter() - start


def limit_with_files(pieces: list[bytes], level: int, workers: int, target: Path) -> float:
    """The same, plus what any store must do per object: a file, written and renamed."""
    target.mkdir(parents=True, exist_ok=True)

    def work(item: tuple[int, bytes]) -> None:
        index, piece = item
        stored = zlib.compress(piece, level)
        name = hashlib.sha1(stored).hexdigest()
        tmp = target / f"{index}.tmp"
        tmp.write_bytes(stored)
        os.replace(tmp, target / name)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, enumerate(pieces)))
    return time.perf_counter() - start


def file_pieces(paths: list[Path]) -> list[bytes]:
    pieces = []
    for path in paths:
        data = path.read_bytes()
        pieces.extend(data[i : i + PIECE] for i in range(0, max(len(data), 1), PIECE))
    return pieces


def publish(repo: NativeRepository, src: Path, path: str) -> float:
    entries, _ = open_source(src)
    start = time.perf_counter()
    with repo.transaction() as txn:
        txn.replace(path, entries)
        txn.commit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--level", type=int, default=6)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
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
    small_bytes = make_small(small, args.small)
    make_large(large, args.large_mib << 20)
    small_paths = sorted(p for p in small.rglob("*") if p.is_file())
    policy = ChunkPolicy()
    print(f"configuration: {workers} cpus, {platform.python_implementation()} "
          f"{platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, level {args.level}, "
          f"chunks {policy.min_size >> 20}/{policy.avg_size >> 20}/{policy.max_size >> 20} MiB, "
          f"local storage in {work}")
    print(f"data: {len(small_paths)} small files from {', '.join(SOURCES)} "
          f"({small_bytes / 2**20:.1f} MiB, 1-64 KiB each); one {args.large_mib} MiB file of "
          "concatenated distinct binaries from the same trees")

    # limits first, on the same (now page-cached) bytes
    small_limit = limit(file_pieces(small_paths), args.level, workers)
    small_files_limit = limit_with_files(file_pieces(small_paths), args.level, workers,
                                         work / "limit-objects")
    large_limit = limit(file_pieces([large]), args.level, workers)

    options = EngineOptions(cache_dir=work / "cache", compression_level=args.level)
    repo = NativeRepository(LocalStorage(work / "repo"), "bench.example.org",
                            keys_dir=work / "keys", options=options)
    repo.create()
    small_ours = publish(repo, small, "/small")
    large_ours = publish(repo, large, "/large/blob.bin")
    problems = repo.verify(check_data=False).problems
    if problems:
        raise SystemExit(f"published repository does not verify: {problems[:3]}")

    n, mb = len(small_paths), (args.large_mib << 20) / 1e6
    rows = [
        ("small files", "files/s", n / small_ours, n / small_limit),
        ("large file", "MB/s", mb / large_ours, mb / large_limit),
    ]
    print(f"{'workload':<12} {'unit':<8} {'publish':>10} {'limit':>10} {'ratio':>7}")
    for name, unit, ours, best in rows:
        print(f"{name:<12} {unit:<8} {ours:>10.1f} {best:>10.1f} {ours / best:>6.0%}")
    print(f"(publish = whole transaction incl. catalogs, history and manifest; limit = "
          f"zlib level {args.level} + SHA-1 in {workers} threads, 1 MiB pieces)")
    print(f"small files, limit including one object file written and renamed per file: "
          f"{n / small_files_limit:.1f} files/s (publish reaches "
          f"{small_files_limit / small_ours:.0%} of it)")


if __name__ == "__main__":
    main()
