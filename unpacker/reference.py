"""Image references: ``[scheme://]REGISTRY/REPOSITORY[:TAG][@DIGEST]``, tags maybe wildcards.

The grammar is strict (distribution's reference grammar) because the registry, repository
and tag become repository paths: a name that parses here cannot contain ``..``, ``//``, NUL
or anything else that would let it step outside ``<registry>/<repository>:<tag>``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace

from .errors import InvalidReference

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_REGISTRY = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[][A-Za-z0-9_.*?\[\]!-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SCHEMES = ("https", "http")
WILDCARD_CHARS = "*?["


@dataclass(frozen=True, order=True)
class ImageRef:
    """One image (or, with a wildcard tag, a pattern of images) in one registry."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: str = ""  # "" when the reference named none: loopback and insecure hosts get http

    @property
    def is_pattern(self) -> bool:
        return self.tag is not None and any(c in self.tag for c in WILDCARD_CHARS)

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """``<registry>/<repository>:<tag>`` as it appears in the unpacked tree.

        Digest-only references become ``<repository>:sha256:<hex>`` like DUCC; with both,
        the tag names the path and the digest pins the content.
        """
        label = self.tag or self.digest or "latest"
        return f"{self.registry}/{self.repository}:{label}"

    def with_tag(self, tag: str) -> ImageRef:
        return replace(self, tag=tag)

    def matches(self, other: ImageRef) -> bool:
        """Whether a concrete image is covered by this wish (same repository, tag glob)."""
        if (self.registry, self.repository) != (other.registry, other.repository):
            return False
        if self.is_pattern:
            return other.tag is not None and fnmatch.fnmatchcase(other.tag, self.tag or "")
        return self.name == other.name

    def covers(self, name: str) -> bool:
        """Whether the image stored as ``<registry>/<repository>:<label>`` is wished by this."""
        registry, _, rest = name.partition("/")
        repository, _, label = rest.partition(":")
        if (registry, repository) != (self.registry, self.repository):
            return False
        if self.is_pattern:
            return fnmatch.fnmatchcase(label, self.tag or "")
        return self.name == name

    def __str__(self) -> str:
        text = f"{self.scheme}://" if self.scheme else ""
        text += f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageRef:
    """Parse and validate; every failure names the offending part."""
    raw = text.strip()
    scheme = ""
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme == "docker":
            scheme = ""
        if scheme and scheme not in SCHEMES:
            raise InvalidReference(f"image {text!r}: scheme {scheme!r} is not http or https")
    if raw.count("@") > 1:
        raise InvalidReference(f"image {text!r}: more than one '@'")
    raw, _, digest = raw.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidReference(f"image {text!r}: digest {digest!r} is not sha256:<64 hex>")
    registry, sep, path = raw.partition("/")
    if not sep or not path:
        raise InvalidReference(f"image {text!r}: no registry host before the repository")
    if not _REGISTRY.match(registry) or not ("." in registry or ":" in registry
                                                or registry == "localhost"):
        raise InvalidReference(f"image {text!r}: {registry!r} is not a registry host[:port]")
    if path.count(":") > 1:
        raise InvalidReference(f"image {text!r}: too many ':' in {path!r}")
    repository, _, tag = path.partition(":")
    if not _REPOSITORY.match(repository):
        raise InvalidReference(f"image {text!r}: repository {repository!r} must be lowercase "
                               "components of letters, digits and . _ - separated by '/'")
    if tag and not (_TAG.match(tag) or _TAG_PATTERN.match(tag)):
        raise InvalidReference(f"image {text!r}: tag {tag!r} is not a valid tag or tag glob")
    if not tag and not digest:
        tag = "latest"
    ref = ImageRef(registry.lower(), repository, tag or None, digest or None, scheme)
    if ref.is_pattern and ref.digest:
        raise InvalidReference(f"image {text!r}: a wildcard tag cannot be pinned to a digest")
    return ref
