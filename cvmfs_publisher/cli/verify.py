"""``verify``: the full consistency check, for our repositories and anyone else's."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from ..errors import VerificationFailed
from .common import State, json_option, parse_when, pass_state, read_options
from .output import emit_json, human_bytes, stderr, stdout


@click.command("verify")
@click.option("--as-of", metavar="DATE", help="Check the whitelist's expiry as of this time "
              "(an old snapshot), e.g. 2026-12-01 or 2026-12-01T12:00.")
@click.option("--no-data", is_flag=True, help="Only check that objects exist; do not download "
              "and re-hash them.")
@json_option
@read_options
@pass_state
def verify_command(state: State, as_of: str | None, no_data: bool, as_json: bool, repo: str,
                   keys: tuple[Path, ...], fqrn: str | None) -> None:
    """Check signatures, whitelist, every catalog, counter and object; exit 1 on any problem."""
    repository = state.repository(repo, keys, fqrn)
    report = repository.verify(parse_when(as_of), check_data=not no_data)
    if as_json:
        emit_json({"ok": report.ok, **asdict(report)})
    else:
        for warning in report.warnings:
            stderr.print(f"warning: {warning}", markup=False)
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


COMMANDS = (verify_command,)
