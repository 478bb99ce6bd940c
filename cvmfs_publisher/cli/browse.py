"""Reading any repository (ours, the fixture, a Stratum 1): ls, cat, tags."""

from __future__ import annotations

import datetime as dt
import stat
import sys
from pathlib import Path

import click

from ..cvmfs.names import normalize_path
from .common import State, json_option, parse_when, pass_state, read_options
from .output import emit_json, table


def _as_of_option(func):  # type: ignore[no-untyped-def]
    return click.option("--as-of", metavar="DATE", help="Check the whitelist as of this time "
                        "(to read an old snapshot).")(func)


@click.command()
@click.argument("path", default="/")
@click.option("-R", "--recursive", is_flag=True, help="List the whole subtree.")
@click.option("--hash", "with_hash", is_flag=True, help="With -R --json: SHA-256 of contents.")
@_as_of_option
@json_option
@read_options
@pass_state
def ls(state: State, path: str, recursive: bool, with_hash: bool, as_of: str | None,
       as_json: bool, repo: str, keys: tuple[Path, ...], fqrn: str | None) -> None:
    """List a directory of the repository (what a mounted client would show)."""
    from ..engine.views import client_view

    reader = state.repository(repo, keys, fqrn).reader(parse_when(as_of))
    path = normalize_path(path)
    try:
        if recursive:
            items = list(client_view(reader, path, content=with_hash))
        else:
            reader.listdir(path)  # fails clearly for a missing path or a file
            items = [i for i in client_view(reader, path, content=False)
                     if "/" not in i["path"]]
    finally:
        reader.close()
    if as_json:
        emit_json(items)
        return
    table(("mode", "uid", "gid", "size", "modified", "name"),
          (_row(i) for i in items))


def _row(item: dict) -> tuple:
    mode = stat.filemode(int(item["mode"], 8) | _TYPE_BITS[item["type"]])
    name = item["path"] + (f" -> {item['target']}" if "target" in item else "")
    size = item.get("size", "")
    when = dt.datetime.fromtimestamp(item["mtime"], dt.UTC).strftime("%Y-%m-%d %H:%M")
    return mode, item["uid"], item["gid"], size, when, name


_TYPE_BITS = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK,
              "fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}


@click.command()
@click.argument("path")
@_as_of_option
@read_options
@pass_state
def cat(state: State, path: str, as_of: str | None, repo: str, keys: tuple[Path, ...],
        fqrn: str | None) -> None:
    """Write a file's content to stdout (every object hash-checked)."""
    reader = state.repository(repo, keys, fqrn).reader(parse_when(as_of))
    try:
        for block in reader.read(normalize_path(path)):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
    finally:
        reader.close()


@click.command()
@_as_of_option
@json_option
@read_options
@pass_state
def tags(state: State, as_of: str | None, as_json: bool, repo: str, keys: tuple[Path, ...],
         fqrn: str | None) -> None:
    """List the named revisions (tags) of the repository."""
    reader = state.repository(repo, keys, fqrn).reader(parse_when(as_of))
    history = reader.history()
    found = history.tags() if history is not None else []
    if history is not None:
        history.conn.close()
    reader.close()
    if as_json:
        emit_json([{"name": t.name, "revision": t.revision, "hash": str(t.root_hash),
                    "timestamp": t.timestamp, "description": t.description, "size": t.size}
                   for t in found])
        return
    table(("tag", "revision", "published", "description"),
          ((t.name, t.revision,
            dt.datetime.fromtimestamp(t.timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            t.description) for t in found))


COMMANDS = (ls, cat, tags)
