"""Everything the CLI shows: progress, tables, JSON, one-line errors. Only the CLI prints.

What a repository holds (file names, symlink targets, tag messages, image names) is
untrusted text: it is printed literally, never read as markup, and control characters are
shown escaped (``\\x1b``), so no name can recolour, rewrite or hide terminal output.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

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


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """Aligned columns; every cell is literal text."""
    grid = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(Text(printable(str(v))) for v in row))
    Console(file=sys.stdout, highlight=False, emoji=False, soft_wrap=True).print(grid)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class PublishProgress:
    """Files and bytes handed to the object pipeline; silent when not on a terminal."""

    def __init__(self, total_files: int | None, total_bytes: int | None, enabled: bool) -> None:
        self.enabled = enabled and stderr.is_terminal
        self.lock = threading.Lock()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True, highlight=False, emoji=False),
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
