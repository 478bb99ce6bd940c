#!/usr/bin/env python3
"""Does the cost of a publish follow the change, not the repository?

In one run:
  1. a full publish of 100,000 small files (files/s, peak memory);
  2. a publish that changes one file of that repository (seconds, ratio to 1.);
  3. the same one-file publish in a 10,000-file repository (ratio to 2.).
Layout: the common software layout, /sw/pkgNNN/1.0 with 1,000 files per release (10
directories of 100), so every release is a nested catalog. Each step runs in its own
process, so peak memory (max RSS) is per step. The one-file publish is timed inside the
process (engine work) and as a whole CLI invocation (what a user waits for).

Usage: python bench/scale.py [--files 100000] [--small 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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
    from cvmfs_publisher.engine.options import EngineOptions
    from cvmfs_publisher.engine.repository import NativeRepository
    from cvmfs_publisher.sources import open_source
    from cvmfs_publisher.storage.local import LocalStorage

    repo = NativeRepository(LocalStorage(work / "repo"), NAME, keys_dir=work / "keys",
                            options=EngineOptions(cache_dir=work / "cache"))
    if kind == "init":
        repo.create()
    entries, _ = open_source(Path(src))
    start = time.perf_counter()
    with repo.transaction() as txn:
        txn.replace(path, entries)
        result = txn.commit()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "files": result.files,
                      "catalogs": result.catalogs_written}))


def cli_seconds(work: Path, change: Path, path: str, env: dict[str, str]) -> float:
    config = work / "config.yaml"
    config.write_text(f"repositories:\n  {NAME}:\n    storage: {work}\n    keys: {work / 'keys'}\n")
    (work / NAME).unlink(missing_ok=True)
    (work / NAME).symlink_to(work / "repo")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cvmfs_publisher.cli", "--config", str(config),
                    "publish", str(change), "--repo", NAME, "--path", path, "--no-progress"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(work: Path, files: int, env: dict[str, str]) -> dict:
    src = work / "src"
    make_tree(src, files)
    full = step(["init", str(work), str(src), "/sw"], env)
    change = work / "change.txt"
    change.write_text("a changed file\n")
    target = f"/sw/pkg{(files // PER_RELEASE) // 2:03d}/1.0/d3/f57.txt"
    one = step(["publish", str(work), str(change), target], env)
    change.write_text("changed again\n")
    one["cli_seconds"] = cli_seconds(work, change, target, env)
    shutil.rmtree(src)
    return {"files": files, "full": full, "one": one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
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
    try:
        results = [measure(base / f"r{n}", n, env) for n in (args.files, args.small)]
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    report(results)


def report(results: list[dict]) -> None:
    print(f"configuration: {os.cpu_count()} cpus, {sys.version.split()[0]}, local storage, "
          f"layout /sw/pkgNNN/1.0 x {PER_RELEASE} files (100-2000 B of text), one nested "
          "catalog per release")
    print(f"{'repository':>12} {'full publish':>14} {'files/s':>9} {'peak MB':>8} | "
          f"{'1-file (engine)':>15} {'1-file (CLI)':>13} {'vs full':>8} {'peak MB':>8} "
          f"{'catalogs written':>18}")
    for r in results:
        full, one = r["full"], r["one"]
        print(f"{r['files']:>12,} {full['seconds']:>13.1f}s {r['files'] / full['seconds']:>9.0f} "
              f"{full['peak_mb']:>8.0f} | {one['seconds']:>14.3f}s {one['cli_seconds']:>12.3f}s "
              f"{one['seconds'] / full['seconds']:>8.4f} {one['peak_mb']:>8.0f} "
              f"{len(one['catalogs']):>18}")
    big, small = results[0]["one"]["seconds"], results[1]["one"]["seconds"]
    print(f"one-file publish, {results[0]['files']:,} vs {results[1]['files']:,} files: "
          f"{big / small:.2f}x (goal: under 1 s, within 1.5x)")


if __name__ == "__main__":
    main()
