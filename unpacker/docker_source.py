"""Images from a Docker-API engine (Docker, or podman's API service) via ``image.save()``.

The saved archive is read as it streams (``docker save`` layout: ``manifest.json``,
``<config>.json``, one tar per layer, possibly behind symlinks such as
``<id>/layer.tar -> ../<diff_id>.tar``). ``manifest.json`` may come last, after the layers,
so each layer is read into its list of changes (file contents already handed to the
session) and the layers are applied in the manifest's order at the end. Each layer's
diff_id is checked against the config, and the config against the engine's image id.
Nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from docker.errors import DockerException

from cvmfs_publisher.entries import BlockStream
from cvmfs_publisher.errors import PublisherError, SourceError
from cvmfs_publisher.publisher import Publisher, TreeView

from .errors import DigestMismatch, ManifestError
from .flatten import Change, FlatTree, ForwardReader, Store, read_layer
from .layers import LayerStream
from .layout import MANIFEST_FILE, file_entry, relative_target, symlink_entries
from .manifests import json_object
from .reference import ImageRef, parse_reference
from .state import ImageState, load_state
from .sync import (
    FAILED,
    UNCHANGED,
    BatchContext,
    ImageOutcome,
    Staged,
    SyncOptions,
    UnpackReport,
    stage_flat,
    state_op,
)

log = logging.getLogger(__name__)

SMALL_NAMES = (".json", "/json", "VERSION", "repositories", "oci-layout")
MAX_SMALL = 16 << 20


@dataclass
class _Layer:
    changes: list[Change]
    diff_id: str


@dataclass
class ArchiveImage:
    names: list[str]
    config_digest: str
    config: dict
    manifest: dict
    layers: list[_Layer]


def read_docker_archive(chunks: Iterable[bytes], store: Store, where: str
                        ) -> list[ArchiveImage]:
    """Every image of a ``docker save`` archive, layers read once, in archive order."""
    layers: dict[str, _Layer] = {}
    small: dict[str, bytes] = {}
    links: dict[str, str] = {}
    try:
        archive = tarfile.open(fileobj=ForwardReader(BlockStream(chunks)),  # noqa: SIM115
                               mode="r:")
    except tarfile.TarError as exc:
        raise SourceError(f"{where}: the saved image is not a tar archive ({exc})") from None
    with archive:
        for member in archive:
            name = posixpath.normpath(member.name) if member.name else ""
            if member.issym():
                links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name),
                                                                member.linkname))
            elif member.isreg():
                handle = archive.extractfile(member)
                assert handle is not None
                if name.endswith(SMALL_NAMES) and member.size <= MAX_SMALL:
                    small[name] = handle.read()
                else:
                    layers[name] = _read_archive_layer(handle, store, f"{where} {name}")
    return _images(small, layers, links, where)


def _read_archive_layer(handle, store: Store, where: str) -> _Layer:
    stream = LayerStream(handle, where)
    try:
        changes = read_layer(stream, store, where)
        return _Layer(changes, stream.drain())
    finally:
        stream.close()


def _images(small: dict[str, bytes], layers: dict[str, _Layer], links: dict[str, str],
            where: str) -> list[ArchiveImage]:
    if "manifest.json" not in small:
        raise SourceError(f"{where}: the saved image has no manifest.json")
    result = []
    for entry in json.loads(small["manifest.json"]):
        config_name = _resolve(entry["Config"], links)
        config_bytes = small.get(config_name)
        if config_bytes is None:
            raise SourceError(f"{where}: config {config_name} missing from the archive")
        digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        config = json_object(config_bytes, f"{where}: config {config_name}")
        ordered = []
        expected = config.get("rootfs", {}).get("diff_ids", [])
        for i, layer_name in enumerate(entry.get("Layers", [])):
            layer = layers.get(_resolve(layer_name, links))
            if layer is None:
                raise SourceError(f"{where}: layer {layer_name} missing from the archive")
            if i < len(expected) and layer.diff_id != expected[i]:
                raise DigestMismatch(f"{where}: layer {layer_name} hashes to {layer.diff_id},"
                                     f" the config says {expected[i]}")
            ordered.append(layer)
        if len(ordered) != len(expected):
            raise ManifestError(f"{where}: {len(ordered)} layers but {len(expected)} "
                                "diff_ids in the config")
        result.append(ArchiveImage(list(entry.get("RepoTags") or []), digest, config, entry,
                                   ordered))
    return result


def _resolve(name: str, links: dict[str, str]) -> str:
    name = posixpath.normpath(name)
    for _ in range(8):
        if name not in links:
            return name
        name = links[name]
    return name


def normalize_name(tag: str) -> ImageRef:
    """Engine tag names as registry references: ``busybox`` -> ``docker.io/library/busybox``."""
    first, _, rest = tag.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        tag = f"docker.io/{tag if rest else 'library/' + tag}"
    return parse_reference(tag)


class DockerSyncer:
    """Sync named images of a Docker-API engine; unchanged image ids cost one API call."""

    def __init__(self, publisher: Publisher, engine, options: SyncOptions,
                 progress: Callable[[str, str], None] | None = None) -> None:
        self.publisher, self.engine, self.options = publisher, engine, options
        self.progress = progress or (lambda image, what: None)
        self.report = UnpackReport()

    def run(self, names: list[str]) -> UnpackReport:
        todo = []
        with self.publisher.view() as view:
            for name in names:
                try:
                    todo.extend(self._plan(view, name))
                except (PublisherError, DockerException) as exc:
                    self.report.outcomes.append(ImageOutcome(name, FAILED, str(exc)))
        if todo:
            self._publish(todo)
        return self.report

    def _plan(self, view: TreeView, name: str) -> list[tuple[ImageRef, object]]:
        image = self.engine.images.get(name)
        ref = normalize_name(name)
        previous = load_state(view, self.options.layout, ref.name)
        if previous is not None and previous.digest == image.id and not self.options.force:
            self.report.outcomes.append(ImageOutcome(ref.name, UNCHANGED,
                                                     configs=[image.id]))
            return []
        return [(ref, image)]

    def _publish(self, todo: list[tuple[ImageRef, object]]) -> None:
        done = []
        with self.publisher.session() as session:
            ctx = BatchContext(session, self.options.layout, {})
            for ref, image in todo:
                started = time.monotonic()
                try:
                    staged = self._stage(ctx, ref, image)
                except PublisherError as exc:
                    self.report.outcomes.append(ImageOutcome(ref.name, FAILED, str(exc)))
                    continue
                ctx.apply(staged)
                done.append(ImageOutcome(ref.name, staged.status, configs=[image.id],
                                         seconds=time.monotonic() - started))
            if not ctx.changed:
                return
            result = session.commit(tag=None, message="unpack from docker: " +
                                ", ".join(o.image for o in done[:5]))
        self.report.revisions.append(result.revision)
        self.report.outcomes.extend(done)

    def _stage(self, ctx: BatchContext, ref: ImageRef, image) -> Staged:
        staged = Staged()
        config_hex = image.id.split(":", 1)[1]
        saved: list[ArchiveImage] = []

        def build() -> FlatTree:
            saved.extend(read_docker_archive(image.save(named=True), ctx.session.store,
                                             f"image {ref.name}"))
            match = [a for a in saved if a.config_digest == image.id]
            if not match:
                raise DigestMismatch(f"image {ref.name}: the saved config does not hash to "
                                     f"the engine's image id {image.id}")
            tree = FlatTree(ref.name)
            for i, layer in enumerate(match[0].layers):
                tree.apply(layer.changes, f"image {ref.name} layer {i + 1}")
            return tree

        stage_flat(ctx, staged, config_hex, build, lambda: self.progress(ref.name, "saving"))
        layout, name = ctx.layout, ref.name
        flat = layout.flat(config_hex)
        staged.replace(layout.abs(name), symlink_entries(relative_target(name, flat)))
        manifest = saved[0].manifest if saved else {"Config": image.id, "RepoTags": [name]}
        staged.replace(layout.abs(f"{layout.metadata(name)}/{MANIFEST_FILE}"),
                       file_entry(json.dumps(manifest, sort_keys=True).encode() + b"\n"))
        state = ImageState(name, f"docker:{name}", image.id, flats={"": image.id},
                           unpacked_at=int(time.time()))
        staged.state = state
        staged.ops.append(state_op(layout, state))
        return staged
