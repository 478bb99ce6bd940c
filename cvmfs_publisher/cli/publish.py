"""Changing content: publish and rm, each one signed revision."""

from __future__ import annotations

from pathlib import Path

import click

from ..cvmfs.names import target_path
from ..publisher import CommitResult
from ..publisher import publish as run_publish
from ..sources import open_source
from .common import State, json_option, pass_state
from .output import PublishProgress, emit_json, human_bytes, stderr, stdout


def _common(func):  # type: ignore[no-untyped-def]
    for decorator in reversed([
        click.option("--repo", "-r", required=True, metavar="NAME", help="Configured repository."),
        click.option("--tag", "-t", metavar="NAME", help="Name this revision (e.g. pkg-1.0)."),
        click.option("-m", "--message", default="", help="Description stored with the tag."),
        click.option("--wait", is_flag=True, help="Wait for another publisher instead of "
                     "failing with 'busy'."),
        json_option,
    ]):
        func = decorator(func)
    return func


def _checked_target(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a bad --path before the source is read or the repository locked."""
    target_path(value)
    return value


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--path", "-p", "target", required=True, metavar="/REPO/PATH",
              callback=_checked_target,
              help="Where SRC goes; what was there is replaced, the rest is kept.")
@click.option("--owner", metavar="UID:GID", help="Override the owner of every entry.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_common
@pass_state
def publish(state: State, src: Path, target: str, owner: str | None, no_progress: bool,
            repo: str, tag: str | None, message: str, wait: bool, as_json: bool) -> None:
    """Publish directory, file or tarball SRC (.tar, .tar.gz, .tar.zst) at --path."""
    publisher = state.publisher(repo, owner=owner)
    entries, estimate = open_source(src)
    with PublishProgress(estimate.files, estimate.bytes, not (no_progress or as_json)) as bar:
        result = run_publish(publisher, [(target, entries)], tag=tag, message=message,
                             wait=wait, progress=bar)
    report(result, repo, as_json)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="/REPO/PATH...")
@_common
@pass_state
def rm(state: State, paths: tuple[str, ...], repo: str, tag: str | None, message: str,
       wait: bool, as_json: bool) -> None:
    """Remove paths (and everything below them) in one new revision."""
    result = run_publish(state.publisher(repo), [(p, None) for p in paths], tag=tag,
                         message=message, wait=wait)
    report(result, repo, as_json)


def report(result: CommitResult, repo: str, as_json: bool) -> None:
    if as_json:
        emit_json({"repository": repo, **vars(result)})
        return
    for warning in result.warnings:
        stderr.print(f"warning: {warning}", markup=False)
    tag = f" tagged {result.tag}" if result.tag else ""
    measured = result.objects_written + result.objects_skipped + result.objects_reused
    stored = (f" ({result.objects_written} new objects, {human_bytes(result.bytes_written)} "
              "stored)") if measured else ""  # backends that cannot count objects say nothing
    stdout.print(f"published revision {result.revision} of {repo}{tag}: {result.files} files, "
                 f"{human_bytes(result.bytes_in)}{stored} in {result.seconds:.1f} s")


COMMANDS = (publish, rm)
