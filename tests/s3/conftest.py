"""Fixtures of the S3 tests: a real S3 server, SeaweedFS ``weed mini`` on loopback.

One server for the whole session (``s3kit.SeaweedServer``: TESTING.md 1), with a
``publisher`` identity and anonymous read, in pytest's temporary directory; every test gets
its own key prefix in the shared bucket. Fault tests stop and restart it with
``seaweed.stop()`` / ``seaweed.start()``: the data directory survives, as a real bucket would.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.storage.base import Storage
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

from .s3kit import ACCESS_KEY, BUCKET, FQRN, SECRET_KEY, SeaweedServer, write_tree
from .wiretap import Wiretap


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher's credentials, the way the toolkit takes them: from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_settings(seaweed: SeaweedServer, s3_env: None) -> S3Settings:
    """A fresh prefix per test; few retries so that fault tests fail fast."""
    if seaweed.process is None or seaweed.process.poll() is not None:
        seaweed.start()  # a failed fault test may have left it stopped
    return S3Settings.from_url_and_mapping(
        f"s3://{BUCKET}/t-{uuid.uuid4().hex[:10]}",
        {"endpoint": seaweed.endpoint, "region": "us-east-1", "max_attempts": 2,
         "connect_timeout": 2, "read_timeout": 10, "parallelism": 8},
    )


@pytest.fixture
def wiretap(seaweed: SeaweedServer) -> Iterator[Wiretap]:
    """A recording proxy in front of the server (``wiretap.py``)."""
    with Wiretap(seaweed.endpoint) as tap:
        yield tap


@pytest.fixture
def tapped_settings(s3_settings: S3Settings, wiretap: Wiretap) -> S3Settings:
    """``s3_settings``, reaching the server through ``wiretap``."""
    return dataclasses.replace(s3_settings, endpoint_url=wiretap.endpoint)


@pytest.fixture
def s3_storage(s3_settings: S3Settings) -> S3Storage:
    return S3Storage.from_settings(s3_settings, FQRN)


RepoFactory = Callable[[Storage], NativeRepository]


@pytest.fixture
def new_repo(tmp_path: Path) -> RepoFactory:
    """A repository handle on any storage, sharing this test's keys and cache."""

    def make(storage: Storage) -> NativeRepository:
        return NativeRepository(storage, FQRN, keys_dir=tmp_path / "keys",
                                options=EngineOptions(cache_dir=tmp_path / "cache", workers=4))

    return make


@pytest.fixture
def s3_repo(s3_storage: S3Storage, new_repo: RepoFactory) -> NativeRepository:
    """An initialised repository (revision 0) in the bucket."""
    repo = new_repo(s3_storage)
    repo.create()
    return repo


@pytest.fixture
def publish(tmp_path: Path) -> Callable[..., object]:
    """``publish(repo, "/sw/a", files, tag=None, wait=False)`` -> CommitResult."""
    from cvmfs_publisher.sources import open_source

    def run(repo: NativeRepository, path: str, files: dict[str, bytes], *,
            tag: str | None = None, wait: bool = False) -> object:
        src = write_tree(tmp_path / f"src-{uuid.uuid4().hex[:8]}", files)
        entries, _ = open_source(src)
        with repo.transaction(wait=wait) as txn:
            txn.replace(path, entries)
            return txn.commit(tag=tag, message=f"publish {path}")

    return run
