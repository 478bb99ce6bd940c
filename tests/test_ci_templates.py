"""The GitLab CI templates in ci_templates/, run by gitlab-ci-local in throw-away projects.

Each project is a real git repository in tmp_path with an ``origin`` remote, the component
under ``templates/cvmfs-publish/template.yml`` (included as ``$CI_SERVER_FQDN/
$CI_PROJECT_PATH/cvmfs-publish@$CI_COMMIT_SHA``, as a component project tests itself) and a
build job that makes ``install/``. ``--list-json`` shows which jobs the rules start; real
runs in the local shell (``--shell-executor-no-image``) publish into a native repository in
tmp_path, checked with the toolkit's own ``ls``/``cat``/``tags``/``verify``.

The repository's master key is moved out of the key directory before any job runs: jobs
get the release key, its certificate and the master public key only (TESTING.md section 5
has gitlab-ci-local's flags and pitfalls; scripts/deps/gitlab-ci-local.sh installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from clireads import content, revision, tags
from gitkit import annotated_tag, commit, git, head, init_repo, signed_tag
from gpgkit import Signer, gpg_home, new_signer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "ci_templates"
COMPONENT = TEMPLATES / "templates" / "cvmfs-publish" / "template.yml"
CLASSIC = TEMPLATES / "cvmfs-publish.gitlab-ci.yml"
CLASSIC_PROJECT, CLASSIC_REF = "grp/cvmfs-publisher", "v0.1.0"
GCL = Path(os.environ.get("GITLAB_CI_LOCAL")
           or ROOT / ".test-tools" / "node_modules" / ".bin" / "gitlab-ci-local")
TOOLKIT = Path(sys.executable).with_name("cvmfs-publisher")
NAME = "sw.example.org"
ORIGIN = "https://gitlab.example.org/grp/pkg.git"
RELEASE, NIGHTLY = "cvmfs-publish-release", "cvmfs-publish-nightly"
BUILD = {"stage": "build",
         "script": ["mkdir -p install/bin", "cp src/tool install/bin/tool",
                    'echo "$CI_COMMIT_SHA" > install/COMMIT'],
         "artifacts": {"paths": ["install/"]}}


@dataclass(frozen=True)
class Pipeline:
    """What GitLab would set for one pipeline (gitlab-ci-local derives the rest from git)."""

    variables: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


def tag_pipeline(tag: str, protected: bool = True) -> Pipeline:
    # a real tag on HEAD is not detected, and CI_COMMIT_BRANCH stays set (TESTING.md 5)
    return Pipeline({"CI_COMMIT_TAG": tag, "CI_COMMIT_REF_NAME": tag,
                     "CI_COMMIT_REF_PROTECTED": "true" if protected else "false"},
                    ("CI_COMMIT_BRANCH",))


DEFAULT_BRANCH = Pipeline()
SCHEDULE = Pipeline({"CI_PIPELINE_SOURCE": "schedule"})
FEATURE = Pipeline({"CI_COMMIT_BRANCH": "feature", "CI_COMMIT_REF_NAME": "feature"})


def gitlab_ci_local() -> Path:
    if not os.access(GCL, os.X_OK):
        pytest.fail(f"gitlab-ci-local not found at {GCL}: run scripts/deps/gitlab-ci-local.sh "
                    "(scripts/test.sh does)")
    if shutil.which("rsync") is None:
        pytest.fail("rsync missing (gitlab-ci-local copies with it): run "
                    "scripts/deps/gitlab-ci-local.sh")
    return GCL


def run_gcl(project: Path, *args: str, pipeline: Pipeline = DEFAULT_BRANCH,
            variables: dict[str, str] | None = None, schema: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """gitlab-ci-local in ``project`` (``--cwd`` takes relative paths only: use cwd)."""
    chosen = {**pipeline.variables, **(variables or {})}
    command = [str(gitlab_ci_local()), *args]
    for key, value in chosen.items():
        command += ["--variable", f"{key}={value}"]
    for key in pipeline.unset:
        command += ["--unset-variable", key]
    if not schema:
        command.append("--no-json-schema-validation")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CI_", "GITLAB_", "GCL_", "CVMFS_"))}
    # overriding predefined variables prints a warning on stdout, which breaks --list-json
    clean["GCL_IGNORE_PREDEFINED_VARS"] = ",".join(sorted(chosen)) or "CI"
    return subprocess.run(command, cwd=project, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


def component_ci(**inputs: object) -> dict:
    given = {"repository": NAME, "project": "pkg", "artifact": "install/",
             "toolkit_command": str(TOOLKIT), **inputs}
    return {"include": [{"component": "$CI_SERVER_FQDN/$CI_PROJECT_PATH/cvmfs-publish"
                                      "@$CI_COMMIT_SHA", "inputs": given}],
            "build": BUILD}


def classic_ci(**variables: str) -> dict:
    given = {"CVMFS_PUBLISH_REPOSITORY": NAME, "CVMFS_PUBLISH_PROJECT": "pkg",
             "CVMFS_PUBLISH_ARTIFACT": "install/",
             "CVMFS_PUBLISH_TOOLKIT_COMMAND": str(TOOLKIT), **variables}
    return {"include": [{"project": CLASSIC_PROJECT, "ref": CLASSIC_REF,
                         "file": "ci_templates/cvmfs-publish.gitlab-ci.yml"}],
            "variables": given, "build": BUILD}


def make_project(path: Path, ci: dict) -> Path:
    """A committed project with an origin remote whose default branch is main.

    The classic template is included with ``include: project:``; gitlab-ci-local takes it
    from its include cache, seeded here with ci_templates' file (no network).
    """
    component = path / "templates" / "cvmfs-publish" / "template.yml"
    component.parent.mkdir(parents=True)
    shutil.copy(COMPONENT, component)
    init_repo(path, {".gitignore": ".gitlab-ci-local/\ninstall/\n", "src/tool": "v1\n",
                     ".gitlab-ci.yml": yaml.safe_dump(ci, sort_keys=False)})
    git(path, "remote", "add", "origin", ORIGIN)
    git(path, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(path, "remote", "set-head", "origin", "main")
    cached = (path / ".gitlab-ci-local" / "includes" / "gitlab.example.org" / CLASSIC_PROJECT
              / CLASSIC_REF / "ci_templates" / CLASSIC.name)
    cached.parent.mkdir(parents=True)
    shutil.copy(CLASSIC, cached)
    return path


def set_ci(project: Path, ci: dict) -> None:
    """Another consumer configuration (uncommitted, as gitlab-ci-local reads the tree)."""
    (project / ".gitlab-ci.yml").write_text(yaml.safe_dump(ci, sort_keys=False))


def listed(project: Path, pipeline: Pipeline) -> dict[str, str]:
    done = run_gcl(project, "--list-json", pipeline=pipeline)
    assert done.returncode == 0, done.stdout + done.stderr
    return {job["name"]: job["when"] for job in json.loads(done.stdout)}


# -- which jobs the rules start ----------------------------------------------------------

@pytest.fixture(scope="module")
def rules_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("rules") / "pkg", component_ci())


COMPONENT_RULES = [
    ("protected release tag", {}, tag_pipeline("1.2.3"), "on_success", "never"),
    ("unprotected release tag", {}, tag_pipeline("1.2.3", protected=False), "never", "never"),
    ("release candidate tag", {}, tag_pipeline("1.2.3rc1"), "never", "never"),
    ("tag with a prefix", {}, tag_pipeline("v1.2.3"), "never", "never"),
    ("default branch", {}, DEFAULT_BRANCH, "never", "on_success"),
    ("schedule", {}, SCHEDULE, "never", "on_success"),
    ("feature branch", {}, FEATURE, "never", "never"),
    ("manual nightlies", {"nightly_when": "manual"}, DEFAULT_BRANCH, "never", "manual"),
    ("no nightlies", {"nightly_when": "never"}, DEFAULT_BRANCH, "never", "never"),
    ("scheduled nightlies, push", {"nightly_sources": "schedule"}, DEFAULT_BRANCH,
     "never", "never"),
    ("scheduled nightlies, schedule", {"nightly_sources": "schedule"}, SCHEDULE,
     "never", "on_success"),
    ("own release pattern", {"release_pattern": r"v\d+\.\d+"}, tag_pipeline("v1.2"),
     "on_success", "never"),
    ("own release pattern, x.y.z", {"release_pattern": r"v\d+\.\d+"}, tag_pipeline("1.2.3"),
     "never", "never"),
]


@pytest.mark.parametrize(("inputs", "pipeline", "release", "nightly"),
                         [case[1:] for case in COMPONENT_RULES],
                         ids=[case[0] for case in COMPONENT_RULES])
def test_component_rules(rules_project, inputs, pipeline, release, nightly) -> None:
    set_ci(rules_project, component_ci(**inputs))
    assert listed(rules_project, pipeline) == {RELEASE: release, NIGHTLY: nightly,
                                               "build": "on_success"}


CLASSIC_RULES = [
    ("protected release tag", {}, tag_pipeline("2.0.0"), "on_success", "never"),
    ("unprotected release tag", {}, tag_pipeline("2.0.0", protected=False), "never", "never"),
    ("release candidate tag", {}, tag_pipeline("2.0.0rc1"), "never", "never"),
    ("default branch", {}, DEFAULT_BRANCH, "never", "on_success"),
    ("feature branch", {}, FEATURE, "never", "never"),
    ("no nightlies", {"CVMFS_PUBLISH_NIGHTLY": "never"}, DEFAULT_BRANCH, "never", "never"),
    ("scheduled nightlies, push", {"CVMFS_PUBLISH_NIGHTLY": "schedule"}, DEFAULT_BRANCH,
     "never", "never"),
    ("scheduled nightlies, schedule", {"CVMFS_PUBLISH_NIGHTLY": "schedule"}, SCHEDULE,
     "never", "on_success"),
]


@pytest.mark.parametrize(("variables", "pipeline", "release", "nightly"),
                         [case[1:] for case in CLASSIC_RULES],
                         ids=[case[0] for case in CLASSIC_RULES])
def test_classic_template_rules(rules_project, variables, pipeline, release,
                                nightly) -> None:
    set_ci(rules_project, classic_ci(**variables))
    assert listed(rules_project, pipeline) == {RELEASE: release, NIGHTLY: nightly,
                                               "build": "on_success"}


def preview(project: Path) -> dict:
    done = run_gcl(project, "--preview", schema=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return yaml.safe_load(done.stdout)


def test_jobs_never_overlap_and_deploy_to_an_environment(rules_project) -> None:
    """Both templates, after includes, inputs and extends (and GitLab's JSON schema)."""
    set_ci(rules_project, {"stages": ["build", "publish"], **component_ci(
        runner_tags=["cvmfs", "stratum0"], stage="publish")})
    jobs = preview(rules_project)
    for name, environment in ((RELEASE, f"cvmfs/{NAME}"), (NIGHTLY, f"cvmfs/{NAME}/nightly")):
        job = jobs[name]
        assert job["resource_group"] == f"cvmfs-{NAME}"
        assert job["interruptible"] is False
        assert job["environment"]["name"] == environment
        assert job["tags"] == ["cvmfs", "stratum0"] and job["stage"] == "publish"
        assert job["variables"]["CVMFS_PUBLISH_REPOSITORY"] == NAME
        assert "workflow" not in jobs  # rules sit on the jobs: a component has no workflow
    set_ci(rules_project, classic_ci())
    jobs = preview(rules_project)
    assert jobs[RELEASE]["resource_group"] == "cvmfs-$CVMFS_PUBLISH_REPOSITORY"
    assert jobs[RELEASE]["environment"]["name"] == "cvmfs/$CVMFS_PUBLISH_REPOSITORY"
    assert jobs[NIGHTLY]["interruptible"] is False and jobs[NIGHTLY]["tags"] == ["cvmfs-publisher"]


def test_both_templates_run_the_same_shell_code() -> None:
    _spec, component = yaml.safe_load_all(COMPONENT.read_text())
    classic = yaml.safe_load(CLASSIC.read_text())
    ours, theirs = component[".cvmfs-publish"], classic[".cvmfs-publish"]
    assert ours["before_script"][0] == \
        "CVMFS_PUBLISH_REQUIRE_SIGNED_TAG=$[[ inputs.require_signed_tag ]]"
    assert ours["before_script"][1:] == theirs["before_script"]
    assert ours["script"] == theirs["script"] and ours["after_script"] == theirs["after_script"]
    for text in (COMPONENT.read_text(), CLASSIC.read_text()):
        assert "set -x" not in text and "masterkey" not in text


# -- real pipelines -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def maintainer() -> Iterator[Signer]:
    with gpg_home() as home:
        yield new_signer(home, "Release Manager")


@dataclass
class Site:
    """A native repository whose master key is with the admin, not in the key directory."""

    repo: str
    keys: Path
    file_variables: dict[str, str]  # what GitLab gives a job: paths of files

    def keys_mode(self, **extra: str) -> dict[str, str]:
        return {**self.file_variables, **extra}


@pytest.fixture
def site(cli, repo: str, tmp_path: Path) -> Site:
    keys = tmp_path / "home" / "config" / "cvmfs-publisher" / "keys"
    vault = tmp_path / "admin-vault"
    vault.mkdir()
    shutil.move(keys / f"{repo}.masterkey", vault / f"{repo}.masterkey")
    assert sorted(p.name for p in keys.iterdir()) == [f"{repo}.crt", f"{repo}.key",
                                                      f"{repo}.pub"]
    files = tmp_path / "gitlab-file-variables"
    files.mkdir()
    variables = {}
    for suffix in ("key", "crt", "pub"):
        target = files / f"CVMFS_REPOSITORY_{suffix.upper()}"
        shutil.copy(keys / f"{repo}.{suffix}", target)
        target.chmod(0o644)  # the job's copy of the key must be private all the same
        variables[target.name] = str(target)
    return Site(repo, keys, variables)





def verified(cli, repo: str) -> None:
    result = cli("verify", "--repo", repo)
    assert result.code == 0, result.out + result.err


def only_release_keys(output: str, project: Path) -> None:
    """The job's key directory held exactly the release key, certificate and public key."""
    line = next(line for line in output.splitlines() if "key directory for" in line)
    held = line.split("holds:", 1)[1].split()
    assert held == [f"{NAME}.crt", f"{NAME}.key", f"{NAME}.pub"], line
    assert "PRIVATE KEY" not in output
    assert not (project.parent / f"{project.name}.tmp" / "cvmfs-publish").exists(), \
        "after_script left the job's keys behind"


def ran(done: subprocess.CompletedProcess) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_tag_pipeline_publishes_the_release_with_only_the_release_key(cli, site,
                                                                      tmp_path) -> None:
    project = make_project(tmp_path / "pkg", component_ci(
        require_signed_tag=False, storage=str(tmp_path / "stratum0")))
    sha = head(project)
    # the job must not find the admin's configuration: only what the variables give it
    empty = tmp_path / "runner-config"
    empty.mkdir()
    settings = tmp_path / "gitlab-file-variables" / "CVMFS_REPOSITORY_SETTINGS"
    settings.write_text('owner: "4242:4343"\ncompression_level: 9\n')
    output = ran(run_gcl(project, "--shell-executor-no-image", pipeline=tag_pipeline("1.2.3"),
                         variables=site.keys_mode(CVMFS_REPOSITORY_SETTINGS=str(settings)),
                         env={"XDG_CONFIG_HOME": str(empty)}))
    assert "release tag 1.2.3 -> /sw/pkg/1.2.3" in output, output
    only_release_keys(output, project)
    assert content(cli, NAME, "/sw/pkg/1.2.3/bin/tool") == "v1\n"
    listing = cli("ls", "--repo", NAME, "--json", "/sw/pkg/1.2.3/bin")
    assert [(e["uid"], e["gid"]) for e in json.loads(listing.out)] == [(4242, 4343)]
    assert content(cli, NAME, "/sw/pkg/1.2.3/COMMIT") == f"{sha}\n"
    description = tags(cli, NAME)["pkg-1.2.3"]["description"]
    for part in (f"git={sha}", "ref=1.2.3", "pipeline=https://gitlab.example.org/grp/pkg/"):
        assert part in description, description
    verified(cli, NAME)
    assert not list(empty.iterdir()), "the job wrote into the runner's own configuration"


def test_default_branch_publishes_the_nightly_and_other_branches_nothing(cli, site,
                                                                         tmp_path) -> None:
    """A runner on the publisher host: its own configuration, a key directory without
    the master key, no key variables."""
    project = make_project(tmp_path / "pkg", component_ci())
    output = ran(run_gcl(project, "--shell-executor-no-image"))
    assert "default branch main: nightly -> /sw/pkg/nightly" in output, output
    assert content(cli, NAME, "/sw/pkg/nightly/bin/tool") == "v1\n"
    assert content(cli, NAME, "/sw/pkg/nightly/COMMIT") == f"{head(project)}\n"
    assert "pkg-nightly" not in tags(cli, NAME)  # nightlies are replaced, not tagged
    before = revision(cli, NAME)

    git(project, "checkout", "-q", "-b", "feature")
    (project / "src" / "tool").write_text("v2\n")
    commit(project, "v2")
    output = ran(run_gcl(project, "--shell-executor-no-image"))
    assert "PASS  build" in output and "cvmfs-publish" not in output, output
    assert revision(cli, NAME) == before
    assert content(cli, NAME, "/sw/pkg/nightly/bin/tool") == "v1\n"
    verified(cli, NAME)


def test_release_tags_must_be_signed_by_a_trusted_key(cli, site, maintainer,
                                                      tmp_path) -> None:
    project = make_project(tmp_path / "pkg", component_ci(
        storage=str(tmp_path / "stratum0")))  # require_signed_tag: true by default
    trusted = maintainer.public(tmp_path / "gitlab-file-variables" / "CVMFS_TRUSTED_KEYS")
    variables = site.keys_mode(CVMFS_TRUSTED_KEYS=str(trusted))
    before = revision(cli, NAME)

    annotated_tag(project, "1.2.3")
    done = run_gcl(project, "--shell-executor-no-image", pipeline=tag_pipeline("1.2.3"),
                   variables=variables)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "tag 1.2.3 is not signed by a trusted key" in output, output
    assert f"FAIL  {RELEASE}" in output, output
    assert revision(cli, NAME) == before
    assert cli("ls", "--repo", NAME, "/sw/pkg/1.2.3").code != 0

    git(project, "tag", "-d", "1.2.3")
    signed_tag(project, "1.2.3", maintainer.home, maintainer.fingerprint)
    output = ran(run_gcl(project, "--shell-executor-no-image", pipeline=tag_pipeline("1.2.3"),
                         variables=variables))
    only_release_keys(output, project)
    assert content(cli, NAME, "/sw/pkg/1.2.3/bin/tool") == "v1\n"
    description = tags(cli, NAME)["pkg-1.2.3"]["description"]
    assert f"signer={maintainer.fingerprint}" in description, description
    assert f"git={head(project)}" in description, description
    verified(cli, NAME)


def test_classic_template_publishes_a_release(cli, site, tmp_path) -> None:
    project = make_project(tmp_path / "pkg", classic_ci(
        CVMFS_PUBLISH_REQUIRE_SIGNED_TAG="false",
        CVMFS_PUBLISH_STORAGE=str(tmp_path / "stratum0")))
    output = ran(run_gcl(project, "--shell-executor-no-image", pipeline=tag_pipeline("2.0.0"),
                         variables=site.keys_mode(), schema=True))
    assert "release tag 2.0.0 -> /sw/pkg/2.0.0" in output, output
    only_release_keys(output, project)
    assert content(cli, NAME, "/sw/pkg/2.0.0/bin/tool") == "v1\n"
    assert f"git={head(project)}" in tags(cli, NAME)["pkg-2.0.0"]["description"]
    verified(cli, NAME)
