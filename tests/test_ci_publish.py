"""``ci publish``: GitLab's variables decide what is published where; tags can be required
to be signed by a trusted key; a CI job needs no master key and prints no secret."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clireads import tags
from gpgkit import Signer, gpg_home, new_signer

from cvmfs_publisher.ci import CiEnvironment, CiPublish, CiRules, plan
from cvmfs_publisher.config import Config
from cvmfs_publisher.errors import UsageError
from cvmfs_publisher.repositories import open_publisher, trust_store

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def keys() -> Iterator[dict[str, Signer]]:
    with gpg_home() as main, gpg_home() as other:
        yield {"maintainer": new_signer(main, "Release Manager"),
               "stranger": new_signer(other, "Someone Else")}


@pytest.fixture
def install(tmp_path: Path) -> Path:
    root = tmp_path / "install"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("built\n")
    return root


def gitlab(monkeypatch, *, tag: str = "", branch: str = "", protected: bool = True,
           sha: str = SHA) -> None:
    values = {"CI_COMMIT_TAG": tag, "CI_COMMIT_BRANCH": branch, "CI_DEFAULT_BRANCH": "main",
              "CI_COMMIT_SHA": sha, "CI_PROJECT_PATH": "grp/pkg",
              "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
              "CI_PIPELINE_URL": "https://gitlab.example.org/grp/pkg/-/pipelines/7"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def ci(cli, repo: str, install: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("ci", "publish", install, "--repo", repo, "--project", "pkg", *extra)



@pytest.mark.parametrize("env,kind,path", [
    (CiEnvironment(tag="1.2.3", ref_protected=True), "release", "/sw/pkg/1.2.3"),
    (CiEnvironment(tag="1.2.3rc1", ref_protected=True), None, ""),
    (CiEnvironment(branch="main", default_branch="main"), "nightly", "/sw/pkg/nightly"),
    (CiEnvironment(branch="feature", default_branch="main"), None, ""),
    (CiEnvironment(), None, ""),
])
def test_plan(env: CiEnvironment, kind: str | None, path: str) -> None:
    chosen = plan(env, CiRules("pkg"))
    assert (chosen.kind, chosen.path) == (kind, path)
    assert chosen.reason


def test_unprotected_release_tag_is_refused() -> None:
    with pytest.raises(UsageError, match="not protected"):
        plan(CiEnvironment(tag="1.2.3"), CiRules("pkg"))


def test_tag_pipeline_publishes_the_release(cli, repo, install, monkeypatch) -> None:
    gitlab(monkeypatch, tag="1.2.3")
    result = ci(cli, repo, install)
    assert result.code == 0, result.err
    assert cli("cat", "/sw/pkg/1.2.3/bin/tool", "--repo", repo).out == "built\n"
    description = tags(cli, repo)["pkg-1.2.3"]["description"]
    assert f"git={SHA}" in description and "pipelines/7" in description
    again = ci(cli, repo, install)
    assert again.code != 0 and "never overwritten" in again.err
    assert ci(cli, repo, install, "--force", "-m", "rebuilt").code != 0  # the tag exists


def test_branch_pipelines(cli, repo, install, monkeypatch) -> None:
    gitlab(monkeypatch, branch="main")
    assert ci(cli, repo, install).code == 0
    assert cli("cat", "/sw/pkg/nightly/bin/tool", "--repo", repo).out == "built\n"
    gitlab(monkeypatch, branch="feature")
    before = tags(cli, repo)["trunk"]["revision"]
    result = ci(cli, repo, install, "--json")
    assert result.code == 0 and json.loads(result.out)["published"] is False
    assert "not the default branch" in json.loads(result.out)["reason"]
    assert tags(cli, repo)["trunk"]["revision"] == before


def test_dated_nightlies_are_pruned_in_the_same_revision(repo, install, monkeypatch) -> None:
    publisher = open_publisher(Config.load().get(repo))
    rules = CiRules("pkg", dated=True, keep_nightlies=2)
    env = CiEnvironment(branch="main", default_branch="main", sha=SHA)
    job = CiPublish(publisher, trust_store(Config.load().get(repo)), env, rules)
    for day in (1, 2, 3):
        job.run(install, plan(env, rules, today=dt.date(2026, 11, day)))
    with publisher.view() as view:
        names = [c.name for c in view.listdir("/sw/pkg")]
    assert names == ["nightly-2026-11-02", "nightly-2026-11-03"]


def git(checkout: Path, *args: str, home: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "d@example.org",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "d@example.org"}
    if home:
        env["GNUPGHOME"] = home
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                          text=True, check=True, env=env).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, keys) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "src.txt").write_text("code\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    maintainer, stranger = keys["maintainer"], keys["stranger"]
    git(root, "-c", f"user.signingkey={maintainer.fingerprint}", "tag", "-s", "1.0.0", "-m",
        "signed", home=maintainer.home)
    git(root, "-c", f"user.signingkey={stranger.fingerprint}", "tag", "-s", "1.0.1", "-m",
        "by a stranger", home=stranger.home)
    git(root, "tag", "-a", "1.0.2", "-m", "annotated, unsigned")
    git(root, "tag", "1.0.3")
    (root / "src.txt").write_text("later\n")
    git(root, "commit", "-q", "-am", "second")
    git(root, "-c", f"user.signingkey={maintainer.fingerprint}", "tag", "-s", "1.0.4", "-m",
        "signed, another commit", home=maintainer.home)
    return root


@pytest.mark.parametrize("tag,ok,why", [
    ("1.0.0", True, ""), ("1.0.1", False, "not signed by a trusted key"),
    ("1.0.2", False, "no signature"), ("1.0.3", False, "non-tag object"),
    ("1.0.4", False, "points at"),
])
def test_require_signed_tag(cli, repo, install, monkeypatch, keys, checkout, tmp_path,
                            tag, ok, why) -> None:
    key = keys["maintainer"].public(tmp_path / "maint.asc")
    assert cli("trust", "add", key, "--path", "/sw/pkg/**", "--repo", repo).code == 0
    first = git(checkout, "rev-list", "-n1", "1.0.0")
    gitlab(monkeypatch, tag=tag, sha=first)
    result = ci(cli, repo, install, "--require-signed-tag", "--git-dir", checkout)
    assert (result.code == 0) == ok, result.err
    assert why in result.err
    assert ("pkg-" + tag in tags(cli, repo)) == ok


def test_job_needs_no_master_key_and_prints_no_secret(cli, repo, install, monkeypatch) -> None:
    keys_dir = Config.load().get(repo).keys
    master = keys_dir / f"{repo}.masterkey"
    master.rename(keys_dir.parent / "offline.masterkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    gitlab(monkeypatch, tag="2.0.0")
    secret = (keys_dir / f"{repo}.key").read_text().splitlines()[1]
    result = ci(cli, repo, install, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["revision"] >= 1
    failed = ci(cli, repo, install, "--json")  # exists now: an error path
    assert failed.code != 0
    for text in (result.out, result.err, failed.out, failed.err):
        assert secret not in text and "super-secret-value" not in text
