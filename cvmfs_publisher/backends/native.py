"""The native backend: the toolkit writes the repository itself (the default)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..engine.repository import NativeRepository
from ..engine.transaction import Transaction
from ..publisher import Progress


class NativePublisher:
    def __init__(self, repository: NativeRepository) -> None:
        self.repository = repository
        self.name = repository.fqrn or repository.storage.location

    @contextlib.contextmanager
    def session(self, *, wait: bool = False, progress: Progress | None = None
                ) -> Iterator[Transaction]:
        with self.repository.transaction(wait=wait, progress=progress) as txn:
            yield txn
