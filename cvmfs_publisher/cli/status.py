"""Where things stand: ``list`` (every configured repository) and ``info`` (one of them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .common import State, configured_repo_option, json_option, pass_state
from .output import emit_json, human_bytes, stderr, stdout, table

if TYPE_CHECKING:
    from ..repositories import Status


@click.command("list")
@json_option
@pass_state
def list_command(state: State, as_json: bool) -> None:
    """The configured repositories: backend, storage, current revision and last publish.

    Each is read as a client reads it (signatures checked); one that cannot be read shows
    why instead of a revision.
    """
    from ..repositories import status

    config = state.config
    found = [status(config, name, detail=False) for name in sorted(config.repositories)]
    if as_json:
        emit_json([{"repository": s.repository, "default": s.default, "backend": s.backend,
                    "storage": s.storage, "revision": s.revision,
                    "published": _iso(s.published), "error": "; ".join(s.notes) or None}
                   for s in found])
        return
    if not found:
        stderr.print(f"no repositories in {config.path}; create one with "
                     "'cvmfs-publisher init NAME --storage DIR'")
        return
    table(("repository", "backend", "storage", "revision", "last publish"),
          ((s.repository + (" (default)" if s.default else ""), s.backend, s.storage,
            "?" if s.revision is None else s.revision,
            _shown_time(s.published) if s.revision is not None else "; ".join(s.notes))
           for s in found))


@click.command()
@configured_repo_option
@json_option
@pass_state
def info(state: State, repo: str, as_json: bool) -> None:
    """Where one repository stands: revision, tags, objects, storage, lock, whitelist.

    Warns when the whitelist expires within 7 days ('resign' renews it).
    """
    from ..repositories import status

    found = status(state.config, repo)
    if as_json:
        emit_json(_info_json(found))
        return
    left = found.whitelist_left
    rows: list[tuple[str, Any]] = [
        ("repository", found.repository + (" (default)" if found.default else "")),
        ("backend", found.backend),
        ("storage", found.storage),
        ("revision", "?" if found.revision is None else found.revision),
        ("published", _shown_time(found.published)),
        ("tags", "?" if found.tags is None else
         f"{len(found.tags)}" + (f": {', '.join(found.tags)}" if found.tags else "")),
        ("objects", "?" if found.objects is None else
         f"{found.objects} ({human_bytes(found.bytes or 0)})"),
        ("lock", _lock(found)),
        ("whitelist", "?" if found.whitelist_expires is None or left is None else
         f"valid until {_shown_time(found.whitelist_expires)} "
         f"({_days(left)})"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        stdout.print(f"{name + ':':<{width + 1}} {value}")
    for note in found.notes:
        stderr.print(f"note: {note}")
    if found.whitelist_expiring:
        stderr.print(f"warning: the whitelist of {found.repository} expires within 7 days: "
                     f"run 'cvmfs-publisher resign --repo {found.repository}'")


def _info_json(found: Status) -> dict[str, Any]:
    lock = None
    if found.lock is not None:
        lock = {**asdict(found.lock), "since": _iso(_utc(found.lock.since)),
                "expires": _iso(_utc(found.lock.expires)) if found.lock.expires else None}
    left = found.whitelist_left
    return {
        "repository": found.repository,
        "default": found.default,
        "backend": found.backend,
        "storage": found.storage,
        "revision": found.revision,
        "published": _iso(found.published),
        "tags": None if found.tags is None else {"count": len(found.tags),
                                                 "names": found.tags},
        "objects": found.objects,
        "bytes": found.bytes,
        "lock": lock,
        "whitelist": None if found.whitelist_expires is None or left is None else {
            "expires": _iso(found.whitelist_expires),
            "seconds_left": int(left.total_seconds()),
            "expiring": found.whitelist_expiring,
        },
        "notes": found.notes,
    }


def _lock(found: Status) -> str:
    holder = found.lock
    if holder is None:
        return "free" if found.tags is not None else "?"
    process = f"pid {holder.pid} on " if holder.pid else "on "
    return f"held by {holder.owner} ({process}{holder.host}, since " \
           f"{_shown_time(_utc(holder.since))})"


def _days(left: dt.timedelta) -> str:
    days = left.total_seconds() / 86400
    return f"expired {-days:.1f} days ago" if days < 0 else f"{days:.1f} days left"


def _utc(stamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _shown_time(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "?"


COMMANDS = (list_command, info)
