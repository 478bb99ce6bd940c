"""Entry points for the CLI's ``unpack`` and ``unpack-gc`` commands: no click, no printing.

The click commands parse options and call ``run_unpack`` / ``run_gc``; the reports say
what happened, the CLI renders them, and ``UnpackReport.ok`` decides the exit code.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cvmfs_publisher.errors import UsageError
from cvmfs_publisher.publisher import Publisher

from .layout import Layout
from .manifests import DEFAULT_PLATFORM, Platform, parse_platform
from .reference import ImageRef, parse_reference
from .registry import CredentialStore, RegistryClient
from .retire import GcReport, collect
from .sync import Progress, Syncer, SyncOptions, UnpackReport
from .wishlist import load_wishlist

log = logging.getLogger(__name__)

def parse_platforms(texts: Iterable[str] | None) -> list[Platform] | None:
    """``None`` or empty: linux/amd64; ``all``: every platform of an index."""
    items = [t for text in texts or () for t in text.split(",") if t.strip()]
    if not items:
        return [DEFAULT_PLATFORM]
    if any(t.strip().lower() == "all" for t in items):
        return None
    return [parse_platform(t) for t in items]


def _wishes(publisher: Publisher, wishlist: Path | None, images: list[str]
            ) -> tuple[list[ImageRef], Layout, list[str]]:
    wishes = [parse_reference(text) for text in images]
    if wishlist is None:
        if not wishes:
            raise UsageError("give a wishlist or at least one image")
        return wishes, Layout(), []
    recipe = load_wishlist(wishlist)
    if recipe.cvmfs_repo != publisher.name:
        raise UsageError(f"{recipe.source}: cvmfs_repo is {recipe.cvmfs_repo!r}, but the "
                         f"repository is {publisher.name!r}")
    return recipe.inputs + wishes, Layout(recipe.prefix), recipe.ignore_errors


def run_unpack(
    publisher: Publisher,
    wishlist: Path | None,
    images: list[str],
    *,
    platforms: list[str] | None = None,
    insecure_registries: Iterable[str] = (),
    loop: bool = False,
    interval: float = 600.0,
    progress: Progress | None = None,
    batch_size: int = 8,
    force: bool = False,
    auth_file: Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_round: Callable[[UnpackReport], None] | None = None,
) -> UnpackReport:
    """One sync (or, with ``loop``, one per ``interval`` until ``should_stop``).

    The wishlist is re-read every round, as DUCC's ``loop`` does. Images given as
    arguments are synced too but never mark anything as unwished; a wishlist run marks
    stored images that no wish covers (see ``unpack-gc``). Credentials come from the
    environment or ``auth_file`` (docker ``config.json`` format), never from arguments.
    """
    chosen = parse_platforms(platforms)
    credentials = CredentialStore.from_environment(auth_file=auth_file)
    client = RegistryClient(credentials, insecure=insecure_registries)
    try:
        while True:
            wishes, layout, ignore = _wishes(publisher, wishlist, images)
            options = SyncOptions(platforms=chosen, layout=layout, batch_size=batch_size,
                                  force=force, ignore_errors=ignore,
                                  mark_unwished=wishlist is not None and not images)
            report = Syncer(publisher, client, options, progress).run(wishes)
            if on_round is not None:
                on_round(report)
            if not loop or (should_stop is not None and should_stop()):
                return report
            _sleep(interval, should_stop)
            if should_stop is not None and should_stop():
                return report
    finally:
        client.close()


def _sleep(seconds: float, should_stop: Callable[[], bool] | None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop is not None and should_stop():
            return
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def run_gc(publisher: Publisher, grace: dt.timedelta, dry_run: bool, *,
           prefix: str = "", now: float | None = None) -> GcReport:
    """``unpack-gc --grace 7d [--dry-run]``: see ``unpacker.retire``."""
    if grace < dt.timedelta(0):
        raise UsageError("the grace period cannot be negative")
    return collect(publisher, grace, dry_run=dry_run, layout=Layout(prefix), now=now)


def run_docker_unpack(publisher: Publisher, images: list[str], *,
                      base_url: str | None = None, force: bool = False,
                      progress: Progress | None = None) -> UnpackReport:
    """``unpack --from-docker IMAGE...``: images of a Docker-API engine (``image.save()``).

    ``base_url`` is the engine's socket (``unix:///run/docker.sock``, or podman's API
    service); by default the ``docker`` package's environment (``DOCKER_HOST``) decides.
    """
    try:
        import docker
    except ImportError:
        raise UsageError("--from-docker needs the 'docker' package (pip install "
                         "cvmfs-publisher[docker])") from None
    from .docker_source import DockerSyncer

    if not images:
        raise UsageError("name the engine's images to unpack")
    engine = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    try:
        return DockerSyncer(publisher, engine, SyncOptions(force=force), progress).run(images)
    finally:
        engine.close()
