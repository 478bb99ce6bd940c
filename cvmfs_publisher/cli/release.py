"""Signed releases: the trust policy, ``release`` of a signed tarball, CI and git hooks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from ..ci import CiEnvironment, CiPlan, CiPublish, CiRules, plan, ref_updates
from ..errors import SourceError
from ..releases.artifacts import release_artifact
from ..releases.provenance import Provenance
from ..repositories import trust_store
from .common import State, configured_repo_option, json_option, pass_state
from .output import PublishProgress, emit_json, stdout
from .publish import report

_repo_option = configured_repo_option


@click.group()
def trust() -> None:
    """Which GPG keys may publish releases under which paths of a repository."""


@trust.command("add")
@click.argument("key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--path", "paths", multiple=True, required=True, metavar="GLOB",
              help="Repository paths the key may publish under, e.g. '/sw/pkg/**' "
                   "(repeatable).")
@_repo_option
@json_option
@pass_state
def trust_add(state: State, key_file: Path, paths: tuple[str, ...], repo: str,
              as_json: bool) -> None:
    """Trust the public key(s) in KEY_FILE (armored) for --path; expired or revoked refused."""
    added = trust_store(state.configured(repo)).add(key_file, list(paths))
    if as_json:
        emit_json([asdict(k) for k in added])
        return
    for key in added:
        stdout.print(f"trusted {key.fingerprint} ({', '.join(key.uids)}) for "
                     f"{', '.join(key.paths)}")


@trust.command("list")
@_repo_option
@json_option
@pass_state
def trust_list(state: State, repo: str, as_json: bool) -> None:
    """Trusted keys and the paths each may publish under."""
    keys = trust_store(state.configured(repo)).keys()
    if as_json:
        emit_json([asdict(k) for k in keys])
        return
    for key in keys:
        stdout.print(f"{key.fingerprint}  {', '.join(key.paths)}  {', '.join(key.uids)}")


@trust.command("rm")
@click.argument("fingerprint")
@_repo_option
@pass_state
def trust_rm(state: State, fingerprint: str, repo: str) -> None:
    """Stop trusting a key (by full fingerprint, or at least its last 16 hex digits)."""
    removed = trust_store(state.configured(repo)).remove(fingerprint)
    stdout.print(f"no longer trusted: {removed.fingerprint}")


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sig", "signature", required=True, type=click.Path(path_type=Path,
              dir_okay=False), help="Detached OpenPGP signature of ARTIFACT (.asc or .sig).")
@click.option("--path", "-p", "target", required=True, metavar="/REPO/PATH",
              help="Where the release goes, e.g. /sw/pkg/1.2.3; never overwritten.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 of ARTIFACT.")
@click.option("--tag", "-t", metavar="NAME", help="Tag [default: pkg-1.2.3 from --path].")
@click.option("-m", "--message", default="", help="Description stored with the tag.")
@click.option("--source", metavar="URL", help="Where ARTIFACT came from (provenance).")
@click.option("--force", is_flag=True, help="Replace an existing release path.")
@click.option("--wait", is_flag=True, help="Wait for another publisher.")
@_repo_option
@json_option
@pass_state
def release(state: State, artifact: Path, signature: Path, target: str, sha256: str | None,
            tag: str | None, message: str, source: str | None, force: bool, wait: bool,
            repo: str, as_json: bool) -> None:
    """Publish tarball ARTIFACT at --path if signed by a key trusted for that path."""
    configured = state.configured(repo)
    with PublishProgress(None, None, not as_json) as bar:
        done = release_artifact(state.publisher(repo), trust_store(configured), artifact,
                                signature, target, sha256=sha256, tag=tag, message=message,
                                provenance=Provenance(source=source), force=force, wait=wait,
                                progress=bar)
    if not as_json:
        stdout.print(f"verified: signed by {done.signer}, sha256 {done.sha256}")
    report(done.result, repo, as_json)


@click.group()
def ci() -> None:
    """Publishing from CI jobs and git hooks (release tags and nightlies)."""


def _rules_options(func):  # type: ignore[no-untyped-def]
    for decorator in reversed([
        click.option("--project", required=True, help="Project name: /sw/<project>/..."),
        click.option("--release-pattern", default=r"\d+\.\d+\.\d+", show_default=True,
                     help="Tags that are releases (a full-match regular expression)."),
        click.option("--path-template", default="/sw/{project}/{version}",
                     show_default=True, help="Where a version goes."),
        click.option("--no-nightly", is_flag=True, help="Publish nothing from the default "
                     "branch."),
        click.option("--nightly-name", default="nightly", show_default=True,
                     help="Version name of nightlies."),
        click.option("--dated", is_flag=True, help="Dated nightlies: nightly-YYYY-MM-DD."),
        click.option("--keep-nightlies", type=click.IntRange(1), metavar="N",
                     help="With --dated: remove all but the newest N in the same revision."),
        click.option("--require-signed-tag", is_flag=True, help="A release tag must be an "
                     "annotated tag signed by a key trusted for its path."),
        click.option("--force", is_flag=True, help="Replace an existing release path."),
        click.option("-m", "--message", default="", help="Description stored with the tag."),
    ]):
        func = decorator(func)
    return func


def _rules(project: str, release_pattern: str, path_template: str, no_nightly: bool,
           nightly_name: str, dated: bool, keep_nightlies: int | None,
           allow_unprotected: bool = False) -> CiRules:
    return CiRules(project, release_pattern, path_template, not no_nightly, nightly_name,
                   dated, keep_nightlies, allow_unprotected)


@ci.command("publish")
@click.argument("artifact", type=click.Path(path_type=Path))
@_rules_options
@click.option("--git-dir", type=click.Path(path_type=Path, file_okay=False), default=".",
              show_default=True, help="The checkout holding the tag (for --require-signed-tag).")
@_repo_option
@json_option
@pass_state
def ci_publish(state: State, artifact: Path, project: str, release_pattern: str,
               path_template: str, no_nightly: bool, nightly_name: str, dated: bool,
               keep_nightlies: int | None, require_signed_tag: bool, force: bool, message: str,
               git_dir: Path, repo: str, as_json: bool) -> None:
    """Publish ARTIFACT (directory or tarball) as GitLab's CI variables say.

    A tag matching --release-pattern publishes /sw/PROJECT/TAG (protected tags only);
    the default branch publishes /sw/PROJECT/nightly; anything else publishes nothing.
    """
    env = CiEnvironment.from_environ(os.environ)
    rules = _rules(project, release_pattern, path_template, no_nightly, nightly_name, dated,
                   keep_nightlies)
    chosen = plan(env, rules)
    job = CiPublish(state.publisher(repo), trust_store(state.configured(repo)), env, rules,
                    git_dir, require_signed_tag, force, message)
    _run(job, artifact, chosen, as_json)


def _run(job: CiPublish, artifact: Path, chosen: CiPlan, as_json: bool) -> None:
    if chosen.kind is None:
        if as_json:
            emit_json({"published": False, "reason": chosen.reason})
        else:
            stdout.print(f"nothing published: {chosen.reason}")
        return
    if not as_json:
        stdout.print(f"{chosen.reason} -> {chosen.path}")
    with PublishProgress(None, None, not as_json) as bar:
        result = job.run(artifact, chosen, bar)
    report(result, job.publisher.name, as_json)


@ci.command("post-receive")
@_rules_options
@click.option("--subdir", default="", metavar="DIR", help="Publish only this directory of "
              "the pushed tree.")
@_repo_option
@pass_state
def post_receive(state: State, project: str, release_pattern: str, path_template: str,
                 no_nightly: bool, nightly_name: str, dated: bool, keep_nightlies: int | None,
                 require_signed_tag: bool, force: bool, message: str, subdir: str,
                 repo: str) -> None:
    """For a bare repository's hooks/post-receive: publish pushed release tags and the
    default branch, as 'ci publish' would (reads 'old new ref' lines on stdin)."""
    git_dir = Path(os.environ.get("GIT_DIR", ".")).resolve()
    rules = _rules(project, release_pattern, path_template, no_nightly, nightly_name, dated,
                   keep_nightlies, allow_unprotected=True)
    head = _git(git_dir, "symbolic-ref", "--short", "HEAD").strip()
    publisher, store = state.publisher(repo), trust_store(state.configured(repo))
    for _old, new, ref in ref_updates(sys.stdin):
        if set(new) == {"0"}:
            continue  # a deleted ref publishes nothing
        env = _hook_environment(ref, _commit_of(git_dir, new), head)
        job = CiPublish(publisher, store, env, rules, git_dir, require_signed_tag, force,
                        message)
        chosen = plan(env, rules)
        with tempfile.TemporaryDirectory(prefix="cvmfs-push-") as tmp:
            archive = Path(tmp) / "push.tar"
            if chosen.kind is not None:
                _export(git_dir, new, subdir, archive)
            _run(job, archive, chosen, False)


def _hook_environment(ref: str, sha: str, head: str) -> CiEnvironment:
    kind, _, name = ref.removeprefix("refs/").partition("/")
    if kind == "tags":
        return CiEnvironment(tag=name, sha=sha, default_branch=head, ref_protected=True)
    return CiEnvironment(branch=name if kind == "heads" else "", sha=sha, default_branch=head)


def _commit_of(git_dir: Path, sha: str) -> str:
    """The commit a pushed annotated tag object points at (a commit's sha is itself)."""
    try:
        return _git(git_dir, "rev-parse", "--verify", f"{sha}^{{commit}}").strip()
    except SourceError:
        return sha


def _git(git_dir: Path, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SourceError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _export(git_dir: Path, sha: str, subdir: str, archive: Path) -> None:
    """The pushed tree as a tar file, read later by the safe tarball producer."""
    tree = f"{sha}:{subdir.strip('/')}" if subdir.strip("/") else sha
    _git(git_dir, "archive", "--format=tar", f"--output={archive}", tree)


COMMANDS = (trust, release, ci)
