"""Run the CLI with its storage writes counted, and die (or stop) at a chosen one.

Usage: python crash_driver.py N MODE -- CLI ARGS...
  MODE "before": SIGKILL ourselves just before the N-th write (1-based)
  MODE "after":  SIGKILL ourselves just after it
  MODE "stop":   SIGSTOP ourselves just before it (the lock stays held), then carry on

The product code is untouched: every storage the CLI opens through
``cvmfs_publisher.storage.open_storage`` is wrapped in a ``FaultInjectingStorage`` by the
factory's hook. ``test_crash.py`` uses ``install`` the same way in forked children, which
die with ``os._exit`` instead of a signal; this script is the real-SIGKILL sample.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from cvmfs_publisher.cli import main
from cvmfs_publisher.storage import add_wrapper
from cvmfs_publisher.storage.wrappers import FaultInjectingStorage, WriteEvent, WriteSequence

KILLED = 137  # what a shell reports for SIGKILL; forked children exit with it


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fault(target: int, mode: str, die: Callable[[], None]) -> Callable[[WriteEvent], None]:
    """The callback: ``die()`` (or stop) at write ``target``, ``before`` or ``after`` it."""
    if mode not in ("before", "after", "stop"):
        raise ValueError(f"unknown mode {mode!r}")

    def on_write(event: WriteEvent) -> None:
        if event.number != target:
            return
        if mode == "stop" and event.when == "before":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif event.when == mode:
            die()

    return on_write


def install(on_write: Callable[[WriteEvent], None]) -> WriteSequence:
    """Wrap every storage opened from now on; their writes are numbered as one sequence."""
    sequence = WriteSequence()
    add_wrapper(lambda storage: FaultInjectingStorage(storage, on_write, sequence=sequence))
    return sequence


if __name__ == "__main__":
    target, mode = int(sys.argv[1]), sys.argv[2]
    assert sys.argv[3] == "--"
    install(fault(target, mode, sigkill))
    sys.exit(main(sys.argv[4:]))
