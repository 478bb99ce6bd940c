"""One sync run: wishes in, flat trees, tag links and metadata out, in batched transactions.

Order of work, and why:
1. Resolve every wish against its registry before any lock is taken (network time is
   not spent holding the publish lock). An image whose HEAD digest equals the stored one
   is unchanged and costs one request; nothing is downloaded or published for it.
2. For each batch of changed images, one publish session: unpack each image (layers
   streamed into ``PublishSession.store``, the tree kept in memory), then stage its flat
   tree, links and metadata, the state file last. A flat that already exists (same config
   digest, e.g. an OCI and a Docker push of one image) is only linked to.
3. An image is fully built (downloaded, checked, flattened) before anything of it is
   staged, so an image that fails leaves nothing in the session and the others of the
   batch still commit. Staging itself failing is an error of the whole batch.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import PublisherError
from cvmfs_publisher.publisher import Publisher, PublishSession

from .flatten import FlatTree
from .images import Resolved, Target, expand, image_config, resolve, unpack_manifest
from .layout import (
    CATALOG_MARKER,
    FLAT,
    MANIFEST_FILE,
    MULTIARCH,
    RELEASED_FILE,
    STATE_FILE,
    Layout,
    catalog_dir_entries,
    file_entry,
    files_entries,
    relative_target,
    symlink_entries,
)
from .manifests import DEFAULT_PLATFORM, MULTIARCH_ALIASES, Platform, config_platform
from .reference import ImageRef
from .registry import RegistryClient
from .state import ImageState, load_released, load_states, released_json

log = logging.getLogger(__name__)

UNPACKED, RELINKED, UNCHANGED, FAILED = "unpacked", "relinked", "unchanged", "failed"
UNWISHED, REWISHED = "unwished", "rewished"


@dataclass
class SyncOptions:
    """``platforms=None``: every platform of an index, laid out under ``.multiarch``."""

    platforms: list[Platform] | None = field(default_factory=lambda: [DEFAULT_PLATFORM])
    layout: Layout = field(default_factory=Layout)
    batch_size: int = 8
    force: bool = False
    ignore_errors: list[str] = field(default_factory=list)
    mark_unwished: bool = False  # a wishlist run: images in no wish get unwished_since
    message: str = "unpack"

    @property
    def multiarch(self) -> bool:
        return self.platforms is None or len(self.platforms) > 1


@dataclass
class ImageOutcome:
    image: str
    status: str
    detail: str = ""
    configs: list[str] = field(default_factory=list)
    ignored: bool = False
    seconds: float = 0.0


@dataclass
class UnpackReport:
    outcomes: list[ImageOutcome] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)

    def _with(self, *statuses: str) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def succeeded(self) -> list[ImageOutcome]:
        return self._with(UNPACKED, RELINKED)

    @property
    def failed(self) -> list[ImageOutcome]:
        return self._with(FAILED)

    @property
    def unchanged(self) -> list[ImageOutcome]:
        return self._with(UNCHANGED)

    @property
    def ok(self) -> bool:
        """False when an image failed whose failures were not declared ignorable."""
        return not any(not o.ignored for o in self.failed)


@dataclass
class _Job:
    ref: ImageRef
    previous: ImageState | None
    resolved: Resolved | None  # None: only the state changes (wished again)


@dataclass
class Staged:
    """What one image adds to a transaction, built before anything is staged."""

    ops: list[tuple[str, str, list[Entry] | None]] = field(default_factory=list)
    state: ImageState | None = None
    status: str = RELINKED
    new_flats: set[str] = field(default_factory=set)

    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        self.ops.append(("replace", path, list(entries)))

    def remove(self, path: str) -> None:
        self.ops.append(("remove", path, None))


Progress = Callable[[str, str], None]


class Syncer:
    def __init__(self, publisher: Publisher, client: RegistryClient, options: SyncOptions,
                 progress: Progress | None = None) -> None:
        self.publisher, self.client, self.options = publisher, client, options
        self.layout = options.layout
        self.progress = progress or (lambda image, what: None)
        self.report = UnpackReport()

    # -- planning -----------------------------------------------------------------------------

    def run(self, wishes: list[ImageRef]) -> UnpackReport:
        with self.publisher.view() as view:
            states = load_states(view, self.layout)
            released = load_released(view, self.layout)
        jobs = self._plan(wishes, states)
        marks = self._unwished_marks(wishes, states) if self.options.mark_unwished else []
        for start in range(0, max(len(jobs), 1), self.options.batch_size):
            batch = jobs[start:start + self.options.batch_size]
            self._publish_batch(batch, marks if start == 0 else [], states, released)
        return self.report

    def _plan(self, wishes: list[ImageRef], states: dict[str, ImageState]) -> list[_Job]:
        jobs: list[_Job] = []
        seen: set[str] = set()
        for wish in wishes:
            try:
                refs = expand(self.client, wish)
            except PublisherError as exc:
                self._fail(str(wish), exc)
                continue
            for ref in refs:
                if ref.name in seen:
                    continue
                seen.add(ref.name)
                try:
                    job = self._plan_one(ref, states.get(ref.name))
                except PublisherError as exc:
                    self._fail(ref.name, exc)
                    continue
                if job is not None:
                    jobs.append(job)
        return jobs

    def _plan_one(self, ref: ImageRef, previous: ImageState | None) -> _Job | None:
        started = time.monotonic()
        if previous is not None and not self.options.force and \
                previous.multiarch == self.options.multiarch:
            current = ref.digest or self._head(ref)
            if current is not None and current == previous.digest:
                if previous.unwished_since is not None:
                    return _Job(ref, previous, None)
                self.report.outcomes.append(ImageOutcome(
                    ref.name, UNCHANGED, configs=sorted(previous.configs),
                    seconds=time.monotonic() - started))
                return None
        self.progress(ref.name, "resolving")
        return _Job(ref, previous, resolve(self.client, ref, self.options.platforms))

    def _head(self, ref: ImageRef) -> str | None:
        try:
            return self.client.head_manifest(ref)
        except PublisherError as exc:
            log.info("%s: HEAD failed (%s); fetching the manifest", ref.name, exc)
            return None

    def _unwished_marks(self, wishes: list[ImageRef], states: dict[str, ImageState]
                        ) -> list[ImageState]:
        """States that no wish covers any more, and not yet marked.

        Coverage is by pattern, not by what the registry listed this time, so a registry
        that is down or a failed tag listing never marks anything.
        """
        now = int(time.time())
        marks = []
        for state in states.values():
            if state.unwished_since is None and not any(w.covers(state.image) for w in wishes):
                state.unwished_since = now
                marks.append(state)
        return marks

    # -- publishing ---------------------------------------------------------------------------

    def _publish_batch(self, batch: list[_Job], marks: list[ImageState],
                       states: dict[str, ImageState], released: dict[str, int]) -> None:
        if not batch and not marks:
            return
        try:
            self._transact(batch, marks, states, released)
        except PublisherError as exc:
            for job in batch:
                if not any(o.image == job.ref.name for o in self.report.outcomes):
                    self.report.outcomes.append(self._outcome_failed(job.ref.name, exc))

    def _transact(self, batch: list[_Job], marks: list[ImageState],
                  states: dict[str, ImageState], released: dict[str, int]) -> None:
        with self.publisher.session() as session:
            ctx = BatchContext(session, self.layout, dict(released))
            done: list[ImageOutcome] = []
            for job in batch:
                outcome = self._publish_job(ctx, job, states)
                (done if outcome.status != FAILED else self.report.outcomes).append(outcome)
            for state in marks:
                ctx.stage_state(state)
                done.append(ImageOutcome(state.image, UNWISHED))
            ctx.stage_aliases()
            ctx.stage_released(released)
            if not ctx.changed:
                return
            names = ", ".join(o.image for o in done[:5]) + (" ..." if len(done) > 5 else "")
            result = session.commit(tag=None, message=f"{self.options.message}: {names}")
        released.clear()
        released.update(ctx.released)
        self.report.revisions.append(result.revision)
        self.report.outcomes.extend(done)

    def _publish_job(self, ctx: BatchContext, job: _Job, states: dict[str, ImageState]
                     ) -> ImageOutcome:
        started = time.monotonic()
        name = job.ref.name
        try:
            staged = self._stage_job(ctx, job)
        except PublisherError as exc:
            return self._outcome_failed(name, exc)
        ctx.apply(staged)
        assert staged.state is not None
        old = job.previous.configs if job.previous else set()
        for config in old - staged.state.configs:
            if not any(config in s.configs for n, s in states.items() if n != name):
                ctx.released[config] = int(time.time())
        for config in staged.state.configs:
            ctx.released.pop(config, None)
        states[name] = staged.state
        return ImageOutcome(name, staged.status, configs=sorted(staged.state.configs),
                            seconds=time.monotonic() - started)

    def _stage_job(self, ctx: BatchContext, job: _Job) -> Staged:
        staged = Staged()
        if job.resolved is None:  # wished again, content unchanged
            assert job.previous is not None
            job.previous.unwished_since = None
            staged.state = job.previous
            staged.ops.append(state_op(self.layout, job.previous))
            staged.status = REWISHED
            return staged
        resolved, now = job.resolved, int(time.time())
        multi = self.options.multiarch
        state = ImageState(job.ref.name, str(job.ref), resolved.digest, multiarch=multi,
                           unpacked_at=now)
        for target in resolved.targets:
            key = self._target_key(job.ref, target) if multi else ""
            self._stage_flat(ctx, staged, job.ref, target)
            state.flats[key] = target.manifest.config.digest
            state.manifests[key] = target.manifest.digest
        self._stage_links(ctx, staged, job, state, resolved)
        staged.state = state
        staged.ops.append(state_op(self.layout, state))
        return staged

    def _target_key(self, ref: ImageRef, target: Target) -> str:
        if target.platform is not None:
            return target.platform.key
        platform = config_platform(image_config(self.client, ref, target.manifest))
        return (platform or DEFAULT_PLATFORM).key

    def _stage_flat(self, ctx: BatchContext, staged: Staged, ref: ImageRef,
                    target: Target) -> None:
        def build() -> FlatTree:
            tree, _config = unpack_manifest(self.client, ref, target.manifest, ctx.session.store,
                                            lambda where: self.progress(ref.name, where))
            return tree

        stage_flat(ctx, staged, target.manifest.config_hex, build,
                   lambda: self.progress(ref.name, "unpacking"))

    def _stage_links(self, ctx: BatchContext, staged: Staged, job: _Job,
                     state: ImageState, resolved: Resolved) -> None:
        layout, name = self.layout, job.ref.name
        previous_keys = set(job.previous.flats) if job.previous else set()
        if not state.multiarch:
            target = resolved.targets[0]
            flat = layout.flat(target.manifest.config_hex)
            staged.replace(layout.abs(name), symlink_entries(relative_target(name, flat)))
            manifest_bytes = target.manifest.raw
        else:
            for key, config in state.flats.items():
                link = layout.multiarch(key, name)
                flat = layout.flat(config.split(":", 1)[1])
                staged.replace(layout.abs(link), symlink_entries(relative_target(link, flat)))
                raw = next(t.manifest.raw for t in resolved.targets
                           if t.manifest.digest == state.manifests[key])
                staged.replace(layout.abs(layout.multiarch_metadata(key, name)),
                               files_entries({MANIFEST_FILE: raw}))
                ctx.used_keys.add(key)
            default = DEFAULT_PLATFORM.key if DEFAULT_PLATFORM.key in state.flats \
                else sorted(state.flats)[0]
            variant = f"{MULTIARCH}/$(CVMFS_ARCH:-{default})/{name}"
            staged.replace(layout.abs(name), symlink_entries(relative_target(name, variant)))
            manifest_bytes = resolved.raw
        for key in previous_keys - set(state.flats):
            for path in (layout.multiarch(key, name), layout.multiarch_metadata(key, name)):
                if key and ctx.exists(path):
                    staged.remove(layout.abs(path))
        staged.replace(layout.abs(f"{layout.metadata(name)}/{MANIFEST_FILE}"),
                       file_entry(manifest_bytes))

    # -- reporting ----------------------------------------------------------------------------

    def _ignored(self, name: str) -> bool:
        spellings = (name, f"https://{name}", f"http://{name}")
        return any(fnmatch.fnmatchcase(s, g) for g in self.options.ignore_errors
                   for s in spellings)

    def _outcome_failed(self, name: str, exc: Exception) -> ImageOutcome:
        ignored = self._ignored(name)
        (log.warning if ignored else log.error)("%s failed: %s", name, exc)
        return ImageOutcome(name, FAILED, str(exc), ignored=ignored)

    def _fail(self, name: str, exc: Exception) -> None:
        self.report.outcomes.append(self._outcome_failed(name, exc))


def stage_flat(ctx: BatchContext, staged: Staged, config_hex: str,
               build: Callable[[], FlatTree], announce: Callable[[], None] | None = None
               ) -> None:
    """Stage ``.flat/xx/<config>`` (its own catalog) unless it exists: then only link."""
    flat = ctx.layout.flat(config_hex)
    if ctx.exists(flat) or config_hex in staged.new_flats:
        return
    if announce is not None:
        announce()
    entries = list(build().entries(skip=frozenset({CATALOG_MARKER})))
    entries.append(Entry(CATALOG_MARKER, Kind.FILE, mode=0o644, mtime=entries[0].mtime,
                         content=BytesContent(b"")))
    ctx.ensure_flat_root(staged)
    staged.replace(ctx.layout.abs(flat), entries)
    staged.new_flats.add(config_hex)
    staged.status = UNPACKED


def state_op(layout: Layout, state: ImageState) -> tuple[str, str, list[Entry]]:
    path = layout.abs(f"{layout.metadata(state.image)}/{STATE_FILE}")
    return ("replace", path, list(file_entry(state.to_json())))


class BatchContext:
    """What one session has staged so far, so images of a batch see each other."""

    def __init__(self, session: PublishSession, layout: Layout, released: dict[str, int]
                 ) -> None:
        self.session, self.layout = session, layout
        self.view = session.view()
        self.released = released
        self.created: set[str] = set()
        self.used_keys: set[str] = set()
        self.changed = False

    def exists(self, rel: str) -> bool:
        return rel in self.created or self.view.lookup(self.layout.abs(rel)) is not None

    def ensure_flat_root(self, staged: Staged) -> None:
        """``.flat`` is its own nested catalog; make it so before the first flat lands."""
        path = self.layout.abs(FLAT)
        if not self.exists(FLAT) and not any(p == path for _op, p, _e in staged.ops):
            staged.replace(path, catalog_dir_entries())

    def apply(self, staged: Staged) -> None:
        """Stage one image's operations, all of them built and checked beforehand."""
        for op, path, entries in staged.ops:
            if op == "replace":
                assert entries is not None
                self.session.replace(path, entries)
            else:
                self.session.remove(path)
        for _op, path, _entries in staged.ops:
            self.created.add(path[len(self.layout.abs("")):].lstrip("/"))
        self.changed = True

    def stage_state(self, state: ImageState) -> None:
        op = state_op(self.layout, state)
        self.session.replace(op[1], op[2])
        self.changed = True

    def stage_aliases(self) -> None:
        """``.multiarch/x86_64 -> amd64`` and friends, for every platform now present."""
        for alias, canonical in sorted(MULTIARCH_ALIASES.items()):
            if alias == canonical or canonical not in self.used_keys:
                continue
            path = f"{MULTIARCH}/{alias}"
            if not self.exists(path):
                self.session.replace(self.layout.abs(path), symlink_entries(canonical))
                self.created.add(path)
                self.changed = True

    def stage_released(self, before: dict[str, int]) -> None:
        if self.released != before:
            self.session.replace(self.layout.abs(RELEASED_FILE),
                             file_entry(released_json(self.released)))
            self.changed = True
