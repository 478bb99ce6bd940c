"""The one publishing interface every front end uses (CLI, CI, watch folder, unpacker).

A session is a transaction: stage any number of replacements and removals, then commit
them as one signed revision, or leave the ``with`` block without committing and nothing
is published. Backends: the native engine, and the classic ``cvmfs_server`` driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol

from .engine.transaction import CommitResult
from .entries import Entry

Progress = Callable[[int, int], None]  # (files, bytes) just handed over


class PublishSession(Protocol):
    def replace(self, path: str, entries: Iterable[Entry]) -> None:
        """Make ``path`` hold exactly the stream's content; everything else is kept."""

    def remove(self, path: str) -> None: ...

    def commit(self, tag: str | None = None, message: str = "") -> CommitResult: ...


class Publisher(Protocol):
    name: str

    def session(
        self, *, wait: bool = False, progress: Progress | None = None
    ) -> contextlib.AbstractContextManager[PublishSession]: ...


def publish(
    publisher: Publisher,
    changes: Iterable[tuple[str, Iterable[Entry] | None]],
    *,
    tag: str | None = None,
    message: str = "",
    wait: bool = False,
    progress: Progress | None = None,
) -> CommitResult:
    """Convenience: apply (path, entries) replacements, (path, None) removals, commit."""
    with publisher.session(wait=wait, progress=progress) as session:
        for path, entries in changes:
            if entries is None:
                session.remove(path)
            else:
                session.replace(path, entries)
        return session.commit(tag, message)

