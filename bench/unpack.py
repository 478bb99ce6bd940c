"""Benchmark: unpack + publish a realistic image vs ``umoci unpack``, and the re-sync cost.

Builds (once, cached in --work) a Debian bookworm minbase root with ``debootstrap`` from
the configured apt mirror, makes a 3-layer OCI image of it with umoci (base system; a
Python tree added; documentation and locales removed plus edited files: whiteouts), pushes
it with skopeo to a docker-registry started on a free loopback port, then prints:

- our unpack + publish into a fresh native repository (download from the registry,
  verify, flatten, store, commit), and a verify-free re-sync of the unchanged image;
- the limit: the local layers inflated, their tar members read and every file deflated +
  SHA-1-hashed with the preset in all cores' threads, nothing stored;
- ``umoci unpack`` of the same image from the local OCI layout (no download), and
  ``skopeo copy`` + ``umoci unpack`` (with the download), both as root;
- with --compare, whether the published tree equals umoci's rootfs.

Each compression preset runs in a fresh repository (``fast`` is the one the goal is for);
the table shows its time next to umoci's and the zlib preset's (upstream's level 6), and
the size of its objects next to the zlib preset's.

Goal: ours (fast) <= half of umoci's; re-sync < 1 s. Needs root and scripts/deps/registry.sh.
Run: ``.venv/bin/python bench/unpack.py [--work DIR] [--compare] [--presets zlib,fast]``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cputime import of_process, own_and_children  # noqa: E402

from cvmfs_publisher.backends.native import NativePublisher  # noqa: E402
from cvmfs_publisher.cvmfs.compression import PRESETS  # noqa: E402
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


def layer_limit(layout: Path, preset: str) -> float:
    """Seconds to inflate every layer (fastest inflater), read its tar members and deflate +
    SHA-1 each regular file's bytes with the preset's compressor in os.cpu_count() threads:
    the bytes our publish stores, with no registry, flattening, catalog or storage work."""
    from isal import igzip

    from cvmfs_publisher.cvmfs.compression import deflater

    deflate = deflater(preset)
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(layout, index["manifests"][0]["digest"]).read_bytes())
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        window: collections.deque = collections.deque()
        for layer in manifest["layers"]:
            path = blob(layout, layer["digest"])
            opener = igzip.open if layer["mediaType"].endswith("gzip") else open
            with opener(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    window.append(pool.submit(lambda d: hashlib.sha1(deflate(d)).digest(), data))
                    while len(window) > 64:  # bounded memory, like the pipeline's
                        window.popleft().result()
        for future in window:
            future.result()
    return time.perf_counter() - start


def blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


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
    parser.add_argument("--presets", default=",".join(PRESETS), help="compression presets to "
                        "run ours with, comma-separated (each in a fresh repository)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each; the best counts")
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
        ours: dict[str, tuple[float, float, int, tuple[float, ...]]] = {}
        limits: dict[str, float] = {}
        umoci_times = []
        for round_ in range(args.rounds):
            for preset in args.presets.split(","):
                limits[preset] = min(limits.get(preset, float("inf")),
                                     layer_limit(layout, preset))
                target = run_dir / f"{preset}-{round_}"
                repo, t_ours, t_resync, cpu = run_ours(target, ref, preset, proc.pid)
                size = stored_bytes(target / "storage")
                if preset not in ours or t_ours < ours[preset][0]:
                    ours[preset] = (t_ours, t_resync, size, cpu)
                if round_ + 1 < args.rounds or args.compare is False:
                    shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(run_dir / "umoci", ignore_errors=True)
            os.sync()
            umoci_times.append(timed(lambda: sh("umoci", "unpack", "--image", f"{layout}:bench",
                                                run_dir / "umoci")))
        t_umoci = min(umoci_times)
        pulled = run_dir / "pulled"

        def skopeo_umoci() -> None:
            sh("skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}",
               f"oci:{pulled}:bench")
            sh("umoci", "unpack", "--image", f"{pulled}:bench", run_dir / "umoci2")

        t_pull_umoci = timed(skopeo_umoci)
        files = sum(1 for _ in (run_dir / "umoci/rootfs").rglob("*"))
        print(f"image: Debian bookworm minbase + Python stdlib, 3 layers, {image_stats(layout)},"
              f" {files} entries in the rootfs")
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; engine workers "
              f"default; registry on loopback; best of {args.rounds} round(s)")
        print(f"umoci unpack (local layout, no download): {t_umoci:7.2f} s")
        print(f"skopeo copy + umoci unpack:               {t_pull_umoci:7.2f} s")
        base = ours.get("zlib")
        print(f"\n{'preset':<9} {'ours (s)':>9} {'vs umoci':>9} {'vs skopeo+umoci':>16} "
              f"{'limit (s)':>10} {'of limit':>9} {'vs zlib-6':>10} {'objects MB':>11} "
              f"{'size vs zlib-6':>15} {'re-sync (s)':>12}")
        for preset, (t_ours, t_resync, size, _) in ours.items():
            speed = f"{base[0] / t_ours:9.2f}x" if base else f"{'-':>10}"
            ratio = f"{size / base[2]:14.3f}x" if base else f"{'-':>15}"
            print(f"{preset:<9} {t_ours:9.2f} {t_ours / t_umoci:9.2f} "
                  f"{t_ours / t_pull_umoci:16.2f} {limits[preset]:10.2f} "
                  f"{limits[preset] / t_ours:9.0%} {speed} {size / 1e6:11.1f} {ratio} "
                  f"{t_resync:12.2f}")
        print("(ours = download + verify + flatten + publish; limit = inflate the local layers, "
              "read their tar members and deflate + SHA-1 every file with the preset in "
              f"{os.cpu_count()} threads, nothing stored; goals: fast preset <= 0.5 of umoci, "
              "re-sync < 1 s; vs zlib-6 = how many times faster than the zlib preset)")
        cores = os.cpu_count() or 1
        print(f"\n{'preset':<9} {'CPU s: publishing process':>26} {'workers':>8} "
              f"{'registry':>9} {'all / cores':>12} {'goal (s)':>9}")
        for preset, (_, _, _, cpu) in ours.items():
            print(f"{preset:<9} {cpu[0]:>26.2f} {cpu[1]:>8.2f} {cpu[2]:>9.2f} "
                  f"{sum(cpu) / cores:>12.2f} {t_umoci / 2:>9.2f}")
        print(f"(the fastest round; 'all / cores' is the least time that CPU work can take on "
              f"{cores} cores, whatever the overlap)")
        if args.compare:
            compare(repo, ref, run_dir / "umoci/rootfs")
        shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait()


def cpu_seconds(registry: int) -> tuple[float, float, float]:
    """``own_and_children`` and the CPU time of the registry serving the layers."""
    return (*own_and_children(), of_process(registry))


def run_ours(run_dir: Path, ref: str, preset: str,
             registry: int) -> tuple[NativeRepository, float, float, tuple[float, ...]]:
    repo = NativeRepository(LocalStorage(run_dir / "storage"), "bench.example.org",
                            keys_dir=run_dir / "keys",
                            options=EngineOptions(cache_dir=run_dir / "cache",
                                                  compression=preset))
    repo.create()
    publisher = NativePublisher(repo)
    report = None

    def ours() -> None:
        nonlocal report
        report = run_unpack(publisher, None, [ref])

    os.sync()
    before = cpu_seconds(registry)
    t_ours = timed(ours)
    cpu = tuple(b - a for a, b in zip(before, cpu_seconds(registry), strict=True))
    assert report is not None and report.ok, [o.detail for o in report.failed]
    t_resync = timed(lambda: run_unpack(publisher, None, [ref]))
    return repo, t_ours, t_resync, cpu


def stored_bytes(storage: Path) -> int:
    return sum(p.stat().st_size for p in (storage / "data").rglob("*") if p.is_file())


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
