#!/usr/bin/env python3
"""Does the cost of a publish follow the change, not the repository?

In one run, for each compression preset (each in its own repository):
  1. a full publish of 100,000 small files (files/s, peak memory), next to the limit: the
     preset's compressor + SHA-1 over the same files in os.cpu_count() threads;
  2. the whole tree published again unchanged (goal <= 10 % of 1.): each release's files
     have the lstat they had when its catalog was written, so it is not even staged;
  3. the whole tree published again with one file changed;
  4. a publish that changes one file of that repository by its path (seconds, ratio to 1.);
  5. the same in a 10,000-file repository (goal for 3.: <= 0.66 s, upstream's time).
Layout: the common software layout, /sw/pkgNNN/1.0 with 1,000 files per release (10
directories of 100), so every release is a nested catalog. Each step runs in its own
process, so peak memory (max RSS) is per step. The one-file publish is timed inside the
process (engine work) and as a whole CLI invocation (what a user waits for).

Usage: python bench/scale.py [--files 100000] [--small 10000] [--presets zlib,fast] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_RELEASE = 1000
NAME = "scale.example.org"


def make_tree(root: Path, files: int) -> None:
    rng = random.Random(files)
    words = [f"word{i}" for i in range(500)]
    for n in range(files):
        release, rest = divmod(n, PER_RELEASE)
        directory = root / f"pkg{release:03d}" / "1.0" / f"d{rest // 100}"
        if rest % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        size = rng.randint(100, 2000)
        text = " ".join(rng.choice(words) for _ in range(size // 6))[:size]
        (directory / f"f{rest % 100:02d}.txt").write_text(text)


def step(args: list[str], env: dict[str, str]) -> dict:
    """Run one measured step in a fresh interpreter; it prints one JSON line."""
    out = subprocess.run([sys.executable, __file__, "--step", *args], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_step(kind: str, work: Path, src: str, path: str) -> None:
    if kind == "limit":  # in its own process: reading every file must not inflate the
        seconds = limit(Path(src), path)  # peak RSS of later steps (exec keeps the maximum)
        print(json.dumps({"seconds": seconds}))
        return
    from cvmfs_publisher.engine.options import EngineOptions
    from cvmfs_publisher.engine.repository import NativeRepository
    from cvmfs_publisher.sources import open_source
    from cvmfs_publisher.storage.local import LocalStorage

    options = EngineOptions(cache_dir=work / "cache", compression=os.environ["BENCH_PRESET"])
    repo = NativeRepository(LocalStorage(work / "repo"), NAME, keys_dir=work / "keys",
                            options=options)
    if kind == "init":
        repo.create()
    os.sync()
    start = time.perf_counter()
    entries, _ = open_source(Path(src))  # scans the directory: timed
    with repo.transaction() as txn:
        txn.replace(path, entries)
        result = txn.commit()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "files": result.files,
                      "catalogs": result.catalogs_written, "stored": result.bytes_written,
                      "bytes": result.bytes_in}))


def limit(src: Path, preset: str) -> float:
    """Seconds for the preset's compressor + SHA-1 over every file, nothing stored."""
    from cvmfs_publisher.cvmfs.compression import deflater

    deflate = deflater(preset)
    data = [p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()]
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda piece: hashlib.sha1(deflate(piece)).digest(), data))
    return time.perf_counter() - start


def cli_seconds(work: Path, change: Path, path: str, env: dict[str, str]) -> float:
    config = work / "config.yaml"
    config.write_text(f"repositories:\n  {NAME}:\n    storage: {work}\n    keys: {work / 'keys'}\n"
                      f"    compression: {env['BENCH_PRESET']}\n")
    (work / NAME).unlink(missing_ok=True)
    (work / NAME).symlink_to(work / "repo")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvmfs_publisher.cli", "--config", str(config),
                    "publish", str(change), "--repo", NAME, "--path", path, "--no-progress"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(base: Path, files: int, presets: list[str], env: dict[str, str]) -> list[dict]:
    src = base / f"src{files}"
    make_tree(src, files)
    time.sleep(2)  # older than the stat shortcut's racy window (engine/content_index.py)
    rel = f"pkg{(files // PER_RELEASE) // 2:03d}/1.0/d3/f57.txt"
    results = []
    for preset in presets:
        work = base / f"r{files}-{preset}"
        work.mkdir(parents=True)
        env = {**env, "BENCH_PRESET": preset}
        seconds = step(["limit", str(work), str(src), preset], env)["seconds"]
        full = step(["init", str(work), str(src), "/sw"], env)
        again = step(["publish", str(work), str(src), "/sw"], env)
        edited = src / rel
        original = edited.read_bytes()
        edited.write_bytes(b"one changed file\n")
        changed = step(["publish", str(work), str(src), "/sw"], env)
        edited.write_bytes(original)
        change = work / "change.txt"
        change.write_text("a changed file\n")
        one = step(["publish", str(work), str(change), f"/sw/{rel}"], env)
        change.write_text("changed again\n")
        one["cli_seconds"] = cli_seconds(work, change, f"/sw/{rel}", env)
        results.append({"files": files, "preset": preset, "limit": files / seconds,
                        "full": full, "again": again, "changed": changed, "one": one})
    return results  # nothing deleted before the end: deletions slow this file system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--presets", default="zlib,balanced,fast")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--step", nargs=4, metavar=("KIND", "WORK", "SRC", "PATH"))
    args = parser.parse_args()
    if args.step:
        kind, work, src, path = args.step
        run_step(kind, Path(work), src, path)
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(base / "xdg-cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    presets = args.presets.split(",")
    print(f"configuration: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, "
          f"{sys.version.split()[0]}, local storage, layout /sw/pkgNNN/1.0 x {PER_RELEASE} files "
          "(100-2000 B of text), one nested catalog per release")
    try:
        results = [r for n in (args.files, args.small) for r in measure(base, n, presets, env)]
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    report(results)


def report(results: list[dict]) -> None:
    base = {r["files"]: r for r in results if r["preset"] == "zlib"}
    print(f"{'repository':>10} {'preset':<9} {'full':>7} {'files/s':>8} {'limit':>8} "
          f"{'of limit':>8} {'vs zlib-6':>9} {'size':>6} {'peak MB':>7} | {'again':>7} "
          f"{'vs full':>7} | {'1 changed':>9} | {'1-file':>7} {'(CLI)':>7} {'vs full':>8} "
          f"{'peak MB':>7} {'catalogs':>8}")
    for r in results:
        full, one = r["full"], r["one"]
        rate = r["files"] / full["seconds"]
        zlib_full = base.get(r["files"], r)["full"]["seconds"]
        print(f"{r['files']:>10,} {r['preset']:<9} {full['seconds']:>6.1f}s {rate:>8.0f} "
              f"{r['limit']:>8.0f} {rate / r['limit']:>8.0%} {zlib_full / full['seconds']:>8.2f}x "
              f"{full['stored'] / full['bytes']:>6.3f} {full['peak_mb']:>7.0f} | "
              f"{r['again']['seconds']:>6.2f}s {r['again']['seconds'] / full['seconds']:>7.1%} | "
              f"{r['changed']['seconds']:>8.2f}s | {one['seconds']:>6.3f}s "
              f"{one['cli_seconds']:>6.3f}s {one['seconds'] / full['seconds']:>8.4f} "
              f"{one['peak_mb']:>7.0f} {len(one['catalogs']):>8}")
    print("(full = first publish; limit = the preset's compressor + SHA-1 over the same files "
          "in os.cpu_count() threads; size = stored / source bytes; again = the whole tree "
          "published again unchanged (goal <= 10 % of full); 1 changed = the whole tree again "
          "with one file changed (goal for 10,000 files: <= 0.66 s); 1-file = one file "
          "published by its path)")


if __name__ == "__main__":
    main()
