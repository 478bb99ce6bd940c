"""Private keys readable by anyone but their owner are refused, as ssh refuses them.

The rule (``engine/key_files.py``): a ``.key`` or ``.masterkey`` whose mode has any group
or other bit (``mode & 0o077``) is refused wherever it is read (publish, resign, init
reusing keys) with one line saying how to fix it. Who owns the file is not checked: the
mode decides. ``.pub`` and ``.crt`` are public. Generated private keys are 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

NAME = "sw.example.org"


def keys_dir(home: Path) -> Path:
    return home / "config" / "cvmfs-publisher" / "keys"


def too_open(path: Path, mode: int) -> str:
    return (f"error: permissions {mode:04o} for {path} are too open: a private key must be "
            f"readable by its owner only; run 'chmod 600 {path}'")


def head(storage: Path) -> tuple[bytes, bytes]:
    """The manifest and whitelist: unchanged means nothing was published or re-signed."""
    return ((storage / ".cvmfspublished").read_bytes(),
            (storage / ".cvmfswhitelist").read_bytes())


@pytest.fixture
def content(tmp_path: Path) -> Path:
    src = tmp_path / "content"
    src.mkdir()
    (src / "hello").write_text("hello\n")
    return src


@pytest.mark.parametrize("kind", ["key", "masterkey"])
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=lambda mode: f"{mode:04o}")
def test_publish_refuses_a_private_key_others_can_read(cli, repo: str, tmp_path: Path,
                                                       isolated_home: Path, content: Path,
                                                       kind: str, mode: int) -> None:
    key = keys_dir(isolated_home) / f"{NAME}.{kind}"
    key.chmod(mode)
    storage = tmp_path / "stratum0" / NAME
    before = head(storage)
    result = cli("publish", content, "--repo", repo, "--path", "/sw/x")
    assert result.code == 1
    assert result.err.strip() == too_open(key, mode)
    assert head(storage) == before


@pytest.mark.parametrize("kind", ["key", "masterkey"])
def test_resign_refuses_a_private_key_others_can_read(cli, repo: str, tmp_path: Path,
                                                      isolated_home: Path, kind: str) -> None:
    key = keys_dir(isolated_home) / f"{NAME}.{kind}"
    key.chmod(0o644)
    storage = tmp_path / "stratum0" / NAME
    before = head(storage)
    result = cli("resign", "--repo", repo)
    assert result.code == 1
    assert result.err.strip() == too_open(key, 0o644)
    assert head(storage) == before


def test_resign_of_an_unconfigured_directory_refuses_it_too(cli, fixture_copy: Path) -> None:
    master = fixture_copy / "keys" / "ref.local.repo.masterkey"
    master.chmod(0o660)
    before = head(fixture_copy / "storage")
    result = cli("resign", "--repo", fixture_copy / "storage", "--keys", fixture_copy / "keys",
                 "--fqrn", "ref.local.repo")
    assert result.code == 1
    assert result.err.strip() == too_open(master, 0o660)
    assert head(fixture_copy / "storage") == before


@pytest.mark.parametrize("kind", ["key", "masterkey"])
def test_init_reusing_existing_keys_refuses_open_ones(cli, repo: str, tmp_path: Path,
                                                      isolated_home: Path, kind: str) -> None:
    key = keys_dir(isolated_home) / f"{NAME}.{kind}"
    key.chmod(0o644)
    other = tmp_path / "other.yaml"
    result = cli("--config", other, "init", NAME, "--storage", tmp_path / "second")
    assert result.code == 1
    assert result.err.strip() == too_open(key, 0o644)
    assert not (tmp_path / "second" / NAME / ".cvmfspublished").exists()


def test_public_key_and_certificate_may_be_world_readable(cli, repo: str,
                                                          isolated_home: Path,
                                                          content: Path) -> None:
    for suffix in ("pub", "crt"):
        (keys_dir(isolated_home) / f"{NAME}.{suffix}").chmod(0o666)
    assert cli("publish", content, "--repo", repo, "--path", "/sw/x").code == 0
    assert cli("resign", "--repo", repo).code == 0


def test_a_private_key_readable_by_its_owner_only_is_used(cli, repo: str,
                                                         isolated_home: Path,
                                                         content: Path) -> None:
    """0400 (read-only for the owner) is as good as 0600."""
    for kind in ("key", "masterkey"):
        (keys_dir(isolated_home) / f"{NAME}.{kind}").chmod(0o400)
    assert cli("publish", content, "--repo", repo, "--path", "/sw/x").code == 0
    assert cli("resign", "--repo", repo).code == 0


def test_generated_private_keys_are_0600_whatever_the_umask(cli, tmp_path: Path,
                                                          isolated_home: Path) -> None:
    old = os.umask(0)
    try:
        assert cli("init", NAME, "--storage", tmp_path / "stratum0").code == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in keys_dir(isolated_home).iterdir()}
    assert modes == {f"{NAME}.key": 0o600, f"{NAME}.masterkey": 0o600,
                     f"{NAME}.pub": 0o644, f"{NAME}.crt": 0o644}


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user needs root")
def test_the_mode_decides_whoever_owns_the_key(cli, repo: str, tmp_path: Path,
                                              isolated_home: Path, content: Path) -> None:
    """Root may use a 0600 key another user owns; the same key readable by its group is not."""
    key = keys_dir(isolated_home) / f"{NAME}.key"
    os.chown(key, 4242, 4242)
    assert cli("publish", content, "--repo", repo, "--path", "/sw/x").code == 0
    key.chmod(0o640)
    storage = tmp_path / "stratum0" / NAME
    before = head(storage)
    result = cli("publish", content, "--repo", repo, "--path", "/sw/y")
    assert result.err.strip() == too_open(key, 0o640)
    assert head(storage) == before
