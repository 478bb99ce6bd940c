"""Publishers of both backends for behavioural tests, and the cvmfs_server stand-in.

``make_native`` builds a native repository in a directory; ``make_classic`` a repository
of the stand-in ``tests/fakes/cvmfs_server`` (its contract is in that file). Both come
back as configured repositories opened through ``repositories.open_publisher``, the way
every front end gets them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cvmfs_publisher.config import Config, RepositoryConfig
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.publisher import CommitResult, Publisher
from cvmfs_publisher.repositories import open_publisher, register_repository
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.local import LocalStorage

FAKE_SERVER = Path(__file__).resolve().parent / "fakes" / "cvmfs_server"
BACKENDS = ("native", "cvmfs_server")


@dataclass
class FakeServer:
    """The stand-in's state directory, and what it recorded."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"FAKE_CVMFS_HOME": str(self.home)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(FAKE_SERVER), *args], capture_output=True, text=True,
                              env={**os.environ, **self.env}, check=check)

    def _lines(self, name: str) -> list[dict]:
        path = self.home / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def calls(self) -> list[list[str]]:
        return [call["argv"] for call in self._lines("calls.jsonl")]

    def subcommands(self) -> list[str]:
        return [argv[0] for argv in self.calls()]

    def violations(self) -> list[dict]:
        return self._lines("violations.jsonl")

    def state(self, fqrn: str) -> dict:
        return json.loads((self.home / "state" / f"{fqrn}.json").read_text())

    def in_transaction(self, fqrn: str) -> bool:
        return bool(self.state(fqrn)["in_transaction"])

    def settings(self) -> dict[str, str]:
        return {"backend": "cvmfs_server", "command": str(FAKE_SERVER),
                "mount_root": str(self.home / "mount"),
                "spool_root": str(self.home / "spool")}


def make_native(base: Path, name: str) -> Publisher:
    config = Config.load()
    register_repository(config, RepositoryConfig(name, str(base / "stratum0"),
                                                 base / "keys", {}))
    return open_publisher(config.get(name))


def engine_repository(base: Path, name: str, cache: str = "cache",
                      **options: object) -> NativeRepository:
    """A native repository driven through the engine itself (no config), created on first
    use; its content index and object cache live in ``base / cache``."""
    repo = NativeRepository(LocalStorage(base / "repo"), name, keys_dir=base / "keys",
                            options=EngineOptions(cache_dir=base / cache, **options))
    if not (base / "repo" / ".cvmfspublished").exists():
        repo.create()
    return repo


def publish_source(repo: NativeRepository, src: Path, path: str = "/src") -> CommitResult:
    """``src`` (a directory, a file or a tarball) published at ``path`` in one revision."""
    with repo.transaction() as txn:
        txn.replace(path, open_source(src)[0])
        return txn.commit()


def make_classic(base: Path, name: str, fake: FakeServer, **settings: object) -> Publisher:
    """``settings`` go to the repository's config (e.g. ``gateway=True``)."""
    fake.run("mkfs", "-o", "root", name)
    config = Config.load()
    entry = RepositoryConfig(name, str(base / "srv"), base / "keys",
                             {**fake.settings(), **settings})
    register_repository(config, entry)
    return open_publisher(config.get(name))


def tree_of(publisher: Publisher, top: str = "") -> dict[str, tuple]:
    """What a client sees below ``top``: path -> (kind, mode, uid, gid, mtime, what)."""
    result = {}
    with publisher.view() as view:
        for path, info in view.walk(top):
            rel = path[len(top):] or "/"
            what: object = info.target
            if info.is_regular:
                what = hashlib.sha256(b"".join(view.read(path))).hexdigest()
            elif info.kind.value in ("chardev", "blockdev"):
                what = info.rdev
            nlink = info.nlink if info.is_regular else 0
            result[rel] = (info.kind.value, oct(info.mode), info.uid, info.gid, info.mtime,
                           what, nlink)
    return result
