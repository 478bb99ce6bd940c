"""What ``publish`` keeps, what it refuses, and that refusing publishes nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import zstandard
from tamper import damaged_key_pem

from cvmfs_publisher.config import Config
from cvmfs_publisher.cvmfs.catalog import Flag
from cvmfs_publisher.engine.views import client_view
from cvmfs_publisher.repositories import open_native

NAME = "sw.example.org"


def reader():  # type: ignore[no-untyped-def]
    return open_native(Config.load().get(NAME)).reader()


def view(top: str = "") -> dict[str, dict]:
    r = reader()
    try:
        return {item["path"]: item for item in client_view(r, top)}
    finally:
        r.close()


def revision() -> int:
    return reader().manifest.revision


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree with every kind of entry a build directory can hold."""
    src = tmp_path / "build"
    (src / "bin").mkdir(parents=True)
    (src / "empty-dir").mkdir()
    (src / "share" / "doc").mkdir(parents=True)
    (src / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "bin" / "suid").write_text("x")
    (src / "bin" / "suid").chmod(0o4755)
    (src / "private").write_text("secret")
    (src / "private").chmod(0o600)
    (src / "readonly").write_text("ro")
    (src / "readonly").chmod(0o444)
    (src / "empty").write_bytes(b"")
    (src / "share" / "doc" / "README").write_text("doc\n")
    os.link(src / "share" / "doc" / "README", src / "share" / "doc" / "README.hardlink")
    os.link(src / "share" / "doc" / "README", src / "bin" / "README.elsewhere")
    (src / "rel").symlink_to("bin/tool")
    (src / "abs").symlink_to("/cvmfs/sw.example.org/other")
    (src / "dangling").symlink_to("does/not/exist")
    os.utime(src / "bin" / "tool", (981173106, 981173106))
    os.chown(src / "private", 1234, 5678)
    os.utime(src / "bin", (1000000000, 1000000000))
    return src


def test_preserves_what_a_build_tree_holds(cli, repo: str, tree: Path) -> None:
    result = cli("publish", tree, "--repo", repo, "--path", "/sw/pkg/1.0")
    assert result.code == 0, result.err
    got = view("/sw/pkg/1.0")
    assert got["bin/tool"]["mode"] == "0o755" and got["bin/tool"]["mtime"] == 981173106
    assert got["bin/suid"]["mode"] == "0o4755"
    assert (got["private"]["mode"], got["private"]["uid"], got["private"]["gid"]) == (
        "0o600", 1234, 5678)
    assert got["readonly"]["mode"] == "0o444"
    assert got["empty"]["size"] == 0 and got["empty-dir"]["type"] == "dir"
    assert got["bin"]["mtime"] == 1000000000
    assert got["rel"]["target"] == "bin/tool" and got["abs"]["target"].startswith("/cvmfs/")
    assert got["dangling"]["type"] == "symlink"
    # hard links: a group within one directory, separate files across directories
    assert got["share/doc/README"]["nlink"] == got["share/doc/README.hardlink"]["nlink"] == 2
    assert got["bin/README.elsewhere"]["nlink"] == 1
    assert got["bin/README.elsewhere"]["sha256"] == got["share/doc/README"]["sha256"]
    r = reader()
    a = r.lookup("/sw/pkg/1.0/share/doc/README").entry
    b = r.lookup("/sw/pkg/1.0/share/doc/README.hardlink").entry
    assert a.hardlink_group == b.hardlink_group != 0
    # every file's content reads back identical
    for rel in ("bin/tool", "share/doc/README", "private"):
        assert b"".join(r.read(f"/sw/pkg/1.0/{rel}")) == (tree / rel).read_bytes()
    assert cli("verify", "--repo", repo).code == 0


def test_owner_mapping(cli, repo: str, tree: Path) -> None:
    assert cli("publish", tree, "--repo", repo, "--path", "/x", "--owner", "42:43").code == 0
    assert {(i["uid"], i["gid"]) for i in view("/x").values()} == {(42, 43)}


def test_special_files_and_sockets(cli, repo: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "special"
    src.mkdir()
    monkeypatch.chdir(src)  # a socket's path must fit 108 bytes: a checkout's may not
    os.mkfifo(src / "fifo")
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    try:
        result = cli("publish", src, "--repo", repo, "--path", "/dev-like")
    finally:
        sock.close()
    assert result.code == 0, result.err
    assert "sockets cannot be published" in result.err
    got = view("/dev-like")
    assert got["fifo"]["type"] == "fifo"
    assert (got["null"]["type"], got["null"]["major"], got["null"]["minor"]) == ("chardev", 1, 3)
    assert (got["loop0"]["type"], got["loop0"]["major"]) == ("blockdev", 7)
    assert "sock" not in got
    entry = reader().lookup("/dev-like/null").entry
    assert entry.flags == Flag.FILE | Flag.SPECIAL and entry.size == (1 << 8) | 3


def test_path_replaces_only_its_subtree(cli, repo: str, tree: Path, tmp_path: Path) -> None:
    assert cli("publish", tree, "--repo", repo, "--path", "/sw/a/1.0").code == 0
    assert cli("publish", tree, "--repo", repo, "--path", "/sw/b/1.0").code == 0
    before_b = view("/sw/b")
    small = tmp_path / "small"
    small.mkdir()
    (small / "only").write_text("new")
    assert cli("publish", small, "--repo", repo, "--path", "/sw/a/1.0").code == 0
    assert set(view("/sw/a/1.0")) == {"only", ".cvmfscatalog"}  # a release catalog
    assert view("/sw/b") == before_b
    assert cli("verify", "--repo", repo).code == 0


def test_single_file_source(cli, repo: str, tmp_path: Path) -> None:
    file = tmp_path / "tool"
    file.write_text("single")
    assert cli("publish", file, "--repo", repo, "--path", "/bin/tool").code == 0
    assert b"".join(reader().read("/bin/tool")) == b"single"


def _tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buffer.getvalue()
    if path.name.endswith(".tar.gz"):
        import gzip

        raw = gzip.compress(raw, mtime=0)
    elif path.name.endswith(".tar.zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, **attrs
            ) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = attrs.pop("mtime", 1700000000)
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


TAR_MEMBERS = [
    _member("./", tarfile.DIRTYPE),
    _member("./lib", tarfile.DIRTYPE),
    _member("./lib/a.txt", data=b"hello tar\n", uid=10, gid=20),
    _member("./lib/b.txt", tarfile.LNKTYPE, linkname="./lib/a.txt"),
    _member("./other/c.txt", tarfile.LNKTYPE, linkname="lib/a.txt"),
    _member("./link", tarfile.SYMTYPE, linkname="lib/a.txt"),
    _member("./fifo", tarfile.FIFOTYPE),
    _member("./null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.zst"])
def test_tarballs(cli, repo: str, tmp_path: Path, suffix: str) -> None:
    archive = _tarball(tmp_path / f"release{suffix}", TAR_MEMBERS)
    result = cli("publish", archive, "--repo", repo, "--path", "/rel")
    assert result.code == 0, result.err
    got = view("/rel")
    assert got["lib/a.txt"]["uid"] == 10 and got["lib/a.txt"]["nlink"] == 2
    assert got["lib/b.txt"]["sha256"] == got["lib/a.txt"]["sha256"]
    assert got["other/c.txt"]["nlink"] == 1  # across directories: a separate file
    assert got["link"]["target"] == "lib/a.txt"
    assert got["fifo"]["type"] == "fifo" and got["null"]["major"] == 1
    assert got["other"]["mode"] == "0o755"  # a parent the archive left out


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/abs.txt", "lib/../../x"])
def test_tar_member_escaping_publishes_nothing(cli, repo: str, tmp_path: Path, bad: str
                                               ) -> None:
    archive = _tarball(tmp_path / "evil.tar", [*TAR_MEMBERS, _member(bad, data=b"x")])
    before = revision()
    result = cli("publish", archive, "--repo", repo, "--path", "/rel")
    assert result.code != 0
    assert "would escape" in result.err and len(result.err.strip().splitlines()) == 1
    assert revision() == before


def test_hardlink_to_missing_target_publishes_nothing(cli, repo: str, tmp_path: Path) -> None:
    archive = _tarball(tmp_path / "bad.tar", [_member("x", tarfile.LNKTYPE, linkname="nope")])
    result = cli("publish", archive, "--repo", repo, "--path", "/rel")
    assert result.code != 0 and "hard link" in result.err
    assert revision() == 0


@pytest.mark.parametrize("path", ["/sw/../etc", "..", "/a/./b", "/.cvmfs/x"])
def test_bad_paths(cli, repo: str, tree: Path, path: str) -> None:
    result = cli("publish", tree, "--repo", repo, "--path", path)
    assert result.code == 2
    assert result.err.startswith("error:") and len(result.err.strip().splitlines()) == 1
    assert revision() == 0


def test_missing_source(cli, repo: str, tmp_path: Path) -> None:
    result = cli("publish", tmp_path / "nope", "--repo", repo, "--path", "/x")
    assert result.code == 1 and "does not exist" in result.err
    assert revision() == 0


@pytest.mark.parametrize("name", ["noDot", "-bad.org", "a..b", "x" * 61 + ".org", "a b.org"])
def test_invalid_repository_names(cli, tmp_path: Path, name: str) -> None:
    result = cli("init", "--storage", tmp_path / "s", "--", name)
    assert result.code == 2 and "not a valid repository name" in result.err
    assert not (tmp_path / "s").exists()


def test_missing_and_wrong_keys(cli, repo: str, tree: Path, isolated_home: Path) -> None:
    keys = isolated_home / "config" / "cvmfs-publisher" / "keys"
    key = keys / f"{NAME}.key"
    saved = key.read_bytes()
    key.unlink()
    result = cli("publish", tree, "--repo", repo, "--path", "/x")
    assert result.code == 1 and "missing key file" in result.err
    from cvmfs_publisher.cvmfs.key_material import generate_private_key, private_pem

    key.write_bytes(private_pem(generate_private_key()))
    key.chmod(0o600)
    result = cli("publish", tree, "--repo", repo, "--path", "/x")
    assert result.code == 1 and "does not match" in result.err
    key.write_bytes(damaged_key_pem(saved))  # the certificate's public half, wrong exponents
    result = cli("publish", tree, "--repo", repo, "--path", "/x")
    assert result.code == 1 and "the key file is damaged" in result.err
    assert len(result.err.strip().splitlines()) == 1
    key.write_bytes(saved)
    (keys / f"{NAME}.pub").write_bytes((keys / f"{NAME}.pub").read_bytes().replace(b"A", b"B",
                                                                                  1))
    result = cli("publish", tree, "--repo", repo, "--path", "/x")
    assert result.code == 1
    assert revision_on_disk(isolated_home.parent / "stratum0") == 0


def revision_on_disk(stratum0: Path) -> int:
    text = (stratum0 / NAME / ".cvmfspublished").read_bytes().split(b"\n--\n")[0]
    return int(next(line[1:] for line in text.split(b"\n") if line.startswith(b"S")))


def test_unreadable_file_publishes_nothing(tree: Path) -> None:
    """Root reads everything, so the publisher runs without the capabilities that bypass
    file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). It stays uid 0, so it can
    still reach the checkout and its virtualenv wherever they live (a 0700 ``mktemp -d``
    directory, for one, which an unprivileged user could not enter)."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed for this test")
    work = Path(tempfile.mkdtemp(prefix="unreadable-"))
    try:
        shutil.copytree(tree, work / "build", symlinks=True)
        (work / "build" / "private").chmod(0o000)
        env = {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
               "XDG_CACHE_HOME": str(work / "cache")}
        unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                     sys.executable, "-m", "cvmfs_publisher.cli"]
        init = subprocess.run([*unprivileged, "init", NAME, "--storage", str(work / "s0")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert init.returncode == 0, init.stderr
        result = subprocess.run(
            [*unprivileged, "publish", str(work / "build"), "--repo", NAME, "--path", "/x",
             "--no-progress"], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "cannot read" in result.stderr and "private" in result.stderr
        assert revision_on_disk(work / "s0") == 0
    finally:
        shutil.rmtree(work)


def test_existing_tag_and_json(cli, repo: str, tree: Path) -> None:
    first = cli("publish", tree, "--repo", repo, "--path", "/a", "--tag", "v1", "--json")
    assert first.code == 0
    report = json.loads(first.out)
    assert report["revision"] == 1 and report["tag"] == "v1" and report["files"] == 6
    again = cli("publish", tree, "--repo", repo, "--path", "/b", "--tag", "v1")
    assert again.code == 1 and "already exists" in again.err
    assert revision() == 1
    tags = json.loads(cli("tags", "--repo", repo, "--json").out)
    assert sorted(t["name"] for t in tags) == ["trunk", "v1"]


def test_rm(cli, repo: str, tree: Path) -> None:
    assert cli("publish", tree, "--repo", repo, "--path", "/sw/pkg/0.9").code == 0
    assert cli("publish", tree, "--repo", repo, "--path", "/sw/pkg/1.0").code == 0
    assert cli("rm", "/sw/pkg/0.9", "--repo", repo).code == 0
    assert set(view("/sw/pkg")) >= {"1.0"} and "0.9" not in view("/sw/pkg")
    missing = cli("rm", "/sw/pkg/0.9", "--repo", repo)
    assert missing.code == 1 and "does not exist" in missing.err
    assert cli("verify", "--repo", repo).code == 0


def test_help_everywhere(cli) -> None:
    for command in ("init", "publish", "rm", "ls", "cat", "tags", "verify", "serve", "resign",
                    "client-config", "unlock"):
        result = cli(command, "--help")
        assert result.code == 0 and "Usage:" in result.out


def test_publishing_to_a_mistyped_storage_creates_nothing(cli, repo, tree, tmp_path) -> None:
    """A storage path that exists nowhere (a typo) is reported before any lock file is made."""
    config = Config.load()
    entry = config.get(NAME)
    typo = tmp_path / "stratum0-typo"
    config.add(type(entry)(entry.name, str(typo), entry.keys, entry.settings))
    config.save()
    result = cli("publish", tree, "--repo", repo, "--path", "/x")
    assert result.code != 0 and "no repository" in result.err
    assert not typo.exists()
