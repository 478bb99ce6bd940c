"""Revisions over time: tag add/rm, rollback, diff, gc."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import click

from .common import State, configured_repo_option, json_option, pass_state, read_options
from .output import WorkProgress, emit_json, human_bytes, stdout


@click.group()
def tag() -> None:
    """Name revisions (add) or remove names (rm); list them with 'tags'."""


@tag.command("add")
@click.argument("name")
@configured_repo_option
@click.option("--revision", "target", metavar="TAG|N", help="Revision to name: another tag or "
              "a revision number [default: the current revision].")
@click.option("-m", "--message", default="", help="Description of the tag.")
@click.option("--wait", is_flag=True, help="Wait for a running publish.")
@pass_state
def tag_add(state: State, name: str, repo: str, target: str | None, message: str,
            wait: bool) -> None:
    """Add tag NAME to an existing revision (no new content is published)."""
    with state.publisher(repo).session(wait=wait) as session:
        added = session.add_tag(name, target, message)
        session.commit()
    stdout.print(f"tagged revision {added.revision} of {repo} as {name}", markup=False)


@tag.command("rm")
@click.argument("names", nargs=-1, required=True)
@configured_repo_option
@click.option("--wait", is_flag=True, help="Wait for a running publish.")
@pass_state
def tag_rm(state: State, names: tuple[str, ...], repo: str, wait: bool) -> None:
    """Remove tags (the revisions stay until garbage collection)."""
    with state.publisher(repo).session(wait=wait) as session:
        for name in names:
            session.remove_tag(name)
        session.commit()
    stdout.print(f"removed {', '.join(names)} from {repo}", markup=False)


@click.command()
@configured_repo_option
@click.option("--to", "target", default="trunk-previous", show_default=True, metavar="TAG|N",
              help="Tag or revision number whose content to restore.")
@click.option("--tag", "-t", "new_tag", metavar="NAME", help="Name the new revision.")
@click.option("-m", "--message", default="", help="Description stored with the revision.")
@click.option("--wait", is_flag=True, help="Wait for a running publish.")
@json_option
@pass_state
def rollback(state: State, repo: str, target: str, new_tag: str | None, message: str,
             wait: bool, as_json: bool) -> None:
    """Publish a new revision whose content equals TAG (default: trunk-previous, the
    revision before the current one).

    History is kept: the revisions in between stay until garbage collection, and a second
    rollback undoes the first.
    """
    from ..engine.diff import shown
    from ..repositories import changes_of

    publisher = state.publisher(repo)
    with publisher.session(wait=wait) as session:
        found = session.rollback(target)
        result = session.commit(new_tag, message or f"rollback to {target}")
    changes = changes_of(publisher, result.root_hash)
    visible = shown(changes) if changes is not None else None
    if as_json:
        emit_json({"repository": repo, **vars(result),
                   "restored": {"target": target, "revision": found.revision},
                   "changes": None if visible is None else [asdict(c) for c in visible]})
        return
    for change in visible or []:
        stdout.print(change.line())
    what = ""
    if visible is not None:
        count = {kind: sum(c.kind == kind for c in visible)
                 for kind in ("added", "changed", "removed")}
        what = (f": {count['added']} added, {count['changed']} changed, "
                f"{count['removed']} removed")
    tagged = f" tagged {result.tag}" if result.tag else ""
    stdout.print(f"published revision {result.revision} of {repo}{tagged} with the content "
                 f"of revision {found.revision} ({target}){what}")


@click.command()
@click.argument("old")
@click.argument("new", default="trunk")
@click.option("--all", "show_all", is_flag=True, help="Also list the directories whose only "
              "change is their mtime because something below them changed, and the mtime of "
              "rewritten .cvmfscatalog markers.")
@json_option
@read_options
@pass_state
def diff(state: State, old: str, new: str, show_all: bool, as_json: bool, repo: str,
         keys: tuple[Path, ...], fqrn: str | None) -> None:
    """List paths added (A), removed (D) and changed (M) from OLD to NEW (tags or revisions)."""
    from ..engine.diff import diff as diff_trees
    from ..engine.diff import shown

    reader = state.repository(repo, keys, fqrn).reader()
    try:
        a, b = reader.resolve(old), reader.resolve(new)
        changes = sorted(diff_trees(reader, a.root_hash, b.root_hash), key=lambda c: c.path)
    finally:
        reader.close()
    if not show_all:
        changes = shown(changes)
    if as_json:
        emit_json([asdict(c) for c in changes])
        return
    for change in changes:
        stdout.print(change.line(), markup=False)


@click.command()
@configured_repo_option
@click.option("--keep-revisions", default=1, show_default=True, type=click.IntRange(1),
              help="Keep this many of the latest revisions.")
@click.option("--keep-days", default=3.0, show_default=True, type=click.FloatRange(0),
              help="Also keep revisions published within this many days.")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@click.option("--wait", is_flag=True, help="Wait for a running publish.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
@pass_state
def gc(state: State, repo: str, keep_revisions: int, keep_days: float, dry_run: bool,
       wait: bool, no_progress: bool, as_json: bool) -> None:
    """Delete objects that no kept revision uses: the current one, named tags, and recent ones.

    Automatic generic-* tags do not keep a revision alive; they go with it. For a
    cvmfs_server repository this is 'cvmfs_server gc', which keeps either --keep-days
    (when not 0) or --keep-revisions, and its own rules for tags.
    """
    from ..repositories import observed

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days) if keep_days else None
    with WorkProgress("collecting garbage", not (no_progress or as_json)) as bar, \
            observed(bar.on_read, bar.on_list, bar.on_delete):
        plan = state.publisher(repo).gc(keep_revisions=keep_revisions, keep_since=since,
                                        dry_run=dry_run, wait=wait)
    if as_json:
        emit_json(asdict(plan))
        return
    if plan.output:  # the classic backend's own report
        stdout.print(plan.output.rstrip())
        return
    verb = "would delete" if dry_run else "deleted"
    if dry_run:
        for key in plan.garbage:
            stdout.print(key, markup=False)
    for kept in plan.kept:
        stdout.print(f"keeping revision {kept['revision']}: {'; '.join(kept['reasons'])}")
    stdout.print(f"{verb} {len(plan.garbage)} objects ({human_bytes(plan.garbage_bytes)}) and "
                 f"{len(plan.dropped_tags)} automatic tags; kept revisions "
                 f"{', '.join(map(str, plan.kept_revisions))} and all named tags", markup=False)


COMMANDS = (tag, rollback, diff, gc)
