"""Opening a storage by its location, so code above this layer never names a backend class.

``open_storage`` picks the backend from the location and then applies the registered
wrappers, in the order they were added (the first is innermost). The registry is how a
test or a tool changes every storage a command opens without touching the command:

    with wrapped_by(lambda storage: FaultInjectingStorage(storage, on_write)):
        cli.main(["publish", ...])   # its storage is wrapped

``add_wrapper`` registers for the rest of the process (a forked crash-test child, say) and
returns the function that removes it again. The registry is process-wide and thread-safe.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Storage
from .local import LocalStorage

Wrap = Callable[[Storage], Storage]

_wrappers: list[Wrap] = []
_mutex = threading.Lock()


def open_storage(location: str, *, fqrn: str | None = None, s3: Mapping[str, Any] | None = None,
                 read_only: bool = False) -> Storage:
    """The storage at ``location``, wrapped by every registered wrapper.

    ``s3://BUCKET[/PREFIX]``: the Stratum 0 root in a bucket; the repository lives below
    ``<fqrn>/``, which is therefore required, and ``s3`` is the ``s3:`` settings mapping.
    ``http(s)://...``: the repository's URL, always read-only. Anything else: the
    repository's directory.
    """
    return _wrap(_open(location, fqrn, s3, read_only))


def check_s3_settings(location: str, s3: Mapping[str, Any] | None, where: str) -> None:
    """The ``s3:`` settings ``open_storage`` would use for ``location``, checked without
    opening anything, so the configuration can refuse a bad one before any command runs.

    Errors name ``where`` (the file and repository); a malformed URL is a ``UsageError``.
    """
    from .s3 import S3Settings  # boto3 takes a while to import: only if used

    S3Settings.from_url_and_mapping(location, s3, where=where)


def _open(location: str, fqrn: str | None, s3: Mapping[str, Any] | None,
          read_only: bool) -> Storage:
    if location.startswith("s3://"):
        if not fqrn:
            raise UsageError(f"{location}: an S3 storage needs the repository name")
        from .s3 import S3Settings, S3Storage  # boto3 takes a while to import: only if used

        settings = S3Settings.from_url_and_mapping(location, s3)
        return S3Storage(settings, fqrn, read_only=read_only)
    if location.startswith(("http://", "https://")):
        from .http import HttpStorage  # requests: only for URLs

        return HttpStorage(location)
    return LocalStorage(Path(location), read_only=read_only)


def _wrap(storage: Storage) -> Storage:
    with _mutex:
        wrappers = list(_wrappers)
    for wrap in wrappers:
        storage = wrap(storage)
    return storage


def add_wrapper(wrap: Wrap) -> Callable[[], None]:
    """Wrap every storage opened from now on; returns the function that stops it."""
    with _mutex:
        _wrappers.append(wrap)

    def remove() -> None:
        with _mutex, contextlib.suppress(ValueError):
            _wrappers.remove(wrap)

    return remove


@contextlib.contextmanager
def wrapped_by(wrap: Wrap) -> Iterator[None]:
    """Wrap every storage opened inside the ``with`` block."""
    remove = add_wrapper(wrap)
    try:
        yield
    finally:
        remove()
