"""Removing images no longer wished for, and flats no tag uses, after a grace period.

Two clocks, both recorded by sync in ``.metadata`` (see ``state.py``):
- an image whose ``unwished_since`` is older than the grace period loses its tag link,
  its ``.multiarch`` links and its metadata;
- a flat that no remaining image uses is deleted once it has been unused for the grace
  period: since the time recorded in ``released.json`` (tag moved away, or its image was
  collected), else, for flats we have no record of, since its directory's mtime (DUCC's
  rule). Unused flats without a record get one now, so the next run can judge them.
Running containers that resolved a tag before it moved keep their flat for the grace.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

from cvmfs_publisher.publisher import Publisher, TreeView

from .layout import FLAT, RELEASED_FILE, Layout, file_entry
from .state import ImageState, load_released, load_states, released_json

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    removed_images: list[str] = field(default_factory=list)
    removed_flats: list[str] = field(default_factory=list)
    kept_flats: list[str] = field(default_factory=list)  # unused, still within the grace
    dry_run: bool = False
    revision: int | None = None


@dataclass
class _Plan:
    remove: list[str] = field(default_factory=list)
    released: dict[str, int] = field(default_factory=dict)
    changed: bool = False


def collect(publisher: Publisher, grace: dt.timedelta, *, dry_run: bool = False,
            layout: Layout | None = None, now: float | None = None) -> GcReport:
    layout = layout or Layout()
    stamp = int(now if now is not None else time.time())
    limit = stamp - int(grace.total_seconds())
    report = GcReport(dry_run=dry_run)
    with publisher.view() as view:
        plan = _plan(view, layout, stamp, limit, report)
    if dry_run or not plan.changed:
        return report
    with publisher.session() as session:
        current = session.view()
        for path in plan.remove:
            if current.lookup(path) is not None:
                session.remove(path)
        session.replace(layout.abs(RELEASED_FILE), file_entry(released_json(plan.released)))
        report.revision = session.commit(tag=None, message="unpack-gc").revision
    return report


def _plan(view: TreeView, layout: Layout, stamp: int, limit: int,
          report: GcReport) -> _Plan:
    states = load_states(view, layout)
    before = load_released(view, layout)
    plan = _Plan(released=dict(before))
    live: dict[str, ImageState] = {}
    for name, state in states.items():
        if state.unwished_since is not None and state.unwished_since <= limit:
            report.removed_images.append(name)
            plan.remove.extend(_image_paths(view, layout, state))
            for config in state.configs:
                plan.released.setdefault(config, state.unwished_since)
        else:
            live[name] = state
    used = {config for state in live.values() for config in state.configs}
    for config in used:
        plan.released.pop(config, None)
    flats_by_dir: dict[str, list[str]] = {}
    for config, path, mtime in _flats(view, layout):
        flats_by_dir.setdefault(path.rsplit("/", 1)[0], []).append(path)
        if config in used:
            continue
        since = plan.released.setdefault(config, min(mtime, stamp))
        if since <= limit:
            report.removed_flats.append(config)
            plan.remove.append(path)
            plan.released.pop(config, None)
        else:
            report.kept_flats.append(config)
    plan.remove.extend(_emptied(flats_by_dir, set(plan.remove)))
    plan.changed = bool(plan.remove) or plan.released != before
    return plan


def _image_paths(view: TreeView, layout: Layout, state: ImageState) -> list[str]:
    name = state.image
    paths = [layout.abs(layout.tag(name)), layout.abs(layout.metadata(name))]
    for key in state.flats:
        if key:
            paths += [layout.abs(layout.multiarch(key, name)),
                      layout.abs(layout.multiarch_metadata(key, name))]
    return [p for p in paths if view.lookup(p) is not None]


def _flats(view: TreeView, layout: Layout):
    """(config digest, path, mtime) of every flat directory."""
    top = layout.abs(FLAT)
    if view.lookup(top) is None:
        return
    for bucket in view.listdir(top):
        if not bucket.is_directory:
            continue
        for flat in view.listdir(f"{top}/{bucket.name}"):
            if flat.is_directory:
                yield f"sha256:{flat.name}", f"{top}/{bucket.name}/{flat.name}", flat.mtime


def _emptied(flats_by_dir: dict[str, list[str]], removed: set[str]) -> list[str]:
    """``.flat/xx`` directories all of whose flats go."""
    return [bucket for bucket, flats in flats_by_dir.items()
            if flats and all(f in removed for f in flats)]

