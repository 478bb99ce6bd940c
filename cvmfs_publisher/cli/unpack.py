"""``unpack`` and ``unpack-gc``: registry images as flat trees like /cvmfs/unpacked.cern.ch."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from pathlib import Path

import click

from ..values import parse_duration
from .common import (
    State,
    compression_option,
    configured_repo_option,
    json_option,
    pass_state,
)
from .output import emit_json, stderr, stdout


@click.command()
@click.argument("wishlist", required=False, type=click.Path(path_type=Path, dir_okay=False))
@configured_repo_option
@click.option("--image", "images", multiple=True, metavar="REF",
              help="An image to unpack, e.g. registry.example.org/group/app:1.2 (repeatable).")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]|all",
              help="Platforms of multi-arch images [default: linux/amd64].")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST[:PORT]",
              help="Use plain HTTP for this registry (loopback hosts always may).")
@click.option("--from-docker", is_flag=True, help="Read --image names from a local "
              "Docker-API engine ($DOCKER_HOST, or --docker-url) instead of a registry.")
@click.option("--docker-url", metavar="URL", help="Docker-API socket, e.g. "
              "unix:///run/podman/podman.sock.")
@click.option("--auth-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Registry credentials in docker config.json format.")
@click.option("--loop", is_flag=True, help="Keep syncing until interrupted.")
@click.option("--interval", default="5m", show_default=True, help="Pause between --loop runs.")
@click.option("--force", is_flag=True, help="Convert again even when nothing changed.")
@compression_option
@click.option("--compression-level", type=click.IntRange(1, 9),
              help="zlib level for image content (1 is ~3x faster, objects ~10% larger).")
@json_option
@pass_state
def unpack(state: State, wishlist: Path | None, repo: str, images: tuple[str, ...],
           platforms: tuple[str, ...], insecure: tuple[str, ...], from_docker: bool,
           docker_url: str | None, auth_file: Path | None, loop: bool, interval: str,
           force: bool, compression: str | None, compression_level: int | None,
           as_json: bool) -> None:
    """Unpack the images of WISHLIST (and/or --image) that changed, and publish them."""
    from unpacker.runs import run_docker_unpack, run_unpack

    publisher = state.publisher(repo, compression=compression,
                                compression_level=compression_level)
    progress = None if as_json else _progress
    if from_docker:
        report = run_docker_unpack(publisher, list(images), base_url=docker_url, force=force,
                                   progress=progress)
    else:
        stop = _stop_on_signals()
        report = run_unpack(
            publisher, wishlist, list(images), platforms=list(platforms),
            insecure_registries=insecure, loop=loop,
            interval=parse_duration(interval).total_seconds(), progress=progress,
            force=force, auth_file=auth_file, should_stop=stop.is_set,
            on_round=None if as_json else _round,
        )
    if as_json:
        emit_json({"ok": report.ok, **asdict(report)})
    elif loop is False:
        _round(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _progress(image: str, what: str) -> None:
    stderr.print(f"{image}: {what}", markup=False)


def _round(report) -> None:  # type: ignore[no-untyped-def]
    for outcome in report.outcomes:
        detail = f" ({outcome.detail})" if outcome.detail else ""
        stdout.print(f"{outcome.status:>9}  {outcome.image}{detail}", markup=False)
    revisions = ", ".join(map(str, report.revisions)) or "none"
    stdout.print(f"{len(report.succeeded)} converted, {len(report.unchanged)} unchanged, "
                 f"{len(report.failed)} failed; published revisions: {revisions}",
                 markup=False)


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM end a --loop after the current round, never inside a publish."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM,):
            signal.signal(sig, lambda *_: stop.set())
    return stop


@click.command("unpack-gc")
@configured_repo_option
@click.option("--grace", default="7d", show_default=True,
              help="Keep images unwished for less than this (7d, 12h, ...).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@json_option
@pass_state
def unpack_gc(state: State, repo: str, grace: str, dry_run: bool, as_json: bool) -> None:
    """Remove images no longer wished for (after the grace period) and their flat trees."""
    from unpacker.runs import run_gc

    report = run_gc(state.publisher(repo), parse_duration(grace), dry_run)
    if as_json:
        emit_json(asdict(report))
        return
    verb = "would remove" if dry_run else "removed"
    for image in report.removed_images:
        stdout.print(f"{verb} {image}", markup=False)
    stdout.print(f"{verb} {len(report.removed_images)} images and {len(report.removed_flats)} "
                 f"flat trees; {len(report.kept_flats)} unused trees kept within the grace "
                 "period (run 'gc' to free their storage later)", markup=False)


COMMANDS = (unpack, unpack_gc)
