"""Collecting file system events until an area is quiet, and judging what has settled.

Events only say *that* something changed; what changed is always found by scanning the
area. The aggregator answers two questions: is it time to sync (quiet for the quiet
period, or changes pending longer than the maximum delay), and which files are still
being written. With inotify a file is settled when its last event was ``closed``,
``created`` (files moved in or made before the watch existed get no ``closed``), a move
or an attribute change (``chmod``, ``touch``) that did not interrupt a write; a
``modified`` without a later ``closed`` means a writer still has it open. Its size and
mtime must also be what they were at that last event. A polling observer sees no
``closed``: there a path is settled once it stopped changing for the quiet period, and
its size and mtime are still those the last poll saw. Events that arrive while a sync
runs stay pending for the next one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler

SETTLED_KINDS = ("closed", "created", "moved", "attrib")


@dataclass
class _Seen:
    kind: str
    stat: tuple[int, int] | None  # (size, mtime_ns) right after the event
    seq: int = 0  # order of arrival, so a sync takes only what it has seen


@dataclass(eq=False)  # watchdog keeps handlers in sets
class Aggregator(FileSystemEventHandler):
    """Fed by watchdog's thread (``on_any_event``), read by the sync loop."""

    root: Path | None  # None: a polled source without a local root
    quiet: float
    max_delay: float
    polling: bool = False
    clock: object = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _first: float | None = None
    _last: float = 0.0
    _seq: int = 0
    overflowed: bool = False

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or \
                (event.is_directory and event.event_type == "modified"):
            return  # reading files and a directory's own mtime say nothing new
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self._note(os.fsdecode(raw), event.event_type)

    def _note(self, path: str, kind: str) -> None:
        rel = os.path.relpath(path, self.root)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):  # "..notes" is inside
            self.record("" if rel == "." else rel, kind, _stat(path))

    def record(self, rel: str, kind: str, stat: tuple[int, int] | None = None) -> None:
        """One change of ``rel`` (relative to the area); polled sources call this."""
        with self._lock:
            now = self.clock()  # type: ignore[operator]
            before = self._seen.get(rel)
            if kind == "attrib" and before is not None and before.kind not in SETTLED_KINDS:
                kind = before.kind  # a chmod while a writer has the file open
            self._seq += 1
            self._seen[rel] = _Seen(kind, stat, self._seq)
            self._first = self._first if self._first is not None else now
            self._last = now

    def mark_overflow(self) -> None:
        """Events were lost (a queue overflow): the next sync rescans everything anyway."""
        with self._lock:
            self.overflowed = True
            now = self.clock()  # type: ignore[operator]
            self._first = self._first if self._first is not None else now
            self._last = now

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._first is not None

    def due(self) -> bool:
        """Quiet for the quiet period, or pending for longer than the maximum delay."""
        with self._lock:
            if self._first is None:
                return False
            now = self.clock()  # type: ignore[operator]
            return now - self._last >= self.quiet or now - self._first >= self.max_delay

    def wait_time(self) -> float:
        """Seconds until ``due`` could become true (for sleeping between checks)."""
        with self._lock:
            if self._first is None:
                return self.quiet
            now = self.clock()  # type: ignore[operator]
            return max(0.05, min(self._last + self.quiet, self._first + self.max_delay) - now)

    def mark(self) -> int:
        """Where a sync starts: ``take(keep, mark)`` leaves later events pending."""
        with self._lock:
            return self._seq

    def unsettled(self) -> set[str]:
        """Paths a writer may still have open (relative to the area). Polling sees no
        ``closed``: there only a size or mtime that moved since the last poll counts."""
        with self._lock:
            seen = dict(self._seen)
        root = self.root or Path(".")
        return {rel for rel, s in seen.items()
                if (not self.polling and s.kind not in SETTLED_KINDS and s.kind != "deleted")
                or (s.stat is not None and _stat(str(root / rel)) != s.stat)}

    def take(self, keep: set[str], mark: int | None = None) -> None:
        """A sync consumed the events up to ``mark`` (default: all); ``keep`` (still
        unsettled) and events that arrived since stay pending."""
        with self._lock:
            upto = self._seq if mark is None else mark
            self._seen = {rel: s for rel, s in self._seen.items()
                          if rel in keep or s.seq > upto}
            self.overflowed = False
            now = self.clock()  # type: ignore[operator]
            self._first = now if self._seen else None
            self._last = now if keep else self._last


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
