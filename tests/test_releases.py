"""Signed releases through the real CLI, with real gpg keys and real tarballs.

A release is published only if its detached signature verifies with a key the
repository trusts for the target path; anything else is refused in one line and
publishes nothing. Hostile tarballs signed by a trusted key are refused too.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from clireads import revision
from gpgkit import Signer, gpg_home, new_signer

NAME = "sw.example.org"


@pytest.fixture(scope="module")
def keys() -> Iterator[dict[str, Signer]]:
    with gpg_home() as main, gpg_home() as other, gpg_home() as revoked, \
            gpg_home(["--faked-system-time", "20200101T000000!"]) as old:
        yield {"maintainer": new_signer(main, "Release Manager"),
               "stranger": new_signer(other, "Someone Else"),
               "revoked": new_signer(revoked, "Revoked One"),
               "expired": new_signer(old, "Expired One", expire="2020-06-01")}


def tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None,
           link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, 0o755, 1_700_000_000
    return info, data if kind == tarfile.REGTYPE else None


def good_tarball(path: Path) -> Path:
    return tarball(path, [member("bin", tarfile.DIRTYPE), member("bin/tool", data=b"v1\n"),
                          member("README", data=b"read me\n")])


@pytest.fixture
def trusted(cli, repo, keys, tmp_path: Path) -> str:
    key = keys["maintainer"].public(tmp_path / "maint.asc")
    result = cli("trust", "add", key, "--path", "/sw/pkg/**", "--repo", repo)
    assert result.code == 0, result.err
    return repo



def test_trust_list_and_rm(cli, trusted, keys) -> None:
    listed = json.loads(cli("trust", "list", "--repo", trusted, "--json").out)
    fingerprint = keys["maintainer"].fingerprint
    assert [(k["fingerprint"], k["paths"]) for k in listed] == [(fingerprint, ["/sw/pkg/**"])]
    assert cli("trust", "rm", fingerprint[-16:], "--repo", trusted).code == 0
    assert json.loads(cli("trust", "list", "--repo", trusted, "--json").out) == []


@pytest.mark.parametrize("kind", ["expired", "revoked"])
def test_expired_and_revoked_keys_are_not_trusted(cli, repo, keys, kind, tmp_path) -> None:
    signer = keys[kind]
    key = signer.revoked_public(tmp_path / "k.asc") if kind == "revoked" \
        else signer.public(tmp_path / "k.asc")
    result = cli("trust", "add", key, "--path", "/sw/**", "--repo", repo)
    assert result.code != 0 and kind in result.err
    assert json.loads(cli("trust", "list", "--repo", repo, "--json").out) == []


def test_private_key_is_refused(cli, repo, keys, tmp_path) -> None:
    signer = keys["maintainer"]
    secret = tmp_path / "secret.asc"
    secret.write_text(signer.gpg.export_keys(signer.fingerprint, secret=True,
                                             expect_passphrase=False))
    result = cli("trust", "add", secret, "--path", "/sw/**", "--repo", repo)
    assert result.code != 0 and "private key" in result.err
    assert "PRIVATE KEY BLOCK" not in result.err + result.out


def test_signed_release_is_published_with_provenance(cli, trusted, keys, tmp_path) -> None:
    artifact = good_tarball(tmp_path / "pkg-1.2.3.tar.gz")
    signature = keys["maintainer"].sign(artifact)
    result = cli("release", artifact, "--sig", signature, "--repo", trusted,
                 "--path", "/sw/pkg/1.2.3", "--source", "https://example.org/pkg-1.2.3.tgz")
    assert result.code == 0, result.err
    assert cli("cat", "/sw/pkg/1.2.3/bin/tool", "--repo", trusted).out == "v1\n"
    tags = {t["name"]: t for t in json.loads(cli("tags", "--repo", trusted, "--json").out)}
    description = tags["pkg-1.2.3"]["description"]
    assert f"signer={keys['maintainer'].fingerprint}" in description
    assert "sha256=" in description and "source=https://example.org/pkg-1.2.3.tgz" in description
    again = cli("release", artifact, "--sig", signature, "--repo", trusted,
                "--path", "/sw/pkg/1.2.3", "--tag", "pkg-1.2.3-again")
    assert again.code != 0 and "never overwritten" in again.err


def refused(cli, repo: str, artifact: Path, signature: Path, *extra: str,
            path: str = "/sw/pkg/1.2.3") -> str:
    before = revision(cli, repo)
    result = cli("release", artifact, "--sig", signature, "--repo", repo, "--path", path,
                 *extra)
    assert result.code != 0
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    assert revision(cli, repo) == before
    return result.err


def test_untrusted_tampered_or_misplaced_releases_are_refused(cli, trusted, keys,
                                                               tmp_path) -> None:
    artifact = good_tarball(tmp_path / "pkg.tar.gz")
    good = keys["maintainer"].sign(artifact)
    stranger = keys["stranger"].sign(artifact, suffix=".other.asc")
    assert "not trusted" in refused(cli, trusted, artifact, stranger)
    assert "not trusted to publish under /sw/other" in refused(
        cli, trusted, artifact, good, path="/sw/other/1.0")
    assert "sha256" in refused(cli, trusted, artifact, good, "--sha256", "0" * 64)
    unsigned = tmp_path / "garbage.asc"
    unsigned.write_text("not a signature\n")
    assert "refused" in refused(cli, trusted, artifact, unsigned)
    with open(artifact, "ab") as handle:
        handle.write(b"tampered")
    assert "refused" in refused(cli, trusted, artifact, good)


@pytest.mark.parametrize("members", [
    [member("../escape", data=b"x")],
    [member("/etc/passwd", data=b"x")],
    [member("link", tarfile.SYMTYPE, link="/etc"), member("link/passwd", data=b"x")],
    [member("dev", tarfile.CHRTYPE)],
    [member("f", data=b"x"), member("h", tarfile.LNKTYPE, link="../outside")],
], ids=["dotdot", "absolute", "through-symlink", "device", "hardlink-out"])
def test_hostile_tarballs_signed_by_a_trusted_key_are_refused(cli, trusted, keys, tmp_path,
                                                             members) -> None:
    artifact = tarball(tmp_path / "evil.tar.gz", [member("ok", data=b"fine\n"), *members])
    refused(cli, trusted, artifact, keys["maintainer"].sign(artifact))
