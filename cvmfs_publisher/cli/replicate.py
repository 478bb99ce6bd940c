"""``replicate`` and ``replica-gc``: a Stratum 1 in a directory or a bucket (docs/replicas.md)."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from ..errors import PublisherError, UsageError
from ..replication import (
    SnapshotResult,
    load_master_keys,
    open_replica,
    open_source,
    replica_gc,
    repository_name,
    snapshot,
)
from ..values import parse_duration
from .common import json_option, parse_when, s3_flags, s3_mapping
from .output import bar_shown, emit_json, human_bytes, stderr, stdout


class SnapshotProgress:
    """Objects and bytes copied so far (the total is unknown until the walk ends);
    silent when not on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = bar_shown(enabled)
        self.lock = threading.Lock()
        self.copied = self.skipped = 0
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]replicating"),
            TextColumn("{task.fields[objects]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False, emoji=False),
            transient=True,
            disable=not self.enabled,
        )
        self.task = self.progress.add_task("replicating", total=None, objects="")

    def __enter__(self) -> SnapshotProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, copied: int, nbytes: int, skipped: int) -> None:
        with self.lock:
            self.copied += copied
            self.skipped += skipped
            self.progress.update(self.task, advance=nbytes,
                                 objects=f"{self.copied} copied, {self.skipped} present")


@click.command()
@click.argument("source", metavar="SOURCE")
@click.option("--key", "keys", multiple=True, required=True,
              type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.pub",
              help="The source's master public key (repeatable); every snapshot checks the "
                   "whole signature chain with it before copying.")
@click.option("--to", "to", required=True, metavar="DIR|s3://BUCKET[/PREFIX]",
              help="Stratum 1 root: the replica is <DIR>/<name>, or [PREFIX/]<name>/ in the "
                   "bucket, laid out as a Stratum 0 there.")
@click.option("--fqrn", metavar="NAME", help="Repository name [default: the last part of "
              "SOURCE, as in http://host/cvmfs/<name>].")
@s3_flags
@click.option("--workers", default=8, show_default=True, type=click.IntRange(1, 16),
              help="Objects downloaded at once.")
@click.option("--loop", is_flag=True, help="Snapshot again every --interval until "
              "interrupted; a failed run is reported and retried at the next interval.")
@click.option("--interval", default="5m", show_default=True, metavar="DURATION",
              help="Time between the start of two snapshots with --loop (90s, 5m, 1h).")
@click.option("--as-of", metavar="DATE", help="Check the source whitelist's expiry as of this "
              "time instead of now (an archived source), e.g. 2026-12-01.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
def replicate(source: str, keys: tuple[Path, ...], to: str, fqrn: str | None,
              endpoint: str | None, region: str | None, s3_options: tuple[str, ...],
              workers: int, loop: bool, interval: str, as_of: str | None, no_progress: bool,
              as_json: bool) -> None:
    """Make or update a replica (Stratum 1) of the repository at SOURCE (URL or directory).

    Verifies the source's manifest, certificate and whitelist, copies every object of the
    current revision and of the tagged ones that the replica lacks (each hash-checked),
    and switches the replica's manifest last: its clients never see a revision with
    missing objects, and an interrupted run leaves the previous one in place.
    """
    name = repository_name(source, fqrn)
    master_keys = load_master_keys(list(keys))
    period = parse_duration(interval).total_seconds()
    if period <= 0:
        raise UsageError("--interval must be longer than 0 s")
    at = parse_when(as_of)
    source_storage = open_source(source)
    replica = open_replica(to, name, s3_mapping(endpoint, region, s3_options) or None)
    while True:
        started = time.monotonic()
        try:
            with SnapshotProgress(not (no_progress or as_json or loop)) as bar:
                result = snapshot(source_storage, replica, name, master_keys,
                                  workers=workers, at=at, progress=bar)
        except PublisherError as exc:
            if not loop:
                raise
            if as_json:
                _json_line({"ok": False, "repository": name, "error": str(exc)})
            else:
                stderr.print(f"error: {exc}")
        else:
            _report(result, as_json, loop)
        if not loop:
            return
        time.sleep(max(0.0, period - (time.monotonic() - started)))


def _json_line(data: dict) -> None:
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def _report(result: SnapshotResult, as_json: bool, loop: bool) -> None:
    if as_json:
        data = {"ok": True, **asdict(result)}
        if loop:
            _json_line(data)
        else:
            emit_json(data)
        return
    for warning in result.warnings:
        stderr.print(f"warning: {warning}")
    copied = (f"{result.objects_copied} objects copied ({human_bytes(result.bytes_copied)}), "
              f"{result.objects_skipped} already there")
    if result.switched:
        was = (f" (was {result.previous_revision})" if result.previous_revision is not None
               else "")
        stdout.print(f"replica {result.replica} serves revision {result.revision}{was}: "
                     f"{copied}, {result.tags} tags, in {result.seconds:.1f} s")
    else:
        stdout.print(f"replica {result.replica} is up to date at revision {result.revision}: "
                     f"{copied}, in {result.seconds:.1f} s")
    sys.stdout.flush()


@click.command("replica-gc")
@click.argument("root", metavar="DIR|s3://BUCKET[/PREFIX]")
@click.option("--fqrn", required=True, metavar="NAME", help="Repository name of the replica.")
@click.option("--key", "keys", multiple=True, required=True,
              type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.pub",
              help="Master public key of the repository (repeatable).")
@click.option("--keep-revisions", default=1, show_default=True, type=click.IntRange(1),
              help="Also keep this many of the latest revisions the replica holds.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--as-of", metavar="DATE", help="Check the whitelist's expiry as of this time.")
@s3_flags
@json_option
def replica_gc_command(root: str, fqrn: str, keys: tuple[Path, ...], keep_revisions: int,
                       dry_run: bool, as_of: str | None, endpoint: str | None,
                       region: str | None, s3_options: tuple[str, ...], as_json: bool) -> None:
    """Delete the objects of a replica (Stratum 1 root ROOT) that no kept revision uses.

    Kept: the current revision, every tagged revision, and --keep-revisions latest ones.
    Gone: revisions the source dropped, and leftovers of interrupted or refused snapshots.
    """
    name = repository_name(root, fqrn)
    replica = open_replica(root, name, s3_mapping(endpoint, region, s3_options) or None)
    result = replica_gc(replica, name, load_master_keys(list(keys)),
                        keep_revisions=keep_revisions, at=parse_when(as_of), dry_run=dry_run)
    if as_json:
        emit_json(asdict(result))
        return
    for warning in result.warnings:
        stderr.print(f"warning: {warning}")
    if dry_run:
        for key in result.garbage:
            stdout.print(key)
    verb = "would delete" if dry_run else "deleted"
    count = len(result.garbage) if dry_run else result.deleted
    stdout.print(f"{verb} {count} objects ({human_bytes(result.garbage_bytes)}) of replica "
                 f"{result.replica}; kept revisions {', '.join(map(str, result.kept_revisions))}"
                 f" and {result.kept_tags} tagged ones; {result.reachable} objects in use")


COMMANDS = (replicate, replica_gc_command)
