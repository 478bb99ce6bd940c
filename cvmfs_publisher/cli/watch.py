"""``watch`` and ``watch-status``: drop areas (folders or buckets) published as they settle."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import click

from ..errors import PublisherError, UsageError
from ..values import parse_duration
from ..watch.area import AreaSync, SyncResult
from ..watch.areas import AreaSpec, check_grants, load_areas
from ..watch.runner import Watcher, WatchSettings
from ..watch.state import statuses
from .common import State, configured_repo_option, json_option, pass_state
from .output import emit_json, human_bytes, stderr, stdout, table


def _seconds(text: str) -> float:
    """A duration with its unit: a bare number would be days (``parse_duration``)."""
    if text.strip().replace(".", "", 1).isdigit():
        raise UsageError(f"duration {text!r} has no unit: write e.g. {text.strip()}s")
    return parse_duration(text).total_seconds()


@click.command()
@click.argument("source", required=False, metavar="DIR|s3://BUCKET[/PREFIX]")
@click.option("--repo", "-r", metavar="NAME", help="Configured repository.")
@click.option("--path", "-p", "target", metavar="/REPO/PATH",
              help="The repository path the area is granted; it is made equal to the area.")
@click.option("--config", "areas_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Many areas and their paths from a watch.yaml (see docs/watch.md).")
@click.option("--endpoint", metavar="URL", help="S3 endpoint of a bucket SOURCE.")
@click.option("--region", metavar="REGION", help="S3 region of a bucket SOURCE.")
@click.option("--quiet-period", default="3s", show_default=True,
              help="Publish once the area had no changes for this long.")
@click.option("--max-delay", default="60s", show_default=True,
              help="Publish at the latest this long after the first pending change.")
@click.option("--rescan", default="10m", show_default=True,
              help="Compare the whole area with what was published this often.")
@click.option("--poll", is_flag=True, help="Poll instead of inotify (NFS, FUSE sync clients).")
@click.option("--poll-interval", default="5s", show_default=True,
              help="How often buckets (and --poll folders) are looked at.")
@click.option("--quota-bytes", type=click.IntRange(0), help="Refuse to publish a larger area.")
@click.option("--quota-files", type=click.IntRange(0), help="Refuse to publish more files.")
@click.option("--once", is_flag=True, help="Sync each area once and exit.")
@pass_state
def watch(state: State, source: str | None, repo: str | None, target: str | None,
          areas_file: Path | None, endpoint: str | None, region: str | None,
          quiet_period: str, max_delay: str, rescan: str, poll: bool, poll_interval: str,
          quota_bytes: int | None, quota_files: int | None, once: bool) -> None:
    """Publish a drop area (a folder or a bucket) at --path whenever it settles; runs until
    stopped (SIGTERM abandons a publish cleanly). Files still being written wait."""
    settings = WatchSettings(_seconds(quiet_period), _seconds(max_delay), _seconds(rescan),
                             _seconds(poll_interval))
    if areas_file is not None:
        if source or repo or target:
            raise click.UsageError("give either --config or SOURCE with --repo and --path")
        settings, specs = load_areas(areas_file, _seconds)
    else:
        if not (source and repo and target):
            raise click.UsageError("give SOURCE, --repo and --path (or --config FILE)")
        s3 = {k: v for k, v in (("endpoint", endpoint), ("region", region)) if v}
        specs = [AreaSpec(source, repo, target, quota_bytes, quota_files, poll, s3)]
        check_grants(specs)
    areas = [spec.open(state.publisher(spec.repo)) for spec in specs]
    for area in areas:
        stderr.print(f"watching {area.describe()}")
    if once:
        for area in areas:
            try:
                _report(area, area.sync(), "")
            except PublisherError as exc:
                area.failed(str(exc))  # watch-status shows it, as for a running watcher
                raise
        return
    Watcher(areas, settings, _report).run()


def _report(area: AreaSync, result: SyncResult | None, error: str) -> None:
    """One line per publish (and per failure)."""
    if result is None:
        failures = area.state.status.failures
        stderr.print(f"{area.describe()}: publish failed ({failures} in a row, retrying "
                     f"with back-off): {error}")
        return
    if result.published:
        stdout.print(f"{area.describe()}: revision {result.revision}: {result.describe()} "
                     f"files, {human_bytes(result.bytes)} in {result.seconds:.1f} s"
                     + (f", {result.unsettled} still being written" if result.unsettled
                        else ""))


@click.command("watch-status")
@configured_repo_option
@json_option
@pass_state
def watch_status(state: State, repo: str, as_json: bool) -> None:
    """Each drop area of REPO: last publish, pending changes, last error."""
    found = statuses(repo)
    if as_json:
        emit_json([asdict(s) for s in found])
        return
    if not found:
        stdout.print(f"no drop area has published to {repo} yet")
        return
    table(("area", "path", "last publish", "revision", "pending", "last error"),
          ((s.area, s.path, _when(s.last_sync), s.last_revision or "-", s.pending,
            s.last_error or "-") for s in found))


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


COMMANDS = (watch, watch_status)
