"""``verify``: the full consistency check, for our repositories and anyone else's."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import click

from ..errors import VerificationFailed
from .common import State, json_option, parse_when, pass_state, read_options
from .output import WorkProgress, emit_json, human_bytes, stderr, stdout

WHITELIST_WARN = dt.timedelta(days=7)


@click.command("verify")
@click.option("--as-of", metavar="DATE", help="Check the whitelist's expiry as of this time "
              "(an old snapshot), e.g. 2026-12-01 or 2026-12-01T12:00.")
@click.option("--no-data", is_flag=True, help="Only check that objects exist; do not download "
              "and re-hash them.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
@read_options
@pass_state
def verify_command(state: State, as_of: str | None, no_data: bool, no_progress: bool,
                   as_json: bool, repo: str, keys: tuple[Path, ...], fqrn: str | None) -> None:
    """Check signatures, whitelist, every catalog, counter and object; exit 1 on any problem."""
    from ..repositories import observed

    when = parse_when(as_of)
    with WorkProgress("verifying", not (no_progress or as_json)) as bar, \
            observed(bar.on_read, bar.on_list, bar.on_delete):
        repository = state.repository(repo, keys, fqrn)
        report = repository.verify(when, check_data=not no_data)
    expiring = _whitelist_warning(repository, when) if report.ok else None
    if as_json:
        emit_json({"ok": report.ok, **asdict(report), "whitelist_warning": expiring})
    else:
        for warning in report.warnings:
            stderr.print(f"warning: {warning}", markup=False)
        if expiring:
            stderr.print(f"warning: {expiring}")
        for problem in report.problems:
            stdout.print(f"problem: {problem}", markup=False)
        summary = (f"{report.fqrn or repo} revision {report.revision}: {report.catalogs} "
                   f"catalogs, {report.entries} entries, {report.objects} objects "
                   f"({human_bytes(report.object_bytes)} re-hashed)")
        if report.ok:
            stdout.print(f"OK: {summary}", markup=False)
        else:
            stdout.print(f"FAILED: {len(report.problems)} problem(s) in {summary}", markup=False)
    if not report.ok:
        raise VerificationFailed(report.problems)


def _whitelist_warning(repository, when: dt.datetime | None) -> str | None:  # type: ignore[no-untyped-def]
    """'the whitelist of X expires on ...' when that is within 7 days of ``when`` (now)."""
    moment = when or dt.datetime.now(dt.UTC)
    head = repository.head(when)
    left = head.whitelist.expires - moment
    if left >= WHITELIST_WARN:
        return None
    days = left.total_seconds() / 86400
    return (f"the whitelist of {head.manifest.fqrn} expires on "
            f"{head.whitelist.expires:%Y-%m-%d %H:%M} UTC, in {days:.1f} days: run "
            f"'cvmfs-publisher resign --repo {head.manifest.fqrn}' (or let a timer run "
            "'resign --if-expiring-within 7d')")
