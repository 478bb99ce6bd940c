"""The name rules (docs/format-decisions.md, "Names"): enforced by every producer, flagged by
``verify``.

A path component is non-empty, not ``.`` or ``..``, holds no ``/`` and no NUL, is valid
UTF-8 and at most 255 bytes long; ``/.cvmfs`` is reserved; a symlink target is valid UTF-8
without NUL, 1 to 4095 bytes; ``publish --path`` spells the root ``/``, never ``''``.
Producers: a directory, a tarball (members, hard-link and symlink targets), ``--path`` and
``rm``, and any entry stream handed to either backend. Refusals are one line that shows a
name that is not UTF-8 as ``\\xNN``; nothing is published.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from cliprocess import run_cli_process
from publishers import BACKENDS, FakeServer, make_classic, make_native
from tamper import FQRN, Resigner, key_file

from cvmfs_publisher.cvmfs.hashes import path_key
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import UsageError
from cvmfs_publisher.publisher import StoredContent
from unpacker.errors import UnsafeLayer
from unpacker.flatten import read_layer

NAME = "sw.example.org"
LATIN1 = "caf\udce9"  # the bytes b"caf\xe9" as os.listdir and tarfile hand them over
LATIN1_SHOWN = r"caf\xe9"


def manifest_revision(stratum0: Path) -> int:
    text = (stratum0 / NAME / ".cvmfspublished").read_bytes().split(b"\n--\n")[0]
    return int(next(line[1:] for line in text.split(b"\n") if line.startswith(b"S")))


def refused(code: int, err: str, stratum0: Path, *needles: str) -> None:
    """One line on stderr, starting with 'error:', naming the problem; nothing published."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0]
    assert manifest_revision(stratum0) == 0


def tarball(path: Path, *members: tuple[str, bytes, str, bytes | None]) -> Path:
    """(name, type, linkname, data) members, GNU format, names written as raw bytes."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name, kind, linkname, data in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = kind, linkname, 1_700_000_000
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, data: bytes = b"x") -> tuple[str, bytes, str, bytes | None]:
    return name, tarfile.REGTYPE, "", data


def symlink_member(name: str, target: str) -> tuple[str, bytes, str, bytes | None]:
    return name, tarfile.SYMTYPE, target, None


def link_member(name: str, target: str) -> tuple[str, bytes, str, bytes | None]:
    return name, tarfile.LNKTYPE, target, None


# -- a directory --------------------------------------------------------------------------


def test_directory_with_a_name_that_is_not_utf8(cli, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    (src / LATIN1).write_text("bad")
    result = cli("publish", src, "--repo", repo, "--path", "/x")
    refused(result.code, result.err, tmp_path / "stratum0", LATIN1_SHOWN, "not valid UTF-8")


def test_directory_with_a_symlink_target_that_is_not_utf8(cli, repo: str,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink(os.fsencode(LATIN1), src / "link")
    result = cli("publish", src, "--repo", repo, "--path", "/x")
    refused(result.code, result.err, tmp_path / "stratum0", LATIN1_SHOWN, "symlink target",
            "not valid UTF-8")


def test_directory_with_cvmfs_at_the_root(cli, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / ".cvmfs").mkdir(parents=True)
    (src / ".cvmfs" / "x").write_text("x")
    result = cli("publish", src, "--repo", repo, "--path", "/", "--force")
    refused(result.code, result.err, tmp_path / "stratum0", ".cvmfs", "reserved")
    assert cli("publish", src, "--repo", repo, "--path", "/sub").code == 0


# -- a tarball ------------------------------------------------------------------------------


@pytest.mark.parametrize(("members", "needles"), [
    ([file_member(f"top/{LATIN1}")], (LATIN1_SHOWN, "not valid UTF-8")),
    ([file_member(f"{LATIN1}/inner.txt")], (LATIN1_SHOWN, "not valid UTF-8")),
    ([file_member("a.txt"), link_member("b.txt", LATIN1)],
     (LATIN1_SHOWN, "hard link target", "not valid UTF-8")),
    ([symlink_member("link", f"../{LATIN1}")], (LATIN1_SHOWN, "symlink target")),
    ([file_member("n" * 256)], ("is 256 bytes long, more than 255",)),
    ([file_member("top/" + "é" * 128)], ("is 256 bytes long, more than 255",)),
    ([symlink_member("link", "t" * 4096)], ("symlink target", "4096 bytes long")),
    ([symlink_member("link", "")], ("symlink target", "0 bytes long")),
    ([file_member(".cvmfs/x")], ("entry '.cvmfs/x': /.cvmfs is reserved",)),
], ids=["member", "member-parent", "hardlink-target", "symlink-target", "long-member",
        "long-utf8-member", "long-symlink-target", "empty-symlink-target", "cvmfs-at-root"])
def test_tarball_names(members: list, needles: tuple[str, ...], cli, repo: str,
                       tmp_path: Path) -> None:
    archive = tarball(tmp_path / "names.tar", file_member("fine.txt"), *members)
    result = cli("publish", archive, "--repo", repo, "--path", "/", "--force")
    refused(result.code, result.err, tmp_path / "stratum0", *needles)
    if "reserved" not in needles[0]:  # the one rule that depends on where the tree goes
        assert str(archive) in result.err


def test_tarball_names_at_the_limits_publish(cli, repo: str, tmp_path: Path) -> None:
    """255 bytes of name, 4095 of symlink target, and .cvmfs anywhere below the root."""
    archive = tarball(tmp_path / "limits.tar", file_member("n" * 255),
                      file_member("é" * 127 + "x"), symlink_member("link", "t" * 4095),
                      file_member(".cvmfs/x"))
    result = cli("publish", archive, "--repo", repo, "--path", "/sub")
    assert result.code == 0, result.err
    listing = json.loads(cli("ls", "-R", "--json", "/sub", "--repo", repo).out)
    names = {item["path"] for item in listing}
    assert {"n" * 255, "é" * 127 + "x", "link", ".cvmfs/x"} <= names


# -- --path and rm --------------------------------------------------------------------------


def test_empty_path_is_refused_and_slash_is_the_root(cli, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    for empty in ("", "  "):
        result = cli("publish", src, "--repo", repo, "--path", empty)
        refused(result.code, result.err, tmp_path / "stratum0", "empty", "use /")
    result = cli("publish", src, "--repo", repo, "--path", "/", "--force")
    assert result.code == 0, result.err
    assert "f" in cli("ls", "/", "--repo", repo).out


@pytest.mark.parametrize(("path", "needle"), [
    ("/" + "p" * 256, "is 256 bytes long, more than 255"),
    ("/a/.cvmfs", None),  # reserved at the root only
    ("/.cvmfs/x", "reserved"),
    ("/a/../b", "'.' or '..'"),
])
def test_path_option_components(path: str, needle: str | None, cli, repo: str,
                                tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    result = cli("publish", src, "--repo", repo, "--path", path)
    if needle is None:
        assert result.code == 0, result.err
    else:
        refused(result.code, result.err, tmp_path / "stratum0", needle)


@pytest.mark.parametrize("command", ["publish", "rm"])
def test_path_that_is_not_utf8_through_the_real_cli(command: str, repo: str,
                                                    tmp_path: Path) -> None:
    """argv bytes that are not UTF-8 reach Python as surrogate escapes, like file names."""
    src = tmp_path / "src"
    src.mkdir()
    target = f"/sw/{LATIN1}"
    args = ("publish", src, "--path", target) if command == "publish" else ("rm", target)
    result = run_cli_process(*args, "--repo", NAME)
    refused(result.returncode, result.stderr, tmp_path / "stratum0", LATIN1_SHOWN,
            "not valid UTF-8")


# -- any entry stream, on both backends ----------------------------------------------------


@pytest.fixture(params=BACKENDS)
def publisher(request: pytest.FixtureRequest, tmp_path: Path, fake_server: FakeServer):
    if request.param == "native":
        return make_native(tmp_path, NAME)
    return make_classic(tmp_path, NAME, fake_server)


def _file(path: str) -> Entry:
    return Entry(path, Kind.FILE, content=BytesContent(b"x"), size=1)


BAD_STREAMS = {
    "empty-component": [_file("a//b")],
    "dot": [_file("./b")],
    "dotdot": [_file("a/../b")],
    "nul": [_file("a\0b")],
    "not-utf8": [_file(LATIN1)],
    "too-long": [_file("x" * 256)],
    "cvmfs": [_file(".cvmfs/state")],
    "symlink-not-utf8": [Entry("l", Kind.SYMLINK, target=LATIN1)],
    "symlink-too-long": [Entry("l", Kind.SYMLINK, target="t" * 4096)],
}


@pytest.mark.parametrize("stream", BAD_STREAMS, ids=list(BAD_STREAMS))
def test_both_backends_refuse_bad_names_in_a_stream(stream: str, publisher) -> None:
    before = [t.revision for t in publisher.tags() if t.name == "trunk"]
    with pytest.raises(UsageError), publisher.session() as session:
        session.replace("/", iter([Entry("", Kind.DIR, 0o755), *BAD_STREAMS[stream]]))
        session.commit()
    assert [t.revision for t in publisher.tags() if t.name == "trunk"] == before


@dataclass(frozen=True)
class Stored:
    size: int


@pytest.mark.parametrize(("member", "needle"), [
    (file_member(f"usr/{LATIN1}"), f"{LATIN1_SHOWN}' is not valid UTF-8"),
    (file_member("usr/" + "n" * 256), "is 256 bytes long, more than 255"),
    (symlink_member("usr/link", LATIN1), f"symlink target '{LATIN1_SHOWN}'"),
    (link_member("usr/hard", "usr/" + "n" * 256), "hard link target"),
], ids=["not-utf8", "too-long", "symlink-target", "hardlink-target"])
def test_image_layers_apply_the_same_rules(member: tuple, needle: str, tmp_path: Path) -> None:
    """The unpacker reads layers with the tarball's member_entry/clean_member_path."""
    layer = tarball(tmp_path / "layer.tar", file_member("usr/ok"), member).read_bytes()

    def store(stream: BinaryIO, size: int) -> StoredContent:
        return Stored(len(stream.read()))

    with pytest.raises(UnsafeLayer, match="layer 1") as refused_layer:
        read_layer(io.BytesIO(layer), store, "layer 1")
    assert needle in str(refused_layer.value)


# -- verify ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    old: str  # an entry without children, so renaming it breaks nothing else
    new: str
    expect: str

    def apply(self, r: Resigner) -> None:
        parent = self.old.rsplit("/", 1)[0]
        r.execute("", "UPDATE catalog SET name = ?, md5path_1 = ?, md5path_2 = ? "
                  "WHERE md5path_1 = ? AND md5path_2 = ?",
                  (self.new, *path_key(f"{parent}/{self.new}"), *path_key(self.old)))
        r.commit()


HELLO = "/a/hello.txt"
RENAMES = {
    "empty": Rename(HELLO, "", "catalog /: /a: entry name '' is empty"),
    "dot": Rename(HELLO, ".", "catalog /: /a: entry name '.' is '.' or '..'"),
    "dotdot": Rename(HELLO, "..", "catalog /: /a: entry name '..' is '.' or '..'"),
    "slash": Rename(HELLO, "x/y", "catalog /: /a: entry name 'x/y' contains '/'"),
    "nul": Rename(HELLO, "x\0y", r"catalog /: /a: entry name 'x\x00y' contains a NUL byte"),
    "long": Rename(HELLO, "n" * 256, f"catalog /: /a: entry name '{'n' * 256}' is 256 bytes "
                   "long, more than 255"),
    "cvmfs": Rename("/empty_dir", ".cvmfs", "catalog /: /.cvmfs is reserved for CVMFS itself"),
}


def verify_json(cli, copy: Path) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    result = cli("verify", "--json", "--repo", copy / "storage", "--key",
                 key_file(copy, "pub"), "--fqrn", FQRN)
    return result.code, json.loads(result.out)


@pytest.mark.parametrize("case", RENAMES, ids=list(RENAMES))
def test_verify_flags_a_bad_name(case: str, fixture_copy: Path, tmp_path: Path, cli) -> None:
    RENAMES[case].apply(Resigner(fixture_copy, tmp_path / "work"))
    code, report = verify_json(cli, fixture_copy)
    assert code == 1
    assert len(report["problems"]) == 1, report["problems"]
    assert report["problems"][0].startswith(RENAMES[case].expect), report["problems"]


@pytest.mark.parametrize("new", ["n" * 255, ".cvmfsx", "é" * 127])
def test_verify_accepts_names_at_the_limits(new: str, fixture_copy: Path, tmp_path: Path,
                                            cli) -> None:
    Rename(HELLO, new, "").apply(Resigner(fixture_copy, tmp_path / "work"))
    code, report = verify_json(cli, fixture_copy)
    assert (code, report["problems"]) == (0, [])
