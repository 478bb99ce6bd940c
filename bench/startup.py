#!/usr/bin/env python3
"""Start-up of the command: wall time and imports of ``--help``, ``ls`` and ``cat``, next to
``python -c pass`` (the interpreter's own start-up, the floor) measured in the same run.

A small repository is created in a temporary directory first (``init`` and ``publish`` of
one file, with a config of its own, never yours). Each command then runs ``--runs`` times
in a fresh interpreter; the median wall time is printed, and the difference to the floor
(the goal for a bare ``--help``: at most 0.15 s more than ``python -c pass``). Then, from
one run under ``python -X importtime``, the total import time, the heaviest top-level
packages and which of the libraries known to be slow to import were loaded at all.

Usage: python bench/startup.py [--runs N] [--top N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FQRN = "startup.example.org"
HEAVY = ("numpy", "requests", "urllib3", "rich", "boto3", "botocore", "cryptography", "yaml",
         "jinja2", "gnupg", "git", "watchdog", "pathspec", "zstandard", "sqlite3")
GOAL = 0.15  # seconds above python -c pass, for a bare --help


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def importtime(args: list[str], env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, indented name) per imported module, from -X importtime."""
    done = subprocess.run([args[0], "-X", "importtime", *args[1:]], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((int(own), int(cumulative), name.rstrip()))
    return rows


def summary(rows: list[tuple[int, int, str]], top: int) -> list[str]:
    """Total, heaviest top-level packages (self time of all their modules), heavy libraries."""
    by_package: dict[str, int] = defaultdict(int)
    loaded = set()
    for own, _, name in rows:
        module = name.strip()
        by_package[module.split(".", 1)[0]] += own
        loaded.add(module)
    total = sum(own for own, _, _ in rows)
    lines = [f"    imports: {len(rows)} modules, {total / 1e6:.3f} s"]
    heaviest = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    lines.append("    heaviest: " + ", ".join(f"{name} {us / 1e3:.0f} ms" for name, us in heaviest))
    heavy = [name for name in HEAVY if name in loaded]
    lines.append("    slow libraries loaded: " + (", ".join(heavy) if heavy else "none"))
    ours = sorted(m for m in loaded if m.startswith("cvmfs_publisher"))
    lines.append(f"    cvmfs_publisher modules: {len(ours)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=8)
    options = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="cvmfs-startup-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "CVMFS_PUBLISHER_CONFIG": str(base / "config.yaml"),
               "XDG_CACHE_HOME": str(base / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("CVMFS_PUBLISHER_REPO", None)
        src = base / "src"
        src.mkdir()
        (src / "hello.txt").write_text("hello\n")
        cli = [python, "-m", "cvmfs_publisher.cli"]
        run([*cli, "init", FQRN, "--storage", str(base / "s0"), "--keys", str(base / "keys")],
            env)
        run([*cli, "publish", str(src), "--repo", FQRN, "--path", "/sw/hello"], env)
        cases = [
            ("python -c pass", [python, "-c", "pass"]),
            ("cvmfs-publisher --help", [*cli, "--help"]),
            ("cvmfs-publisher ls", [*cli, "ls", "/sw/hello", "--repo", FQRN]),
            ("cvmfs-publisher cat", [*cli, "cat", "/sw/hello/hello.txt", "--repo", FQRN]),
        ]
        for _, args in cases:  # warm the page cache and the bytecode
            run(args, env)
        medians = {}
        for label, args in cases:
            times = [run(args, env) for _ in range(options.runs)]
            medians[label] = statistics.median(times)
        floor = medians["python -c pass"]
        print(f"start-up, median of {options.runs} runs ({sys.version.split()[0]}, "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
        for label, args in cases:
            extra = "" if label == "python -c pass" else \
                f"  (+{medians[label] - floor:.3f} s over python -c pass)"
            print(f"  {label:<24} {medians[label]:.3f} s{extra}")
            if label != "python -c pass":
                for line in summary(importtime(args, env), options.top):
                    print(line)
        over = medians["cvmfs-publisher --help"] - floor
        verdict = "met" if over <= GOAL else "NOT met"
        print(f"goal: --help within {GOAL:.2f} s of python -c pass: {verdict} "
              f"({over:.3f} s)")


if __name__ == "__main__":
    main()
