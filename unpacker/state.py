"""What the repository remembers about each unpacked image, in ``.metadata``.

``unpack.json`` beside DUCC's ``manifest.json`` records the digest the tag pointed at
(compared with one HEAD request per run), the config digest(s) of the flat tree(s), and
``unwished_since``: the time a sync first found the image in no wish. Garbage
collection removes images unwished for longer than its grace period. A time is written
only when it changes, so an unchanged re-run publishes nothing.

``.metadata/.gc/released.json`` maps config digests of flats that lost their last tag to
the time that happened; GC deletes such flats after the grace period, so containers
started from the old tag keep working meanwhile.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from cvmfs_publisher.errors import PublisherError
from cvmfs_publisher.publisher import TreeView

from .layout import METADATA, MULTIARCH, RELEASED_FILE, STATE_FILE, Layout

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass
class ImageState:
    image: str  # <registry>/<repository>:<tag>
    source: str  # the reference as wished
    digest: str  # manifest or index digest the tag resolved to
    flats: dict[str, str] = field(default_factory=dict)  # platform key ("" plain) -> config
    manifests: dict[str, str] = field(default_factory=dict)  # platform key -> manifest digest
    multiarch: bool = False  # tag link is a variant symlink into .multiarch
    unpacked_at: int = 0
    unwished_since: int | None = None
    version: int = STATE_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> ImageState:
        doc = json.loads(data)
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)

    @property
    def configs(self) -> set[str]:
        return set(self.flats.values())


def read_bytes(view: TreeView, path: str) -> bytes | None:
    if view.lookup(path) is None:
        return None
    return b"".join(view.read(path))


def load_state(view: TreeView, layout: Layout, name: str) -> ImageState | None:
    data = read_bytes(view, layout.abs(f"{layout.metadata(name)}/{STATE_FILE}"))
    if data is None:
        return None
    try:
        return ImageState.from_json(data)
    except (ValueError, TypeError) as exc:
        log.warning("ignoring unreadable state of %s: %s", name, exc)
        return None


def load_states(view: TreeView, layout: Layout) -> dict[str, ImageState]:
    """Every image's state, by walking ``.metadata`` (skipping the per-arch copies)."""
    top = layout.abs(METADATA)
    if view.lookup(top) is None:
        return {}
    states: dict[str, ImageState] = {}
    skip = (f"{top}/{MULTIARCH}", f"{top}/.gc")
    for path, entry in view.walk(top):
        if path.startswith(skip) or not path.endswith(f"/{STATE_FILE}") or \
                not entry.is_regular:
            continue
        try:
            state = ImageState.from_json(b"".join(view.read(path)))
        except (ValueError, TypeError, PublisherError) as exc:
            log.warning("ignoring unreadable image state %s: %s", path, exc)
            continue
        states[state.image] = state
    return states


def load_released(view: TreeView, layout: Layout) -> dict[str, int]:
    data = read_bytes(view, layout.abs(RELEASED_FILE))
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        return {str(k): int(v) for k, v in doc.items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s", RELEASED_FILE)
        return {}


def released_json(released: dict[str, int]) -> bytes:
    return json.dumps(released, indent=1, sort_keys=True).encode() + b"\n"
