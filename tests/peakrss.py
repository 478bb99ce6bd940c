"""The CLI in a fresh process that reports its own peak memory, for the memory-bomb tests.

``resource.getrusage(RUSAGE_CHILDREN)`` in the test process is the maximum over every
child it ever waited for, so one greedy earlier command would hide all later ones; and a
process's own ``ru_maxrss`` starts at the peak of the process it was forked from (Linux
keeps the high-water mark across ``exec``), here the test process with its fixtures. So a
small wrapper process runs ``python -m cvmfs_publisher.cli`` as its only child and prints
``getrusage(RUSAGE_CHILDREN)`` as the last line of stderr: the CLI's peak, or the
wrapper's own (about 10 MiB) if that were higher.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "cvmfs_publisher.cli", *sys.argv[2:]],
                       timeout=float(sys.argv[1]))
print("peak-rss-kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""
_MARK = "peak-rss-kib "


@dataclass(frozen=True)
class Measured:
    """One finished command: exit code, stdout (a file: it may be big), stderr, peak RSS."""

    code: int
    out: Path
    err: str
    peak_kib: int


def run_measured(out: Path, *args: str | Path, timeout: float = 120) -> Measured:
    """Run ``cvmfs-publisher ARGS`` with stdout to the file ``out`` (it may be big).

    The CLI is killed after ``timeout`` seconds; then, as when the wrapper itself fails,
    there is no measurement and the assertion shows stderr.
    """
    with out.open("wb") as stdout:
        done = subprocess.run([sys.executable, "-c", _WRAPPER, str(timeout), *map(str, args)],
                              stdout=stdout, stderr=subprocess.PIPE, timeout=timeout + 30)
    err = done.stderr.decode("utf-8", "replace")
    body, _, last = err.rstrip("\n").rpartition("\n")
    assert last.startswith(_MARK), f"no measurement (exit {done.returncode}): {err}"
    return Measured(done.returncode, out, body, int(last[len(_MARK):]))
