"""Run the CLI with its storage writes counted, and die (or stop) at a chosen one.

Usage: python crash_driver.py COUNT_FILE N MODE -- CLI ARGS...
  MODE "before": SIGKILL ourselves just before the N-th write (1-based)
  MODE "after":  SIGKILL ourselves just after it
  MODE "stop":   SIGSTOP ourselves just before it (the lock stays held), then carry on
  N = 0:         never; only record the number of writes in COUNT_FILE

The product code is untouched: the test wraps ``LocalStorage.put`` from outside, the way
a real crash would interrupt it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from cvmfs_publisher.cli import main
from cvmfs_publisher.storage.local import LocalStorage


def install(count_file: Path, target: int, mode: str) -> None:
    original = LocalStorage.put
    lock = threading.Lock()
    state = {"n": 0}

    def put(self: LocalStorage, key: str, data: bytes) -> None:
        with lock:
            state["n"] += 1
            n = state["n"]
            count_file.write_text(str(n))
            if n == target and mode == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            if n == target and mode == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
            original(self, key, data)
            if n == target and mode == "after":
                os.kill(os.getpid(), signal.SIGKILL)

    LocalStorage.put = put  # type: ignore[method-assign]


if __name__ == "__main__":
    count_file, target, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    assert sys.argv[4] == "--"
    install(count_file, target, mode)
    sys.exit(main(sys.argv[5:]))
