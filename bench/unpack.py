"""Benchmark: unpack + publish a realistic image vs ``umoci unpack``, and the re-sync cost.

Builds (once, cached in --work) a Debian bookworm minbase root with ``debootstrap`` from
the configured apt mirror, makes a 3-layer OCI image of it with umoci (base system; a
Python tree added; documentation and locales removed plus edited files: whiteouts), pushes
it with skopeo to a docker-registry started on a free loopback port, then prints:

- our unpack + publish into a fresh native repository (download from the registry,
  verify, flatten, store, commit), and a verify-free re-sync of the unchanged image;
- ``umoci unpack`` of the same image from the local OCI layout (no download), and
  ``skopeo copy`` + ``umoci unpack`` (with the download), both as root;
- with --compare, whether the published tree equals umoci's rootfs.

Goal: ours <= half of umoci's; re-sync < 1 s. Needs root and scripts/deps/registry.sh.
Run: ``.venv/bin/python bench/unpack.py [--work DIR] [--compare]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cvmfs_publisher.engine.options import EngineOptions  # noqa: E402
from cvmfs_publisher.engine.repository import NativeRepository  # noqa: E402
from cvmfs_publisher.storage.local import LocalStorage  # noqa: E402
from unpacker.runs import run_unpack  # noqa: E402

MIRROR = "http://deb.debian.org/debian"


def sh(*args: str | Path, cwd: Path | None = None) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build_image(work: Path, mirror: str) -> Path:
    layout = work / "oci"
    if (layout / "index.json").exists():
        return layout
    base = work / "debootstrap"
    if not (base / "etc/debian_version").exists():
        print(f"debootstrap --variant=minbase bookworm from {mirror} ...", flush=True)
        sh("debootstrap", "--variant=minbase", "bookworm", base, mirror)
    shutil.rmtree(work / "bundle", ignore_errors=True)
    sh("umoci", "init", "--layout", layout)
    sh("umoci", "new", "--image", f"{layout}:bench")
    sh("umoci", "config", "--image", f"{layout}:bench", "--architecture", "amd64",
       "--os", "linux", "--config.cmd", "/bin/bash")
    bundle = work / "bundle"
    sh("umoci", "unpack", "--image", f"{layout}:bench", bundle)
    rootfs = bundle / "rootfs"
    sh("cp", "-a", f"{base}/.", rootfs)
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench", bundle)
    python = Path(f"/usr/lib/python3.{sys.version_info.minor}")
    if not python.is_dir():
        python = Path(sys.base_prefix) / "lib" / f"python3.{sys.version_info.minor}"
    sh("cp", "-a", python, rootfs / "opt/python-lib")
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench", bundle)
    for rel in ("usr/share/doc", "usr/share/locale", "usr/share/man", "opt/python-lib/test"):
        shutil.rmtree(rootfs / rel, ignore_errors=True)
    (rootfs / "etc/motd").write_text("benchmark image\n")
    (rootfs / "etc/hostname").write_text("bench\n")
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench", bundle)
    shutil.rmtree(bundle)
    return layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(work / "registry")}},
              "http": {"addr": f"127.0.0.1:{port}"},
              "health": {"storagedriver": {"enabled": False}}}
    path = work / "registry.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(["docker-registry", "serve", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def image_stats(layout: Path) -> str:
    blobs = layout / "blobs/sha256"
    size = sum(p.stat().st_size for p in blobs.iterdir())
    return f"{size / 1e6:.0f} MB of blobs in the OCI layout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) /
                        "cvmfs-publisher-bench-unpack")
    parser.add_argument("--mirror", default=MIRROR)
    parser.add_argument("--compare", action="store_true", help="compare trees with umoci's")
    parser.add_argument("--levels", default="6,1", help="zlib levels to run ours with, "
                        "comma-separated (each in a fresh repository)")
    args = parser.parse_args()
    for tool in ("debootstrap", "umoci", "skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: run scripts/deps/registry.sh as root")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    layout = build_image(work, args.mirror)
    proc, host = start_registry(work)
    try:
        ref = f"{host}/bench/debian:minbase"
        sh("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:bench",
           f"docker://{ref}")
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
        ours_by_level = {}
        for level in [int(x) for x in args.levels.split(",")]:
            repo, t_ours, t_resync = run_ours(run_dir / f"level{level}", ref, level)
            ours_by_level[level] = (t_ours, t_resync)
        t_umoci = timed(lambda: sh("umoci", "unpack", "--image", f"{layout}:bench",
                                   run_dir / "umoci"))
        pulled = run_dir / "pulled"

        def skopeo_umoci() -> None:
            sh("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
               f"oci:{pulled}:bench")
            sh("umoci", "unpack", "--image", f"{pulled}:bench", run_dir / "umoci2")

        t_pull_umoci = timed(skopeo_umoci)
        files = sum(1 for _ in (run_dir / "umoci/rootfs").rglob("*"))
        print(f"image: Debian bookworm minbase + Python stdlib, 3 layers, {image_stats(layout)},"
              f" {files} entries in the rootfs")
        print(f"machine: {os.cpu_count()} cores; engine workers default; registry on loopback")
        print(f"umoci unpack (local layout, no download): {t_umoci:7.2f} s")
        print(f"skopeo copy + umoci unpack:               {t_pull_umoci:7.2f} s")
        for level, (t_ours, t_resync) in ours_by_level.items():
            print(f"ours, zlib level {level} (download+verify+flatten+publish): {t_ours:7.2f} s"
                  f"   ours/umoci = {t_ours / t_umoci:.2f} (goal <= 0.5), ours/(skopeo+umoci)"
                  f" = {t_ours / t_pull_umoci:.2f}; re-sync unchanged: {t_resync:.2f} s "
                  "(goal < 1 s)")
        if args.compare:
            compare(repo, ref, run_dir / "umoci/rootfs")
        shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait()


def run_ours(run_dir: Path, ref: str, level: int) -> tuple[NativeRepository, float, float]:
    repo = NativeRepository(LocalStorage(run_dir / "storage"), "bench.example.org",
                            keys_dir=run_dir / "keys",
                            options=EngineOptions(cache_dir=run_dir / "cache",
                                                  compression_level=level))
    repo.create()
    report = None

    def ours() -> None:
        nonlocal report
        report = run_unpack(repo, None, [ref])

    t_ours = timed(ours)
    assert report is not None and report.ok, [o.detail for o in report.failed]
    t_resync = timed(lambda: run_unpack(repo, None, [ref]))
    return repo, t_ours, t_resync


def compare(repo: NativeRepository, ref: str, rootfs: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests/unpacker"))
    import posixpath

    from treecompare import differences, oracle_view, published_view

    reader = repo.reader()
    link = f"/{ref}"
    top = posixpath.normpath(posixpath.join(posixpath.dirname(link),
                                            reader.require(link).entry.symlink))
    start = time.perf_counter()
    problems = differences(published_view(reader, top), oracle_view(rootfs))
    print(f"compare with umoci's rootfs: {len(problems)} differences "
          f"({time.perf_counter() - start:.1f} s)")
    for line in problems[:20]:
        print("  ", line)


if __name__ == "__main__":
    main()
