"""Building the test images (umoci, raw tars) and pushing them (skopeo, the upload API).

Follows shared/TESTING.md section 3: a three-layer image with whiteouts, an opaque
directory, hard links across layers, devices, a fifo, symlinks, a 0500 directory, Unicode
and a long path; a multi-arch index; a zstd image pushed through the upload API; and the
hostile layer set.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import requests
import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
USER, PASSWORD = "testuser", "testpass"
UNICODE_NAME = "données-ünïcödé-☃.txt"
LONG_PATH = "data/" + "d" * 60 + "/" + "e" * 60 + "/" + "f" * 80 + ".txt"


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def _write(path: Path, text: str | bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    if mode is not None:
        path.chmod(mode)


def _layer1(root: Path) -> None:
    hello = root / "etc/hello.txt"
    _write(hello, "hello world\n")
    os.setxattr(hello, "user.test", b"hello")
    stamp = 981173106  # 2001-02-03 04:05:06 UTC
    os.utime(hello, (stamp, stamp))
    (root / "data").mkdir(parents=True, exist_ok=True)
    os.link(hello, root / "data/hardlink-to-hello")
    for rel, text in (("data/gone.txt", "gone\n"), ("data/mod.txt", "v1\n"),
                      ("todelete/inner/f.txt", "f\n"), ("opaque/old/a.txt", "a\n"),
                      ("opaque/b.txt", "b\n"), ("data/sub/s.txt", "s\n"),
                      ("data/file with spaces.txt", "spaces\n"), (f"data/{UNICODE_NAME}", "u\n"),
                      (LONG_PATH, "long\n")):
        _write(root / rel, text)
    (root / "empty").mkdir()
    _write(root / "usr/bin/hi", "#!/bin/sh\necho hi\n", 0o755)
    _write(root / "usr/bin/suid", "suid\n", 0o4755)
    _write(root / "data/private", "private\n", 0o600)
    _write(root / "data/ro", "ro\n", 0o444)
    _write(root / "data/noperm", "noperm\n", 0o000)
    _write(root / "data/lockeddir/x", "x\n")
    (root / "data/lockeddir").chmod(0o500)
    _write(root / "home/user/own.txt", "own\n")
    os.chown(root / "home/user/own.txt", 1000, 1000)
    os.symlink("../etc/hello.txt", root / "data/rel-symlink")
    os.symlink("/etc/hello.txt", root / "data/abs-symlink")
    os.symlink("/nonexistent/target", root / "data/dangling")
    os.mkfifo(root / "data/fifo")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null-like", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(root / "dev/blk", 0o660 | 0o060000, os.makedev(7, 0))
    with open(root / "data/sparse.bin", "wb") as f:
        f.truncate(1 << 20)
    # Large enough for the engine to chunk it (chunking starts above 4 MiB).
    _write(root / "data/big.bin", hashlib.shake_256(b"big").digest(6 << 20))


def _layer2(root: Path) -> None:
    (root / "data/gone.txt").unlink()
    for path in sorted((root / "todelete").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "todelete").rmdir()
    _write(root / "data/mod.txt", "v2 modified\n")
    _write(root / "data/new2.txt", "new2\n")
    os.link(root / "usr/bin/hi", root / "usr/bin/hi-hardlink-l2")
    (root / "usr/bin/hi").chmod(0o700)
    (root / "data/rel-symlink").unlink()
    os.symlink("new2.txt", root / "data/rel-symlink")
    os.chown(root / "data/ro", 1234, 5678)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None,
           mode: int = 0o644, uid: int = 0, gid: int = 0, linkname: str = "",
           mtime: int = 1700000000) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        data = data or b""
        info.size = len(data)
    return info, data


def layer3_tar() -> bytes:
    d, f, lnk = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.LNKTYPE
    return tar_bytes([
        member("opaque/", d, mode=0o755),
        member("opaque/.wh..wh..opq"),
        member("opaque/new.txt", f, b"new in layer 3\n"),
        member("etc/.wh.hello.txt"),
        member("data/fifo/", d, mode=0o755),
        member("data/fifo/inside.txt", f, b"inside\n"),
        member("data/sub", f, b"sub is a file now\n"),
        member("data/hl-to-lower", lnk, linkname="data/hardlink-to-hello"),
        member("data/new3.txt", f, b"new3\n", mode=0o640, uid=42, gid=43),
    ])


def build_main_image(work: Path) -> Path:
    """``work/oci`` with tag ``1.0`` (3 layers) and arm64/armv7 siblings; returns the layout."""
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "oci"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:1.0")
    run("umoci", "config", "--image", f"{layout}:1.0", "--config.env", "FOO=bar",
        "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin", "--config.entrypoint",
        "/usr/bin/hi", "--config.cmd", "arg1", "--config.workingdir", "/data",
        "--config.user", "0:0", "--author", "tester", "--architecture", "amd64", "--os", "linux")
    bundle = work / "bundle"
    run("umoci", "unpack", "--image", f"{layout}:1.0", bundle)
    _layer1(bundle / "rootfs")
    run("umoci", "repack", "--refresh-bundle", "--history.created_by", "layer1", "--image",
        f"{layout}:1.0", bundle)
    _layer2(bundle / "rootfs")
    run("umoci", "repack", "--refresh-bundle", "--history.created_by", "layer2", "--image",
        f"{layout}:1.0", bundle)
    (work / "layer3.tar").write_bytes(layer3_tar())
    run("umoci", "raw", "add-layer", "--history.created_by", "layer3 (raw tar)", "--image",
        f"{layout}:1.0", work / "layer3.tar")
    for tag, arch in (("1.0-arm64", "arm64"), ("1.0-armv7", "arm")):
        run("umoci", "config", "--image", f"{layout}:1.0", "--tag", tag, "--architecture", arch)
    _write_index(layout)
    return layout


def _write_index(layout: Path) -> None:
    idx = json.loads((layout / "index.json").read_text())
    byref = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in idx["manifests"]}

    def desc(ref: str, arch: str, variant: str | None = None) -> dict:
        m = dict(byref[ref])
        m.pop("annotations", None)
        m["platform"] = {"architecture": arch, "os": "linux",
                         **({"variant": variant} if variant else {})}
        return m

    attestation = dict(byref["1.0"])
    attestation.pop("annotations", None)
    attestation["platform"] = {"architecture": "unknown", "os": "unknown"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [desc("1.0", "amd64"), desc("1.0-arm64", "arm64", "v8"),
                           desc("1.0-armv7", "arm", "v7"), attestation]}
    body = json.dumps(index, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(body)
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                             "digest": "sha256:" + digest, "size": len(body),
                             "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (layout / "index.json").write_text(json.dumps(idx))


def oracle(layout: Path, tag: str, dest: Path) -> Path:
    """``umoci unpack`` of a tag: the reference rootfs."""
    run("umoci", "unpack", "--image", f"{layout}:{tag}", dest)
    return dest / "rootfs"


def skopeo_push(layout: Path, tag: str, dest: str, *, fmt: str | None = None,
                all_images: bool = False, creds: str | None = None) -> None:
    args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if fmt:
        args += ["--format", fmt]
    if all_images:
        args.append("--all")
    if creds:
        args += ["--dest-creds", creds]
    run(*args, f"oci:{layout}:{tag}", f"docker://{dest}")


# -- the upload API ---------------------------------------------------------------------------


@dataclass
class Pusher:
    """``POST uploads/`` + ``PUT ?digest=``, then ``PUT manifests/<tag>`` (TESTING.md §3)."""

    base: str  # http://127.0.0.1:PORT

    def blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if requests.head(f"{self.base}/v2/{repo}/blobs/{digest}", timeout=10).status_code == 200:
            return digest
        start = requests.post(f"{self.base}/v2/{repo}/blobs/uploads/", timeout=10)
        assert start.status_code == 202, start.text
        location = requests.compat.urljoin(self.base, start.headers["Location"])
        sep = "&" if "?" in location else "?"
        done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=30,
                            headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        return digest

    def manifest(self, repo: str, tag: str, body: bytes, media_type: str = OCI_MANIFEST
                 ) -> str:
        r = requests.put(f"{self.base}/v2/{repo}/manifests/{tag}", data=body, timeout=10,
                         headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    def image(self, repo: str, tag: str, layers: list[tuple[bytes, str, bytes]],
              config_extra: dict | None = None, diff_ids: list[str] | None = None) -> str:
        """Push an image from (blob, media type, uncompressed tar) triples."""
        ids = diff_ids or ["sha256:" + hashlib.sha256(raw).hexdigest() for _, _, raw in layers]
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": ids}, **(config_extra or {})}
        config_bytes = json.dumps(config, sort_keys=True).encode()
        descs = [{"mediaType": mt, "digest": self.blob(repo, blob), "size": len(blob)}
                 for blob, mt, _ in layers]
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": self.blob(repo, config_bytes),
                               "size": len(config_bytes)},
                    "layers": descs}
        return self.manifest(repo, tag, json.dumps(manifest).encode())


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def layout_layers(layout: Path, tag: str) -> tuple[dict, list[bytes]]:
    """The config and uncompressed layer tars of a tag in an OCI layout."""
    idx = json.loads((layout / "index.json").read_text())
    desc = next(m for m in idx["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blobs = layout / "blobs/sha256"
    manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    tars = []
    for layer in manifest["layers"]:
        data = (blobs / layer["digest"].split(":")[1]).read_bytes()
        tars.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return config, tars


def hostile_layers() -> dict[str, bytes]:
    """Tag -> uncompressed layer tar, one hostile case each (TESTING.md §3)."""
    d, f, sym, lnk = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    return {
        "dotdot": tar_bytes([member("ok.txt", f, b"ok\n"),
                             member("../../DOTDOT_ESCAPE.txt", f, b"x\n")]),
        "absolute": tar_bytes([member("/tmp/unpack-test/ABS_ESCAPE.txt", f, b"x\n")]),
        "symlink-abs": tar_bytes([member("abs/", d, mode=0o755),
                                  member("link", sym, linkname="/tmp/unpack-abs-dir"),
                                  member("link/f", f, b"through symlink\n")]),
        "symlink-rel": tar_bytes([member("rel", sym, linkname="../../../outside"),
                                  member("rel/f", f, b"through symlink\n")]),
        "hardlink-missing": tar_bytes([member("a.txt", f, b"a\n"),
                                       member("link", lnk, linkname="no/such/file")]),
        "hardlink-outside": tar_bytes([member("link", lnk, linkname="../../etc/passwd")]),
    }
