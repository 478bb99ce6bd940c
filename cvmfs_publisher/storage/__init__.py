"""Where repository bytes live: a local directory, an HTTP server (read-only), S3."""

from __future__ import annotations

from pathlib import Path

from .base import Storage
from .http import HttpStorage
from .local import LocalStorage


def open_location(location: str, *, read_only: bool = False) -> Storage:
    """A repository root given as a directory or an http(s) URL."""
    if location.startswith(("http://", "https://")):
        return HttpStorage(location)
    return LocalStorage(Path(location), read_only=read_only)


__all__ = ["HttpStorage", "LocalStorage", "Storage", "open_location"]
