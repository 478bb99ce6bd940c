"""ci_templates/post-receive on a real bare repository, exercised by real pushes.

The hook is installed as a self-hosted git server would have it, configured with
``git config cvmfs-publish.*`` for a native repository in tmp_path; pushing the default
branch publishes the nightly, a release tag publishes the release, anything else nothing.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clireads import content, revision, tags
from gitkit import annotated_tag, commit, git, head, signed_tag, write_tree
from gpgkit import Signer, gpg_home, new_signer

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "ci_templates" / "post-receive"
TOOLKIT = Path(sys.executable).with_name("cvmfs-publisher")


@pytest.fixture(scope="module")
def maintainer() -> Iterator[Signer]:
    with gpg_home() as home:
        yield new_signer(home, "Release Manager")


@pytest.fixture
def server(repo: str, tmp_path: Path) -> Path:
    """A bare repository ``pkg.git`` with the hook, publishing ``install/`` of pushes."""
    assert TOOLKIT.is_file(), f"{TOOLKIT} missing: install the package into the venv"
    bare = tmp_path / "srv" / "pkg.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    shutil.copy2(HOOK, bare / "hooks" / "post-receive")
    git(bare, "config", "cvmfs-publish.repository", repo)
    git(bare, "config", "cvmfs-publish.command", str(TOOLKIT))
    git(bare, "config", "cvmfs-publish.subdir", "install")
    return bare


@pytest.fixture
def work(server: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(clone))
    write_tree(clone, {"README": "not published\n", "install/bin/tool": "v1\n"})
    commit(clone, "v1")
    return clone


def push(clone: Path, *refs: str) -> str:
    """What the pusher sees (the hook's output comes back as 'remote:' lines)."""
    done = git(clone, "push", "-q", "origin", *refs)
    return done.stdout + done.stderr





def test_hook_is_executable() -> None:
    assert HOOK.stat().st_mode & 0o111 == 0o111, "ci_templates/post-receive must be chmod +x"


def test_pushes_publish_nightly_and_releases_and_nothing_else(cli, repo, server, work) -> None:
    git(server, "config", "cvmfs-publish.requireSignedTag", "false")
    said = push(work, "main")
    assert "default branch main: nightly -> /sw/pkg/nightly" in said, said
    assert content(cli, repo, "/sw/pkg/nightly/bin/tool") == "v1\n"
    listed = cli("ls", "--repo", repo, "/sw/pkg/nightly")
    assert listed.code == 0 and "README" not in listed.out and "bin" in listed.out, listed

    write_tree(work, {"install/bin/tool": "v2\n"})
    sha = commit(work, "v2")
    push(work, "main")
    assert content(cli, repo, "/sw/pkg/nightly/bin/tool") == "v2\n"

    annotated_tag(work, "1.2.3")
    said = push(work, "1.2.3")
    assert "release tag 1.2.3 -> /sw/pkg/1.2.3" in said, said
    assert content(cli, repo, "/sw/pkg/1.2.3/bin/tool") == "v2\n"
    description = tags(cli, repo)["pkg-1.2.3"]["description"]
    # provenance names the commit published, not the annotated tag object
    assert f"git={sha}" in description and "ref=1.2.3" in description, description
    before = revision(cli, repo)

    git(work, "checkout", "-q", "-b", "feature")
    write_tree(work, {"install/bin/tool": "v3\n"})
    commit(work, "v3")
    annotated_tag(work, "1.2.4rc1")
    said = push(work, "feature", "1.2.4rc1")
    assert "nothing published: branch feature is not the default branch" in said, said
    assert "nothing published: tag 1.2.4rc1 does not match" in said, said
    assert revision(cli, repo) == before
    assert cli("ls", "--repo", repo, "/sw/pkg/1.2.4rc1").code != 0
    assert content(cli, repo, "/sw/pkg/nightly/bin/tool") == "v2\n"
    verified = cli("verify", "--repo", repo)
    assert verified.code == 0, verified.out + verified.err


def test_release_tags_must_be_signed_by_a_trusted_key(cli, repo, server, work, maintainer,
                                                      tmp_path) -> None:
    """The hook's default: only annotated tags signed by a key trusted for the path."""
    key = maintainer.public(tmp_path / "maintainer.asc")
    assert cli("trust", "add", key, "--path", "/sw/pkg/**", "--repo", repo).code == 0
    annotated_tag(work, "2.0.0")
    said = push(work, "main", "2.0.0")
    assert "tag 2.0.0 is not signed by a trusted key" in said, said
    assert cli("ls", "--repo", repo, "/sw/pkg/2.0.0").code != 0
    assert "pkg-2.0.0" not in tags(cli, repo)

    signed_tag(work, "2.0.1", maintainer.home, maintainer.fingerprint)
    said = push(work, "2.0.1")
    assert "release tag 2.0.1 -> /sw/pkg/2.0.1" in said and "published" in said, said
    assert content(cli, repo, "/sw/pkg/2.0.1/bin/tool") == "v1\n"
    description = tags(cli, repo)["pkg-2.0.1"]["description"]
    assert f"signer={maintainer.fingerprint}" in description, description
    assert f"git={head(work)}" in description, description
