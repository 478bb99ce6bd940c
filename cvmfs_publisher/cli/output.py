"""Everything the CLI shows: progress, tables, JSON, one-line errors. Only the CLI prints."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from typing import Any

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

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    grid = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(str(v) for v in row))
    stdout.print(grid)


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
            console=stderr,
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
