"""Everything the CLI shows: progress, tables, JSON, one-line errors. Only the CLI prints.

What a repository holds (file names, symlink targets, tag messages, image names) is
untrusted text: it is printed literally, never read as markup, and control characters are
shown escaped (``\\x1b``), so no name can recolour, rewrite or hide terminal output.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

# rich (progress bars) is imported by the classes that draw them: most commands never do

# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what is shown
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` as it may reach a terminal: controls and undecodable bytes escaped."""
    escaped = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


class Terminal:
    """Lines for people, on whatever ``sys.stdout``/``sys.stderr`` is when they are printed."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def stream(self) -> TextIO:
        return getattr(sys, self.name)

    @property
    def is_terminal(self) -> bool:
        return self.stream.isatty()

    def print(self, *objects: object, markup: bool = False) -> None:
        """Like ``print``; ``markup`` is accepted and ignored: nothing is ever markup."""
        self.stream.write(" ".join(printable(str(o)) for o in objects) + "\n")


stdout = Terminal("stdout")
stderr = Terminal("stderr")


def bar_shown(enabled: bool) -> bool:
    """Whether a progress bar asked for is drawn: only on a terminal (stderr)."""
    return enabled and stderr.is_terminal


def emit_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """Aligned columns, two spaces apart; every cell is literal text."""
    header = [printable(str(c)) for c in columns]
    body = [[printable(str(v)) for v in row] for row in rows]
    widths = [max([len(header[i])] + [len(r[i]) for r in body if i < len(r)])
              for i in range(len(header))]
    out = sys.stdout
    for cells in [header, *body]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
        out.write(line.rstrip() + "\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


class PublishProgress:
    """Files and bytes handed to the object pipeline; silent when not on a terminal."""

    def __init__(self, total_files: int | None, total_bytes: int | None, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.enabled = bar_shown(enabled)
        self.lock = threading.Lock()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=_console(),
            transient=True,
            disable=not self.enabled,
        )
        self.task = self.progress.add_task("publishing", total=total_bytes, files=0)
        self.files = 0
        self.total_files = total_files

    def __enter__(self) -> PublishProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, files: int, nbytes: int) -> None:
        with self.lock:
            self.files += files
            shown = f"{self.files}/{self.total_files}" if self.total_files else str(self.files)
            self.progress.update(self.task, advance=nbytes, files=shown)


class WorkProgress:
    """Objects read, keys listed and objects deleted while a long command (``verify``,
    ``gc``) works, fed by ``repositories.observed``; a bar that moves while the counts
    grow, shown on a terminal only and only once the run takes longer than ``DELAY``
    seconds, so quick runs print nothing extra."""

    DELAY = 1.0  # seconds before a bar appears

    def __init__(self, description: str, enabled: bool) -> None:
        self.enabled = bar_shown(enabled)
        self.description = description
        self.after = self.DELAY
        self.lock = threading.Lock()
        self.read = self.bytes = self.listed = self.deleted = 0
        self.progress: Any = None
        self.task: Any = None
        self.started = 0.0
        self.closed = False

    def __enter__(self) -> WorkProgress:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.closed = True
            if self.progress is not None:
                self.progress.stop()

    def _show(self) -> None:
        """Start drawing once the run is long enough to be worth a bar."""
        if (not self.enabled or self.closed
                or time.monotonic() - self.started < self.after):
            return
        if self.progress is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                console=_console(), transient=True)
            self.task = self.progress.add_task(self.description, total=None, counts="")
            self.progress.start()
            self._update()
            self.progress.refresh()
            return
        self._update()

    def _update(self) -> None:
        parts = [f"{self.read} objects read ({human_bytes(self.bytes)})"]
        if self.listed:
            parts.append(f"{self.listed} listed")
        if self.deleted:
            parts.append(f"{self.deleted} deleted")
        self.progress.update(self.task, counts=", ".join(parts))

    def on_read(self, nbytes: int) -> None:
        with self.lock:
            self.read += 1
            self.bytes += nbytes
            self._show()

    def on_list(self) -> None:
        with self.lock:
            self.listed += 1
            if self.listed % 256 == 0:
                self._show()

    def on_delete(self, keys: int = 1) -> None:
        with self.lock:
            self.deleted += keys
            self._show()
