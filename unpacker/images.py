"""From a reference to manifests, and from a manifest to a flat tree (layers streamed).

``resolve`` turns a reference into the manifests to unpack (one per platform);
``unpack_manifest`` downloads, verifies and applies the layers of one. Each blob's sha256
is checked while it streams, and each layer's diff_id against the image config, so a
tampered or truncated download fails the image before anything of it is published.
Layers are applied in order, but up to ``PARALLEL_DOWNLOADS`` download at once (each
buffering at most ``layers.PREFETCH_BYTES`` in memory ahead of its turn).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DigestMismatch, ManifestError
from .flatten import FlatTree, Store, read_layer
from .layers import LayerStream, Prefetch
from .manifests import (
    ImageIndex,
    ImageManifest,
    Platform,
    json_object,
    parse_manifest,
    select_platforms,
)
from .reference import ImageRef
from .registry import RegistryClient

log = logging.getLogger(__name__)
PARALLEL_DOWNLOADS = 3


@dataclass(frozen=True)
class Target:
    """One manifest to unpack; ``platform`` is set when it came from an index."""

    manifest: ImageManifest
    platform: Platform | None


@dataclass(frozen=True)
class Resolved:
    ref: ImageRef
    digest: str  # what the reference points at now: a manifest or an index
    targets: tuple[Target, ...]
    is_index: bool
    raw: bytes  # the manifest or index as served


def expand(client: RegistryClient, wish: ImageRef) -> list[ImageRef]:
    """A wildcard wish as the concrete tags the registry has; others as themselves."""
    if not wish.is_pattern:
        return [wish]
    return sorted({wish.with_tag(tag) for tag in client.list_tags(wish) if wish.matches(
        wish.with_tag(tag))}, key=lambda r: r.tag or "")


def resolve(client: RegistryClient, ref: ImageRef, platforms: list[Platform] | None
            ) -> Resolved:
    """Fetch the manifest (and, for an index, each chosen platform's manifest by digest).

    ``platforms=None`` asks for every platform of an index.
    """
    body, content_type, digest = client.get_manifest(ref)
    parsed = parse_manifest(body, content_type, digest, str(ref))
    if isinstance(parsed, ImageManifest):
        return Resolved(ref, digest, (Target(parsed, None),), False, body)
    targets = []
    for desc in select_platforms(parsed, platforms, str(ref)):
        sub_body, sub_type, sub_digest = client.get_manifest(ref, desc.digest)
        sub = parse_manifest(sub_body, sub_type or desc.media_type, sub_digest,
                             f"{ref}@{desc.digest}")
        if not isinstance(sub, ImageManifest):
            raise ManifestError(f"{ref}: nested index {desc.digest} is not supported")
        targets.append(Target(sub, desc.platform))
    return Resolved(ref, digest, tuple(targets), True, body)


def image_config(client: RegistryClient, ref: ImageRef, manifest: ImageManifest) -> dict:
    data = client.get_blob_bytes(ref, manifest.config.digest)
    return json_object(data, f"{ref}: image config")


def diff_ids(config: dict, ref: ImageRef) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise ManifestError(f"{ref}: image config has no rootfs.diff_ids")
    return [str(i) for i in ids]


def unpack_manifest(client: RegistryClient, ref: ImageRef, manifest: ImageManifest,
                    store: Store, progress: Callable[[str], None] | None = None
                    ) -> tuple[FlatTree, dict]:
    """The flat tree of one image, every layer verified against the config's diff_ids."""
    config = image_config(client, ref, manifest)
    expected = diff_ids(config, ref)
    if len(expected) != len(manifest.layers):
        raise ManifestError(f"{ref}: {len(manifest.layers)} layers but "
                            f"{len(expected)} diff_ids in the config")
    tree = FlatTree(str(ref))
    layers = list(enumerate(manifest.layers))
    downloads: dict[int, Prefetch] = {}
    try:
        for position, (i, layer) in enumerate(layers):
            where = f"image {ref.name} layer {i + 1}/{len(layers)} ({layer.digest[:19]})"
            if layer.is_foreign:
                log.info("%s: skipping foreign layer", where)
                continue
            for j, ahead in layers[position:position + PARALLEL_DOWNLOADS]:
                if j not in downloads and not ahead.is_foreign:
                    downloads[j] = Prefetch(functools.partial(client.open_blob, ref,
                                                              ahead.digest, ahead.size))
            if progress is not None:
                progress(where)
            tree.apply(_read_verified(downloads.pop(i), expected[i], store, where), where)
    finally:
        for download in downloads.values():
            download.close()
    return tree, config


def _read_verified(blob: Prefetch, diff_id: str, store: Store, where: str):
    stream = LayerStream(blob, where)
    try:
        changes = read_layer(stream, store, where)
        actual = stream.drain()
    finally:
        stream.close()
        blob.close()
    if actual != diff_id:
        raise DigestMismatch(f"{where}: uncompressed layer hashes to {actual}, the config "
                             f"says {diff_id}")
    return changes


__all__ = ["ImageIndex", "Resolved", "Target", "expand", "resolve", "unpack_manifest"]
