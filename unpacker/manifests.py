"""OCI and Docker schema2 manifests and indexes, and choosing platforms from an index.

Classification is by the response's Content-Type first, then by the body's ``mediaType``,
then by shape (``manifests`` vs ``layers``), because OCI makes ``mediaType`` optional and
umoci omits it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import ManifestError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))

FOREIGN_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
)

# Platform aliases as users and uname spell them, and the variant an arch implies.
ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                "armel": "arm", "i386": "386", "i686": "386"}
ALIAS_VARIANTS = {"armel": "v6", "armhf": "v7"}
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}
# Directory aliases under .multiarch/ (alias -> canonical directory name).
MULTIARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64:v8",
                     "arm64": "arm64:v8", "armhf": "arm:v7", "arm": "arm:v7",
                     "armel": "arm:v6", "i386": "386"}


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @property
    def key(self) -> str:
        """Directory name under ``.multiarch/``: ``amd64``, ``arm64:v8``, ``arm:v7``."""
        return f"{self.architecture}:{self.variant}" if self.variant else self.architecture

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


DEFAULT_PLATFORM = Platform("linux", "amd64")


def normalize_platform(os_name: str, arch: str, variant: str = "") -> Platform:
    """Canonical spelling: aliases resolved, arm/arm64 given their implied variant."""
    arch_l = arch.lower()
    variant = variant or ALIAS_VARIANTS.get(arch_l, "")
    arch_l = ARCH_ALIASES.get(arch_l, arch_l)
    variant = variant or DEFAULT_VARIANTS.get(arch_l, "")
    return Platform(os_name.lower() or "linux", arch_l, variant.lower())


def parse_platform(text: str) -> Platform:
    """``linux/arm64/v8``, ``arm64``, ``aarch64``, ``arm:v7`` or ``linux/arm/v7``."""
    parts = text.strip().replace(":", "/").split("/")
    if parts and parts[0] in ("linux", "windows", "darwin", "freebsd"):
        os_name, rest = parts[0], parts[1:]
    else:
        os_name, rest = "linux", parts
    if not 1 <= len(rest) <= 2 or not all(rest):
        raise ManifestError(f"platform {text!r} is not OS/ARCH[/VARIANT] or ARCH[:VARIANT]")
    return normalize_platform(os_name, rest[0], rest[1] if len(rest) > 1 else "")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    raw_platform: dict | None = None

    @property
    def is_foreign(self) -> bool:
        return self.media_type in FOREIGN_LAYER_TYPES


@dataclass(frozen=True)
class ImageManifest:
    digest: str
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    raw: bytes

    @property
    def config_hex(self) -> str:
        return self.config.digest.split(":", 1)[1]


@dataclass(frozen=True)
class ImageIndex:
    digest: str
    media_type: str
    manifests: tuple[Descriptor, ...]
    raw: bytes = field(repr=False, default=b"")


def json_object(data: bytes, what: str) -> dict:
    """A JSON object from a registry or an archive, or one clear ManifestError."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{what} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


def _descriptor(item: object, where: str) -> Descriptor:
    if not isinstance(item, dict):
        raise ManifestError(f"{where}: descriptor is not an object")
    digest, size = item.get("digest"), item.get("size", 0)
    if not isinstance(digest, str) or ":" not in digest or not isinstance(size, int):
        raise ManifestError(f"{where}: descriptor lacks a digest or size")
    raw_platform = item.get("platform")
    platform = None
    if isinstance(raw_platform, dict):
        platform = normalize_platform(str(raw_platform.get("os", "")),
                                      str(raw_platform.get("architecture", "")),
                                      str(raw_platform.get("variant", "")))
    return Descriptor(str(item.get("mediaType", "")), digest, size, platform,
                      raw_platform if isinstance(raw_platform, dict) else None)


def parse_manifest(body: bytes, content_type: str, digest: str, where: str
                   ) -> ImageManifest | ImageIndex:
    """Classify and parse a manifest or index body."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in DOCKER_SCHEMA1:
        raise ManifestError(f"{where}: Docker schema 1 manifests are not supported; "
                            "push the image again with a current client")
    doc = json_object(body, f"{where}: manifest")
    if kind not in INDEX_TYPES + MANIFEST_TYPES:
        kind = str(doc.get("mediaType", ""))
    if kind not in INDEX_TYPES + MANIFEST_TYPES:
        if "manifests" in doc:
            kind = OCI_INDEX
        elif "layers" in doc:
            kind = OCI_MANIFEST
        else:
            raise ManifestError(f"{where}: neither a manifest nor an index "
                                f"(Content-Type {content_type!r})")
    if kind in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: index without a manifests list")
        return ImageIndex(digest, kind, tuple(_descriptor(m, where) for m in entries), body)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{where}: manifest without a layers list")
    config = _descriptor(doc.get("config"), f"{where} config")
    return ImageManifest(digest, kind, config, tuple(_descriptor(x, where) for x in layers), body)


def _matches(want: Platform, have: Platform) -> bool:
    if (want.os, want.architecture) != (have.os, have.architecture):
        return False
    return not want.variant or not have.variant or want.variant == have.variant


def select_platforms(index: ImageIndex, wanted: list[Platform] | None, where: str
                     ) -> list[Descriptor]:
    """Entries for the wanted platforms (``None``: every real platform in the index).

    Attestation manifests (``architecture: unknown``) are never images. A wanted platform
    that the index lacks is an error, unless the index has exactly one real image, which
    is taken (as DUCC did for single-entry lists).
    """
    real = [d for d in index.manifests
            if d.platform is None or d.platform.architecture not in ("unknown", "")]
    if wanted is None:
        return [d for d in real if d.platform is not None] or real[:1]
    chosen: list[Descriptor] = []
    for want in wanted:
        match = next((d for d in real if d.platform and _matches(want, d.platform)), None)
        if match is not None and match not in chosen:
            chosen.append(match)
    if not chosen:
        if len(real) == 1:
            return real
        offered = ", ".join(str(d.platform) for d in real if d.platform) or "none"
        asked = ", ".join(str(p) for p in wanted)
        raise ManifestError(f"{where}: no manifest for {asked} (index offers {offered})")
    return chosen


def config_platform(config: dict) -> Platform | None:
    arch = config.get("architecture")
    if not isinstance(arch, str) or not arch:
        return None
    return normalize_platform(str(config.get("os", "linux")), arch,
                              str(config.get("variant", "")))
