"""The wishlist: DUCC's version-1 recipe, validated with errors that name the line.

```yaml
version: 1
cvmfs_repo: unpacked.example.org        # or unpacked.example.org/sub/dir
input:
  - https://registry.example.org/group/tool:1.2
  - registry.example.org/group/analysis:21.2.*   # tag glob (fnmatch: * ? [..])
  - registry.example.org/group/pinned@sha256:...
ignoreErrors:                           # failures of matching images only warn
  - '*://registry.example.org/flaky/*'
```
``user`` and ``output_format`` (DUCC's thin images) are accepted and ignored. Tag
wildcards are shell globs, so the ``.`` in ``21.2.*`` is a literal dot (DUCC turned the
tag into an unescaped regular expression where it matched any character).
The YAML is composed to nodes first (PyYAML's safe loader) so each error has a line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cvmfs_publisher.cvmfs.names import check_fqrn
from cvmfs_publisher.errors import PublisherError

from .errors import WishlistError
from .reference import ImageRef, parse_reference

log = logging.getLogger(__name__)

KNOWN_KEYS = ("version", "cvmfs_repo", "input", "ignoreErrors", "user", "output_format")
IGNORED_KEYS = ("user", "output_format")


@dataclass
class Wishlist:
    cvmfs_repo: str
    prefix: str = ""
    inputs: list[ImageRef] = field(default_factory=list)
    ignore_errors: list[str] = field(default_factory=list)
    source: str = "<wishlist>"


def load_wishlist(path: Path) -> Wishlist:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WishlistError(f"cannot read wishlist {path}: {exc}") from None
    return parse_wishlist(text, str(path))


def _where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}"


def _scalar(node: yaml.Node, source: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise WishlistError(f"{_where(source, node)}: {what} must be a single value")
    return str(node.value)


def _strings(node: yaml.Node, source: str, what: str) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.SequenceNode):
        raise WishlistError(f"{_where(source, node)}: {what} must be a list")
    return [(_scalar(item, source, f"each item of {what}"), item) for item in node.value]


def parse_wishlist(text: str, source: str = "<wishlist>") -> Wishlist:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise WishlistError(f"{source}{line}: not valid YAML: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        raise WishlistError(f"{source}:1: a wishlist is a mapping with version, cvmfs_repo "
                            "and input")
    values: dict[str, yaml.Node] = {}
    for key_node, value_node in root.value:
        key = _scalar(key_node, source, "a key")
        if key not in KNOWN_KEYS:
            raise WishlistError(f"{_where(source, key_node)}: unknown key {key!r} "
                                f"(known: {', '.join(KNOWN_KEYS)})")
        if key in values:
            raise WishlistError(f"{_where(source, key_node)}: {key!r} given twice")
        values[key] = value_node
    for key in ("version", "cvmfs_repo", "input"):
        if key not in values:
            raise WishlistError(f"{source}: missing required key {key!r}")
    version = _scalar(values["version"], source, "version")
    if version != "1":
        raise WishlistError(f"{_where(source, values['version'])}: version {version!r} is "
                            "not supported (only 1)")
    repo_text = _scalar(values["cvmfs_repo"], source, "cvmfs_repo")
    fqrn, _, prefix = repo_text.partition("/")
    try:
        check_fqrn(fqrn)
    except PublisherError as exc:
        raise WishlistError(f"{_where(source, values['cvmfs_repo'])}: {exc}") from None
    if any(p in (".", "..") or p.startswith(".") for p in prefix.split("/") if p):
        raise WishlistError(f"{_where(source, values['cvmfs_repo'])}: sub-directory "
                            f"{prefix!r} must be plain, non-hidden names")
    wishlist = Wishlist(fqrn, prefix.strip("/"), source=source)
    for text_item, node in _strings(values["input"], source, "input"):
        try:
            wishlist.inputs.append(parse_reference(text_item))
        except PublisherError as exc:
            raise WishlistError(f"{_where(source, node)}: {exc}") from None
    if "ignoreErrors" in values:
        wishlist.ignore_errors = [g for g, _ in _strings(values["ignoreErrors"], source,
                                                          "ignoreErrors")]
    for key in IGNORED_KEYS:
        if key in values:
            log.info("%s: %r is for DUCC's thin images and is ignored", source, key)
    return wishlist
