"""Changing content: publish and rm, each one signed revision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..cvmfs.names import display, normalize_path, target_path
from .common import (
    State,
    compression_option,
    configured_repo_option,
    json_option,
    pass_state,
)
from .output import PublishProgress, emit_json, human_bytes, stderr, stdout

if TYPE_CHECKING:
    from ..engine.diff import Change as TreeChange
    from ..publisher import CommitResult, Publisher, TreeView
    from .changeset import Change


def _common(func):  # type: ignore[no-untyped-def]
    for decorator in reversed([
        configured_repo_option,
        click.option("--tag", "-t", metavar="NAME", help="Name this revision (e.g. pkg-1.0)."),
        click.option("-m", "--message", default="", help="Description stored with the tag."),
        click.option("--wait", is_flag=True, help="Wait for another publisher instead of "
                     "failing with 'busy'."),
        json_option,
    ]):
        func = decorator(func)
    return func


def _checked_target(_ctx: click.Context, _param: click.Parameter, value: str | None
                    ) -> str | None:
    """Refuse a bad --path before the source is read or the repository locked."""
    if value is not None:
        target_path(value)
    return value


@click.command()
@click.argument("src", required=False, type=click.Path(path_type=Path))
@click.option("--path", "-p", "target", metavar="/REPO/PATH", callback=_checked_target,
              help="Where SRC goes; what was there is replaced, the rest is kept.")
@click.option("--add", "adds", multiple=True, metavar="SRC:/REPO/PATH",
              help="Also publish SRC at /REPO/PATH, in the same revision (repeatable).")
@click.option("--remove", "removes", multiple=True, metavar="/REPO/PATH",
              help="Also remove /REPO/PATH and everything below it (repeatable).")
@click.option("--changes", "changes_file", metavar="FILE",
              help="Changes listed in FILE, one per line: 'add SRC /REPO/PATH' or "
                   "'remove /REPO/PATH' (- reads standard input).")
@click.option("--dry-run", is_flag=True, help="Do everything but write: show what would be "
              "added, changed and removed, and the bytes that would be stored.")
@click.option("--force", is_flag=True, help="Allow publishing at / (replaces the whole "
              "repository).")
@click.option("--owner", metavar="UID:GID", help="Override the owner of every entry.")
@compression_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_common
@pass_state
def publish(state: State, src: Path | None, target: str | None, adds: tuple[str, ...],
            removes: tuple[str, ...], changes_file: str | None, dry_run: bool, force: bool,
            owner: str | None, compression: str | None, no_progress: bool, repo: str,
            tag: str | None, message: str, wait: bool, as_json: bool) -> None:
    """Publish directory, file or tarball SRC (.tar, .tar.gz, .tar.zst) at --path, or several
    changes (--add, --remove, --changes) in one revision.

    Everything outside the changed paths is kept; the revision is all or nothing.
    """
    from ..repositories import changes_of, open_dry_run
    from .changeset import collect

    changes = collect(src, target, adds, removes, changes_file, force=force)
    settings = {"owner": owner, "compression": compression}
    if not dry_run:
        result = _publish(state.publisher(repo, **settings), changes, tag, message, wait,
                          not (no_progress or as_json))
        report(result, repo, as_json)
        return
    with open_dry_run(state.configured(repo), **settings) as publisher:
        result = _publish(publisher, changes, tag, message, wait, not (no_progress or as_json))
        found = changes_of(publisher, result.root_hash) or []
    report_dry_run(result, found, repo, as_json)


def _publish(publisher: Publisher, changes: list[Change], tag: str | None, message: str,
             wait: bool, progress: bool) -> CommitResult:
    """Every change through one session: one revision, or none."""
    from ..publisher import publish as run_publish
    from ..sources import open_source

    opened = [(change, open_source(change.source) if change.source else None)
              for change in changes]  # every source checked before anything is locked
    estimates = [source[1] for _, source in opened if source is not None]
    files = (sum(e.files or 0 for e in estimates)
             if all(e.files is not None for e in estimates) else None)
    total = (sum(e.bytes or 0 for e in estimates)
             if all(e.bytes is not None for e in estimates) else None)
    with PublishProgress(files, total, progress) as bar:
        return run_publish(publisher, [(display(change.path), source[0] if source else None)
                                       for change, source in opened],
                           tag=tag, message=message, wait=wait, progress=bar)


@dataclass
class Removed:
    """What one removed path held in the revision before."""

    path: str
    files: int = 0
    directories: int = 0
    other: int = 0  # symlinks and special files
    bytes: int = 0


def _tally(view: TreeView, path: str) -> Removed:
    removed = Removed(display(path))
    for _, info in view.walk(path):
        if info.is_directory:
            removed.directories += 1
        elif info.is_regular:
            removed.files += 1
            removed.bytes += info.size
        else:
            removed.other += 1
    return removed


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="/REPO/PATH...")
@_common
@pass_state
def rm(state: State, paths: tuple[str, ...], repo: str, tag: str | None, message: str,
       wait: bool, as_json: bool) -> None:
    """Remove paths (and everything below them) in one new revision."""
    with state.publisher(repo).session(wait=wait) as session:
        with session.view() as view:
            removed = [_tally(view, normalize_path(path)) for path in paths]
        for path in paths:
            session.remove(path)
        result = session.commit(tag, message)
    if as_json:
        emit_json({"repository": repo, **vars(result),
                   "removed": [asdict(item) for item in removed]})
        return
    for item in removed:
        held = [f"{item.files} files ({human_bytes(item.bytes)})",
                f"{item.directories} directories"]
        if item.other:
            held.append(f"{item.other} links and special files")
        stdout.print(f"removed {item.path}: {', '.join(held)}")
    tagged = f" tagged {result.tag}" if result.tag else ""
    stdout.print(f"published revision {result.revision} of {repo}{tagged} in "
                 f"{result.seconds:.1f} s")


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


def report_dry_run(result: CommitResult, changes: list[TreeChange], repo: str,
                   as_json: bool) -> None:
    from ..engine.diff import shown

    visible = shown(changes)
    if as_json:
        emit_json({"repository": repo, "dry_run": True, "revision": result.revision,
                   "tag": result.tag,
                   "added": [c.path for c in visible if c.kind == "added"],
                   "changed": [{"path": c.path, "fields": list(c.fields)}
                               for c in visible if c.kind == "changed"],
                   "removed": [c.path for c in visible if c.kind == "removed"],
                   "files": result.files, "bytes_in": result.bytes_in,
                   "objects_written": result.objects_written,
                   "bytes_written": result.bytes_written, "warnings": result.warnings})
        return
    for warning in result.warnings:
        stderr.print(f"warning: {warning}")
    for change in visible:
        stdout.print(change.line())
    count = {kind: sum(c.kind == kind for c in visible) for kind in ("added", "changed",
                                                                      "removed")}
    stdout.print(f"dry run: revision {result.revision} of {repo} would add {count['added']}, "
                 f"change {count['changed']} and remove {count['removed']} paths; "
                 f"{result.files} files ({human_bytes(result.bytes_in)}) read, "
                 f"{result.objects_written} new objects ({human_bytes(result.bytes_written)}) "
                 "to store; nothing was written")


COMMANDS = (publish, rm)
