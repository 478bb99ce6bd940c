"""The watch loop: events in, one publish per quiet area, retries with back-off.

At start every area is compared with its index (changes made while the watcher was down
are published); afterwards an area syncs when its aggregator says it is due, after an
event queue overflow, and at every periodic rescan. A failed sync is retried with
exponential back-off and never touches the area's files. The loop runs in the caller's
thread, so SIGTERM (raised there as an exception) abandons a publish cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from ..errors import PublisherError
from .area import AreaSync, SyncResult
from .events import Aggregator
from .folder import FolderSource
from .snapshot import Snapshot

log = logging.getLogger(__name__)
MAX_BACKOFF = 300.0


@dataclass
class WatchSettings:
    quiet: float = 3.0
    max_delay: float = 60.0
    rescan: float = 600.0  # full comparison with the index, whatever the events said
    poll_interval: float = 5.0  # buckets, and folders with --poll


@dataclass
class _Watched:
    sync: AreaSync
    events: Aggregator
    retry_at: float = 0.0
    listing: dict[str, tuple] = field(default_factory=dict)  # buckets: the last listing
    polled_at: float = 0.0


Report = Callable[[AreaSync, SyncResult | None, str], None]


class Watcher:
    def __init__(self, areas: list[AreaSync], settings: WatchSettings, report: Report,
                 stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.settings, self.report, self.clock = settings, report, clock
        self.stop = stop or threading.Event()
        self.watched = [_Watched(area, Aggregator(
            getattr(area.source, "root", None), settings.quiet, settings.max_delay,
            polling=area.source.polling, clock=clock)) for area in areas]
        self.observers: list[BaseObserver] = []

    def run(self) -> None:
        self._observe()
        try:
            for item in self.watched:
                self._sync(item)  # catch up with what happened while we were down
            next_rescan = self.clock() + self.settings.rescan
            while not self.stop.is_set():
                if self.clock() >= next_rescan:
                    for item in self.watched:
                        item.events.mark_overflow()
                    next_rescan = self.clock() + self.settings.rescan
                self._round()
                self.stop.wait(self._sleep())
        finally:
            for observer in self.observers:
                observer.stop()
            for observer in self.observers:
                observer.join(timeout=10)

    def _observe(self) -> None:
        for item in self.watched:
            source = item.sync.source
            if not isinstance(source, FolderSource):
                continue
            try:
                observer = self._start(item, source.polling)
            except OSError as exc:  # e.g. the inotify watch limit: polling still works
                log.warning("%s: cannot watch with inotify (%s); polling every %s s",
                            source.name, exc.strerror, self.settings.poll_interval)
                item.events.polling = True
                observer = self._start(item, True)
            self.observers.append(observer)

    def _start(self, item: _Watched, polling: bool) -> BaseObserver:
        observer = PollingObserver(timeout=self.settings.poll_interval) if polling \
            else Observer()
        observer.schedule(item.events, str(item.events.root), recursive=True)
        observer.start()
        return observer

    def _round(self) -> None:
        now = self.clock()
        for item in self.watched:
            if not isinstance(item.sync.source, FolderSource) and \
                    now - item.polled_at >= self.settings.poll_interval:
                self._poll(item)
            if item.events.due() and now >= item.retry_at:
                self._sync(item)

    def _poll(self, item: _Watched) -> None:
        """Buckets have no events: a changed listing is one."""
        item.polled_at = self.clock()
        try:
            snapshot: Snapshot = item.sync.source.scan()
        except PublisherError as exc:
            self._failed(item, str(exc))
            return
        listing = {p: s.signature for p, s in snapshot.paths.items()}
        changed = {p for p in set(listing) | set(item.listing)
                   if listing.get(p) != item.listing.get(p)}
        item.listing = listing
        for rel in changed:
            item.events.record(rel, "modified")

    def _sync(self, item: _Watched) -> None:
        mark = item.events.mark()  # events from here on belong to the next sync
        unsettled = item.events.unsettled()
        try:
            result = item.sync.sync(unsettled)
        except PublisherError as exc:
            self._failed(item, str(exc))
            return
        item.events.take(unsettled, mark)
        item.retry_at = 0.0
        if not item.listing and item.sync.last_snapshot is not None:
            item.listing = {p: s.signature for p, s in item.sync.last_snapshot.paths.items()}
        self.report(item.sync, result, "")

    def _failed(self, item: _Watched, error: str) -> None:
        item.sync.failed(error)
        failures = item.sync.state.status.failures
        item.retry_at = self.clock() + min(MAX_BACKOFF, self.settings.quiet * 2 ** failures)
        self.report(item.sync, None, error)

    def _sleep(self) -> float:
        waits = [item.events.wait_time() for item in self.watched]
        waits.append(self.settings.poll_interval)
        return max(0.05, min(waits))
