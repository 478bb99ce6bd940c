"""The documents of the web view: one function per page, JSON-ready dicts.

The HTML pages render exactly these documents and ``/api/`` returns them as JSON, so a
script sees what a person sees (``docs/web.md`` lists every field). Everything is read the
way a client reads it: the head's signatures are checked on every request, catalogs and
files by their content hashes. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from ..cvmfs.catalog import Catalog, DirEntry, decode_xattrs
from ..cvmfs.compression import Compression
from ..cvmfs.counters import Tally
from ..cvmfs.hashes import ContentHash, parse_object_key
from ..cvmfs.history import RESERVED, Tag
from ..cvmfs.names import display, is_within
from ..engine.diff import diff as diff_trees
from ..engine.reachability import walk_catalogs
from ..engine.reader import RepositoryReader
from ..engine.repository import WHITELIST_WARN_DAYS, NativeRepository
from ..engine.trust import TrustedHead
from ..engine.views import entry_kind
from ..entries import Kind
from ..errors import FormatError, PathNotFound, SignatureError, UsageError
from ..releases import provenance
from ..watch.state import AreaStatus, statuses

LISTING_LIMIT = 1000  # directory entries per page (HTML and API default)
LISTING_MAX = 10_000  # the most ``limit`` may ask for
DIFF_LIMIT = 5000  # changes listed; the summary still counts every change
SUBTREE_BUDGET = 100_000  # entries walked to size added/removed directories of one diff
FRONT_ENDS = {"cli": "command line", "ci": "CI", "watch": "watched folder",
              "unpacker": "unpacker"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TYPE_BITS = {Kind.DIR: stat.S_IFDIR, Kind.FILE: stat.S_IFREG, Kind.SYMLINK: stat.S_IFLNK,
              Kind.FIFO: stat.S_IFIFO, Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK}


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading -------------------------------------------------------------------------------


@dataclass
class Served:
    """One repository the server shows: its name in URLs and how to read it."""

    name: str
    repository: NativeRepository
    object_counts: dict[str, dict] = field(default_factory=dict)  # root hash -> counts
    lock: threading.Lock = field(default_factory=threading.Lock)


class View:
    """One request's verified look at one repository; ``close`` releases its catalogs.

    The head is checked as a client checks it. A whitelist that has expired is the one
    failure still shown (the overview must be able to say so): the head is then checked
    again with every signature but the expiry, and ``expired`` is set.
    """

    def __init__(self, served: Served, now: dt.datetime) -> None:
        self.served = served
        self.now = now
        repository = served.repository
        self.expired = False
        try:
            self.head: TrustedHead = repository.head(now)
        except SignatureError as first:
            try:
                head = repository.head(_EPOCH)
            except SignatureError:
                raise first from None
            if head.whitelist.valid_at(now):
                raise
            self.head, self.expired = head, True
        self.reader = RepositoryReader(repository.storage, self.head.manifest,
                                       repository.cache())
        self._readers: list[RepositoryReader] = [self.reader]

    @property
    def name(self) -> str:
        return self.served.name

    def at(self, spec: str | None) -> tuple[Tag, RepositoryReader]:
        """A tag, a revision number or ``trunk``, and a reader of that revision's tree."""
        tag = self.reader.resolve(spec)
        if tag.root_hash == self.head.manifest.root_catalog:
            return tag, self.reader
        manifest = self.head.manifest.evolve(root_catalog=tag.root_hash, catalog_size=0)
        reader = RepositoryReader(self.reader.storage, manifest, self.reader.cache)
        self._readers.append(reader)
        return tag, reader

    def tags(self) -> list[Tag]:
        history = self.reader.history()
        if history is None:
            return []
        try:
            return history.tags()
        finally:
            history.conn.close()

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


# -- entries ---------------------------------------------------------------------------------


def mode_string(entry: DirEntry) -> str:
    mode = entry.mode
    if not stat.S_IFMT(mode):
        mode |= _TYPE_BITS[entry_kind(entry)]
    return stat.filemode(mode)


def entry_doc(path: str, entry: DirEntry) -> dict:
    """What ``ls -l`` and ``stat`` would show of one entry, plus its CVMFS particulars.

    Every entry has every key (None or False where it does not apply), so scripts can rely
    on the shape.
    """
    kind = entry_kind(entry)
    regular = kind is Kind.FILE
    return {
        "name": entry.name if path else "", "path": display(path), "type": kind.value,
        "mode": f"{stat.S_IMODE(entry.mode):04o}", "mode_string": mode_string(entry),
        "uid": entry.uid, "gid": entry.gid, "mtime": entry.mtime,
        "mtime_utc": iso(entry.mtime),
        "size": entry.size if regular else None,
        "target": entry.symlink if kind is Kind.SYMLINK else None,
        "device": {"major": entry.size >> 8, "minor": entry.size & 0xFF}
        if kind in (Kind.CHAR, Kind.BLOCK) else None,
        "link_count": entry.linkcount,
        "hardlink_group": entry.hardlink_group or None,
        "nested_catalog": kind is Kind.DIR and (entry.is_mountpoint or entry.is_nested_root),
        "chunked": regular and entry.is_chunked,
        "external": regular and entry.is_external,
        "content_hash": str(entry.content_hash) if regular and entry.content_hash else None,
        "hash_algorithm": entry.hash_algorithm.name.lower() if regular else None,
        "compression": ("zlib" if entry.compression is Compression.ZLIB else "none")
        if regular else None,
    }


def catalog_of(reader: RepositoryReader, path: str) -> dict:
    """The catalog that holds ``path``'s row (a mountpoint's is its own nested catalog)."""
    content_hash, size = reader.manifest.root_catalog, reader.manifest.catalog_size
    catalog = reader.catalog(content_hash, size)
    while True:
        ref = next((r for r in catalog.nested() if is_within(path, r.path)), None)
        if ref is None:
            return {"mountpoint": display(catalog.mountpoint), "hash": str(content_hash),
                    "rows": catalog.row_count(), "nested": catalog.mountpoint != ""}
        content_hash = ref.content_hash
        catalog = reader.catalog(ref.content_hash, ref.size)


def _revision_doc(tag: Tag, spec: str | None) -> dict:
    return {"spec": spec or "trunk", "revision": tag.revision, "root_hash": str(tag.root_hash),
            "timestamp": tag.timestamp, "published_utc": iso(tag.timestamp),
            "tag": tag.name or None}


# -- overview ----------------------------------------------------------------------------------


def _totals(catalog: Catalog) -> Tally:
    counters = catalog.counters()
    return counters.own + counters.subtree


def _objects(served: Served, root: ContentHash) -> dict:
    """Objects in storage (count and stored bytes), listed once per published revision."""
    storage = served.repository.storage
    if not storage.capabilities().listable:
        return {"count": None, "bytes": None, "note": "this storage cannot be listed"}
    key = str(root)
    with served.lock:
        cached = served.object_counts.get(key)
    if cached is not None:
        return cached
    count = total = 0
    unknown = False
    for name, size in storage.list_with_sizes("data/"):
        try:
            parse_object_key(name)
        except FormatError:
            continue
        count += 1
        if size < 0:
            unknown = True
        else:
            total += size
    result = {"count": count, "bytes": None if unknown else total, "note": None}
    with served.lock:
        served.object_counts.clear()
        served.object_counts[key] = result
    return result


def front_end(description: str) -> str:
    """Which front end published a revision, from what it wrote in the tag description.

    ``watch <area>: ...`` is the watcher, ``unpack...`` the unpacker, a recorded git
    commit (``git=``) the CI commands (``ci publish``, ``ci post-receive``); everything
    else (``publish``, ``rm``, ``rollback``, ``release publish``) the command line.
    """
    message, record = provenance.parse(description)
    if message.startswith("watch "):
        return "watch"
    if message.startswith("unpack"):
        return "unpacker"
    if record.git or record.pipeline:
        return "ci"
    return "cli"


def _area_doc(area: AreaStatus) -> dict:
    doc = asdict(area)
    doc["last_sync_utc"] = iso(area.last_sync)
    return doc


def publishers(served: Served, tags: list[Tag],
               watch_statuses: Callable[[str], list[AreaStatus]]) -> list[dict]:
    """The last publish of each front end, with the errors each one records."""
    latest: dict[str, Tag] = {}
    for tag in sorted(tags, key=lambda t: (t.revision, t.timestamp)):
        if tag.name not in RESERVED:
            latest[front_end(tag.description)] = tag
    try:
        areas = watch_statuses(served.name)
    except OSError:
        areas = []
    result = []
    for key, label in FRONT_ENDS.items():
        tag = latest.get(key)
        last = None
        if tag is not None:
            message, _ = provenance.parse(tag.description)
            last = {"revision": tag.revision, "timestamp": tag.timestamp,
                    "published_utc": iso(tag.timestamp), "tag": tag.name, "message": message}
        doc: dict = {"front_end": key, "label": label, "last_publish": last,
                     "errors": [], "errors_recorded": key == "watch"}
        if key == "watch":
            doc["areas"] = [_area_doc(a) for a in areas]
            for area in areas:
                if area.last_error:
                    doc["errors"].append(f"{area.area}: {area.last_error} "
                                         f"({area.failures} failed attempts in a row)")
                if area.problems:
                    doc["errors"].append(f"{area.area}: {len(area.problems)} paths refused by "
                                         f"the last scan")
        doc["state"] = "error" if doc["errors"] else ("ok" if last else "never")
        result.append(doc)
    return result


def overview(view: View, watch_statuses: Callable[[str], list[AreaStatus]] = statuses
             ) -> dict:
    head, reader, served = view.head, view.reader, view.served
    manifest = head.manifest
    root = reader.root_catalog()
    totals = _totals(root)
    whitelist = head.whitelist
    left = whitelist.expires - view.now
    tags = view.tags()
    lock = None
    with contextlib.suppress(Exception):  # a storage without locks, or one we cannot read
        holder = served.repository.storage.lock_holder()
        if holder is not None:
            lock = {**asdict(holder), "since_utc": iso(holder.since)}
    storage = served.repository.storage
    return {
        "repository": view.name,
        "revision": manifest.revision,
        "published": root.last_modified,
        "published_utc": iso(root.last_modified),
        "root_hash": str(manifest.root_catalog),
        "ttl": manifest.ttl,
        "garbage_collectable": manifest.garbage_collectable,
        "storage": {"location": storage.location, "public_url": storage.public_url()},
        "whitelist": {
            "expires_utc": iso(whitelist.expires.timestamp()),
            "seconds_left": int(left.total_seconds()),
            "expired": view.expired,
            "warning": view.expired or left < dt.timedelta(days=WHITELIST_WARN_DAYS),
            "warn_days": WHITELIST_WARN_DAYS,
            "certificates": len(whitelist.fingerprints),
        },
        "content": {"files": totals.regular, "directories": totals.dir,
                    "symlinks": totals.symlink, "special": totals.special,
                    "bytes": totals.file_size, "chunked_files": totals.chunked,
                    "catalogs": 1 + totals.nested},
        "objects": _objects(served, manifest.root_catalog),
        "tags": len([t for t in tags if t.name not in RESERVED
                     and not t.name.startswith(("generic-", "generic_"))]),
        "publishers": publishers(served, tags, watch_statuses),
        "lock": lock,
    }


# -- history -----------------------------------------------------------------------------------


def _tag_doc(tag: Tag) -> dict:
    message, record = provenance.parse(tag.description)
    return {"name": tag.name, "automatic": tag.name.startswith(("generic-", "generic_")),
            "description": tag.description, "message": message,
            "provenance": {k: v for k, v in asdict(record).items() if v},
            "front_end": front_end(tag.description)}


def history(view: View) -> dict:
    """Every revision the tag database knows, newest first, with its tags."""
    current = view.head.manifest
    by_revision: dict[int, dict] = {}
    for tag in view.tags():
        if tag.name in RESERVED:
            continue
        item = by_revision.setdefault(tag.revision, {
            "revision": tag.revision, "timestamp": tag.timestamp,
            "published_utc": iso(tag.timestamp), "root_hash": str(tag.root_hash),
            "current": tag.root_hash == current.root_catalog, "tags": []})
        item["tags"].append(_tag_doc(tag))
    if current.revision not in by_revision:
        head = view.reader.root_tag(current.root_catalog)
        by_revision[current.revision] = {
            "revision": current.revision, "timestamp": head.timestamp,
            "published_utc": iso(head.timestamp), "root_hash": str(current.root_catalog),
            "current": True, "tags": []}
    revisions = sorted(by_revision.values(), key=lambda r: -r["revision"])
    for item in revisions:
        named = [t for t in item["tags"] if not t["automatic"]]
        item["front_end"] = (named or item["tags"] or [{"front_end": None}])[0]["front_end"]
    return {"repository": view.name, "current_revision": current.revision,
            "revisions": revisions}


# -- browsing ----------------------------------------------------------------------------------


def tree(view: View, spec: str, path: str, offset: int = 0, limit: int = LISTING_LIMIT
         ) -> dict:
    """One path of one revision: the entry, its catalog, and a directory's children."""
    if offset < 0 or not 1 <= limit <= LISTING_MAX:
        raise UsageError(f"offset must be >= 0 and limit from 1 to {LISTING_MAX}")
    tag, reader = view.at(spec)
    found = reader.require(path)
    doc: dict = {"repository": view.name, "revision": _revision_doc(tag, spec),
                 "entry": entry_doc(path, found.entry), "catalog": catalog_of(reader, path)}
    entry = found.entry
    if entry.is_directory:
        children = reader.listdir(path)
        doc["total"] = len(children)
        doc["offset"], doc["limit"] = offset, limit
        doc["entries"] = [entry_doc(f"{path}/{c.name}", c)
                          for c in children[offset:offset + limit]]
    elif entry.is_regular:
        doc["chunks"] = [{"offset": c.offset, "size": c.size, "hash": str(c.content_hash)}
                         for c in found.catalog.chunks(path)] if entry.is_chunked else []
        doc["hardlinks"] = _hardlink_siblings(reader, path, entry)
        doc["xattrs"] = {k: v.decode("utf-8", "backslashreplace")
                         for k, v in decode_xattrs(entry.xattr).items()}
    return doc


def _hardlink_siblings(reader: RepositoryReader, path: str, entry: DirEntry) -> list[str]:
    """The other names of a hard-linked file (CVMFS keeps a group within one directory)."""
    if not entry.hardlink_group:
        return []
    parent = path.rsplit("/", 1)[0]
    return [display(f"{parent}/{c.name}") for c in reader.listdir(parent)
            if c.hardlink_group == entry.hardlink_group and c.name != entry.name]


def open_file(view: View, spec: str, path: str) -> tuple[DirEntry, Iterator[bytes]]:
    """A regular file of a revision and its bytes (each object hash-checked before use)."""
    _, reader = view.at(spec)
    found = reader.require(path)
    if not found.entry.is_regular:
        raise PathNotFound(f"{display(path)} is not a regular file")
    return found.entry, reader.read(path)


# -- diff ----------------------------------------------------------------------------------------


def _size_of(reader: RepositoryReader, path: str, budget: list[int]) -> int | None:
    """A file's size, or the file bytes below an added or removed directory (None for
    other types, or once the walk budget of the whole diff is spent)."""
    found = reader.lookup(path)
    if found is None:
        return None
    entry = found.entry
    if entry.is_regular:
        return entry.size
    if not entry.is_directory:
        return None
    if entry.is_mountpoint:
        return _totals(reader.catalog_for(path)).file_size
    total = 0
    for _path, child in reader.walk(path):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if child.is_regular:
            total += child.size
    return total


def diff(view: View, old: str, new: str, limit: int = DIFF_LIMIT) -> dict:
    """Paths added, removed and changed from ``old`` to ``new``, with their sizes.

    An added or removed directory is one change sized by the files below it; a changed
    directory (its mtime, mode, ...) has no size, its changed children are listed too.
    """
    tag_a, reader_a = view.at(old)
    tag_b, reader_b = view.at(new)
    changes = sorted(diff_trees(view.reader, tag_a.root_hash, tag_b.root_hash),
                     key=lambda c: c.path)
    summary = {"added": 0, "removed": 0, "changed": 0, "bytes_added": 0, "bytes_removed": 0}
    budget = [SUBTREE_BUDGET]
    listed = []
    for change in changes:
        summary[change.kind] += 1
        side = reader_a if change.kind == "removed" else reader_b
        found = side.lookup(change.path)
        kind = entry_kind(found.entry) if found else None
        before = after = None
        if change.kind == "added":
            after = _size_of(reader_b, change.path, budget)
            summary["bytes_added"] += after or 0
        elif change.kind == "removed":
            before = _size_of(reader_a, change.path, budget)
            summary["bytes_removed"] += before or 0
        elif kind is not Kind.DIR:
            before = _size_of(reader_a, change.path, budget)
            after = _size_of(reader_b, change.path, budget)
            delta = (after or 0) - (before or 0)
            summary["bytes_added" if delta > 0 else "bytes_removed"] += abs(delta)
        if len(listed) < limit:
            listed.append({
                "change": change.kind, "path": change.path,
                "type": kind.value if kind else None, "fields": list(change.fields),
                "old_size": before, "new_size": after,
                "size_delta": None if before is None and after is None
                else (after or 0) - (before or 0)})
    return {"repository": view.name, "from": _revision_doc(tag_a, old),
            "to": _revision_doc(tag_b, new), "summary": summary, "changes": listed,
            "truncated": len(changes) > limit, "limit": limit}


# -- catalogs ------------------------------------------------------------------------------------


def catalogs(view: View, spec: str) -> dict:
    """Every nested catalog of a revision, parents first, sized by rows and by file bytes,
    flagged where it is above ``autocatalog_max`` rows (or a nested one below the min)."""
    tag, reader = view.at(spec)
    options = view.served.repository.options
    high, low = options.autocatalog_max, options.autocatalog_min
    found: dict[str, dict] = {}
    parents: dict[str, str] = {}
    for content_hash, catalog in walk_catalogs(reader.catalog, [tag.root_hash]):
        own = catalog.counters().own
        rows = catalog.row_count()
        flags = []
        if high is not None and rows > high:
            flags.append("above_max")
        if catalog.mountpoint and rows < low:
            flags.append("below_min")
        mountpoint = catalog.mountpoint
        parent = parents.get(mountpoint)
        nested = catalog.nested()
        parents.update((r.path, mountpoint) for r in nested)
        found[mountpoint] = {
            "mountpoint": display(mountpoint), "hash": str(content_hash), "rows": rows,
            "entries": own.entries(), "bytes": own.file_size,
            "catalog_bytes": catalog.file.stat().st_size,
            "depth": 0 if parent is None else found[parent]["depth"] + 1,
            "parent": None if parent is None else display(parent),
            "children": [display(r.path) for r in nested], "flags": flags}
    # children before parents (deeper first) to add up the subtrees
    for mountpoint in sorted(found, key=lambda m: -found[m]["depth"]):
        item = found[mountpoint]
        kids = [found[k] for k in map(_key, item["children"]) if k in found]
        item["subtree_rows"] = item["rows"] + sum(k["subtree_rows"] for k in kids)
        item["subtree_bytes"] = item["bytes"] + sum(k["subtree_bytes"] for k in kids)
    return {"repository": view.name, "revision": _revision_doc(tag, spec),
            "limits": {"autocatalog_max": high, "autocatalog_min": low},
            "catalogs": [found[m] for m in sorted(found, key=_tree_order)],
            "flagged": sum(1 for item in found.values() if item["flags"])}


def _key(shown_path: str) -> str:
    return "" if shown_path == "/" else shown_path


def _tree_order(mountpoint: str) -> list[str]:
    """Depth-first order: a catalog right before the ones nested in it."""
    return mountpoint.split("/")
