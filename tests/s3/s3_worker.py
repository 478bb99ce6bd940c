"""A publisher in its own process, for the S3 concurrency and lease tests.

Usage (credentials come from the environment, never from these arguments):
    s3_worker.py publish SETTINGS.json WORKDIR INDEX   -> one JSON line on stdout (4 workers)
    s3_worker.py die-holding SETTINGS.json WORKDIR     -> takes the lease, then SIGKILLs itself
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.errors import RepositoryBusy
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

FQRN = "sw.example.org"
WORKERS = 4


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.005)


def publish(storage: S3Storage, work: Path, index: int) -> dict:
    """Try once, and if busy, wait; everyone's first try happens while one holds the lease."""
    repo = NativeRepository(storage, FQRN, keys_dir=work / "keys",
                            options=EngineOptions(cache_dir=work / f"cache{index}", workers=2))
    (work / f"ready{index}").touch()
    wait_for(work / "go")
    try:
        return run_publish(repo, work, index, wait=False) | {"busy": False}
    except RepositoryBusy:
        (work / f"tried{index}").touch()
    return run_publish(repo, work, index, wait=True) | {"busy": True}


def run_publish(repo: NativeRepository, work: Path, index: int, *, wait: bool) -> dict:
    entries, _ = open_source(work / f"src{index}")
    with repo.transaction(wait=wait) as txn:
        acquired = time.time()
        (work / f"tried{index}").touch()
        for other in range(WORKERS):  # hold the lease until every other one collided with it
            wait_for(work / f"tried{other}")
        txn.replace(f"/p{index}", entries)
        result = txn.commit(message=f"publisher {index}")
        committed = time.time()
    return {"index": index, "revision": result.revision, "acquired": acquired,
            "committed": committed}


def die_holding(storage: S3Storage, work: Path) -> None:
    with storage.lock("ghost publisher"):
        (work / "holding").touch()
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    mode, settings_file, work = argv[0], Path(argv[1]), Path(argv[2])
    settings = S3Settings.from_mapping(json.loads(settings_file.read_text()))
    storage = S3Storage.from_settings(settings, FQRN)
    if mode == "publish":
        print(json.dumps(publish(storage, work, int(argv[3]))), flush=True)
    elif mode == "die-holding":
        die_holding(storage, work)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
