"""A tree 1,000 directories deep publishes, verifies and lists: no recursion on the way.

Paths stay below PATH_MAX (1,000 one-letter names: 2,000 bytes), so the source can be read
with ordinary paths; the depth is what is tested. The CLI runs as a separate process with
Python's default recursion limit, as a user would run it.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliprocess import run_cli_process

NAME = "sw.example.org"
DEPTH = 1_000
DEEPEST = "/".join(["d"] * DEPTH)


def deep_directory(root: Path, depth: int = DEPTH, marker_every: int = 0) -> Path:
    """``root/d/d/.../d/leaf`` made through directory descriptors (``os.makedirs`` recurses).

    ``marker_every``: a ``.cvmfscatalog`` in every n-th directory (nested catalogs).
    """
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(1, depth + 1):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
            if marker_every and level % marker_every == 0:
                os.close(os.open(".cvmfscatalog", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"at the bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return root


def remove_tree(root: Path) -> None:
    """Delete a tree bottom-up without recursion: ``shutil.rmtree`` recurses per level, and
    pytest uses it to clean up old temporary directories, so no deep tree may be left."""
    directories = []
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        directories.append(directory)
        with os.scandir(directory) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for directory in reversed(directories):
        os.rmdir(directory)


@pytest.fixture
def src(tmp_path: Path) -> Iterator[Path]:
    """Where a test builds its deep source tree; removed afterwards (see ``remove_tree``)."""
    path = tmp_path / "src"
    yield path
    if path.exists():
        remove_tree(path)


def deep_tarball(path: Path, depth: int = DEPTH) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for level in range(1, depth + 1):
            info = tarfile.TarInfo("/".join(["d"] * level))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        data = b"at the bottom\n"
        info = tarfile.TarInfo("/".join(["d"] * depth) + "/leaf")
        info.size, info.mtime = len(data), 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return path


def cli(*args: str | Path):  # type: ignore[no-untyped-def]
    result = run_cli_process(*args, timeout=600)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def check_published(target: str, depth: int = DEPTH) -> None:
    """verify is clean, ``ls -R`` shows every level and the leaf, ``cat`` reads it."""
    verify = cli("verify", "--repo", NAME)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    listing = cli("ls", "-R", "--json", target, "--repo", NAME)
    assert listing.returncode == 0, listing.stderr
    paths = [item["path"] for item in json.loads(listing.stdout)]
    deepest = "/".join(["d"] * depth)
    assert paths == ["/".join(["d"] * n) for n in range(1, depth + 1)] + [f"{deepest}/leaf"]
    cat = cli("cat", f"{target}/{deepest}/leaf", "--repo", NAME)
    assert cat.stdout == "at the bottom\n"


def test_deep_directory(repo: str, src: Path) -> None:
    deep_directory(src)
    result = cli("publish", src, "--repo", NAME, "--path", "/deep", "--no-progress")
    assert result.returncode == 0, result.stderr
    check_published("/deep")


def test_deep_tarball(repo: str, tmp_path: Path) -> None:
    archive = deep_tarball(tmp_path / "deep.tar.gz")
    result = cli("publish", archive, "--repo", NAME, "--path", "/deep", "--no-progress")
    assert result.returncode == 0, result.stderr
    check_published("/deep")


def test_deep_republish_and_remove(repo: str, src: Path) -> None:
    """Replacing and removing a deep tree walks the old one: both work, diff included."""
    deep_directory(src)
    for _ in range(2):
        assert cli("publish", src, "--repo", NAME, "--path", "/deep",
                   "--no-progress").returncode == 0
    deeper = cli("publish", src, "--repo", NAME, "--path", f"/deep/{DEEPEST}/again",
                 "--no-progress")
    assert deeper.returncode == 0, deeper.stderr
    diff = cli("diff", "1", "--repo", NAME)
    assert diff.returncode == 0, diff.stderr
    assert f"A /deep/{DEEPEST}/again" in diff.stdout
    assert cli("rm", "/deep", "--repo", NAME).returncode == 0
    assert cli("verify", "--repo", NAME).returncode == 0


@pytest.mark.parametrize("marker_every", [1, 10])
def test_deep_nested_catalogs(marker_every: int, repo: str, src: Path) -> None:
    """A catalog marker at every (or every 10th) level: nested catalogs 1,000 (100) deep.

    Publishing and verify work at any depth: neither recurses per nesting level."""
    deep_directory(src, marker_every=marker_every)
    result = cli("publish", src, "--repo", NAME, "--path", "/deep", "--no-progress")
    assert result.returncode == 0, result.stderr
    verify = cli("verify", "--repo", NAME)
    assert verify.returncode == 0, verify.stdout + verify.stderr
