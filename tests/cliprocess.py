"""The CLI as a separate process, for tests that kill, stop or signal it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli_process(*args: str | Path, env: dict[str, str] | None = None,
                    timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The CLI as a separate process (for kill, stop and concurrency tests)."""
    return subprocess.run(
        [sys.executable, "-m", "cvmfs_publisher.cli", *[str(a) for a in args]],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
        **kwargs,
    )
