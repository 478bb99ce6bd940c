"""Several changes in one revision: ``publish --add SRC:/PATH --remove /PATH --changes FILE``.

A changes file has one change per line, words split as a shell splits them (quote a path
with spaces); blank lines and lines starting with ``#`` are ignored:

    # what the next revision changes
    add build/pkg-1.1 /sw/pkg/1.1      # a directory, a single file or a tarball
    add "docs/read me.txt" /sw/pkg/README
    remove /sw/pkg/0.9                 # and everything below it

A relative SRC is relative to the directory of the file (of the current directory when
the file is ``-``, standard input). Every change is checked before anything is read or
locked: each path once (no change inside another one's path), and ``/`` (the whole
repository) only with ``--force``.
"""

from __future__ import annotations

import itertools
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..cvmfs.names import display, is_within, removable_path, target_path
from ..errors import UsageError

MAX_CHANGES_FILE = 16 << 20


@dataclass(frozen=True)
class Change:
    """Replace ``path`` with ``source``, or remove it (``source`` None)."""

    path: str  # normalized: "" is the root
    source: Path | None
    origin: str  # how the user wrote it, for messages

    @property
    def verb(self) -> str:
        return "remove" if self.source is None else "add"


def collect(src: Path | None, target: str | None, adds: tuple[str, ...],
            removes: tuple[str, ...], changes_file: str | None, *, force: bool) -> list[Change]:
    """Every change the options ask for, checked; in the order given (SRC, --add, --remove,
    then the file's lines)."""
    changes: list[Change] = []
    if src is not None or target is not None:
        if src is None:
            raise UsageError("--path says where SRC goes: give SRC too, or use "
                             "--add SRC:/REPO/PATH")
        if target is None:
            raise UsageError(f"give --path /REPO/PATH: where {src} goes")
        changes.append(Change(target_path(target), src, f"{src} --path {target}"))
    for item in adds:
        source, sep, path = item.rpartition(":/")
        if not sep or not source:
            raise UsageError(f"--add {item!r} is not SRC:/REPO/PATH")
        changes.append(Change(target_path("/" + path), Path(source), f"--add {item}"))
    changes.extend(Change(removable_path(path), None, f"--remove {path}") for path in removes)
    if changes_file is not None:
        changes.extend(read_changes_file(changes_file))
    if not changes:
        raise UsageError("nothing to publish: give SRC --path /REPO/PATH, --add "
                         "SRC:/REPO/PATH, --remove /REPO/PATH or --changes FILE")
    check(changes, force=force)
    return changes


def read_changes_file(name: str) -> list[Change]:
    if name == "-":
        text, base, label = sys.stdin.read(MAX_CHANGES_FILE + 1), Path.cwd(), "<stdin>"
    else:
        file = Path(name)
        try:
            with file.open(encoding="utf-8") as f:
                text = f.read(MAX_CHANGES_FILE + 1)
        except FileNotFoundError:
            raise UsageError(f"changes file {name} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read changes file {name}: {reason}") from None
        base, label = file.parent, name
    if len(text) > MAX_CHANGES_FILE:
        raise UsageError(f"changes file {label} is larger than {MAX_CHANGES_FILE >> 20} MiB")
    changes = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{label}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if not words:
            continue
        if words[0] == "add" and len(words) == 3:
            source = Path(words[1]).expanduser()
            changes.append(Change(target_path(words[2]),
                                  source if source.is_absolute() else base / source, where))
        elif words[0] == "remove" and len(words) == 2:
            changes.append(Change(removable_path(words[1]), None, where))
        else:
            raise UsageError(f"{where}: expected 'add SRC /REPO/PATH' or 'remove /REPO/PATH', "
                             f"not {line.strip()!r}")
    if not changes:
        raise UsageError(f"changes file {label} lists no change")
    return changes


def check(changes: list[Change], *, force: bool) -> None:
    """Each path changed once, and the whole repository replaced only on purpose."""
    for change in changes:
        if change.path == "" and not force:
            raise UsageError(f"{change.origin}: publishing at / replaces the whole repository; "
                             "add --force if that is what you want")
    # sorted by components, a path's descendants follow it directly: neighbours suffice
    ordered = sorted(changes, key=lambda change: change.path.split("/"))
    for first, second in itertools.pairwise(ordered):
        if is_within(second.path, first.path):
            raise UsageError(
                f"{first.origin} and {second.origin} both change {display(second.path)}: "
                "one revision changes each path once (publish the larger tree, or change the "
                "two paths in two revisions)")
