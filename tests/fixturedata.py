"""Where the upstream reference repository is, and when its whitelist is valid.

A module of its own (not conftest) so tests in any directory import the same one.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "ref.local.repo"
FIXTURE_NAME = "ref.local.repo"
# A moment inside the fixture whitelist's validity (signed 2026-11-24, expires 2026-12-24).
FIXTURE_VALID_AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def find_fixture() -> Path:
    override = os.environ.get("CVMFS_PUBLISHER_FIXTURES")
    candidates = [Path(override) / FIXTURE_NAME] if override else []
    for candidate in (*candidates, FIXTURE, Path("/work/shared/fixtures/ref.local.repo")):
        if (candidate / "storage" / ".cvmfspublished").exists():
            return candidate
    raise RuntimeError("the upstream fixture shared/fixtures/ref.local.repo is missing")
