"""What every command shares: the loaded config, repository resolution, common options."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import Config
from ..engine.repository import NativeRepository
from ..errors import UsageError
from ..publisher import Publisher
from ..repositories import open_publisher, open_reader

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    config_path: Path | None
    verbose: int = 0
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = Config.load(self.config_path)
        return self._config

    def repository(self, spec: str, keys: tuple[Path, ...] = (), fqrn: str | None = None
                   ) -> NativeRepository:
        """Any repository to read: a configured name, a directory or a URL."""
        return open_reader(spec, self.config, keys=list(keys), fqrn=fqrn)

    def publisher(self, name: str, **overrides: Any) -> Publisher:
        """A repository we write to: it must be in the config."""
        return open_publisher(self.config.get(name), **overrides)


pass_state = click.make_pass_decorator(State)


def repo_option(required: bool = True) -> Callable[[F], F]:
    return click.option("--repo", "-r", "repo", required=required, metavar="NAME|DIR|URL",
                        help="Configured repository name, repository directory or http(s) URL.")


def read_options(func: F) -> F:
    """Options for reading any repository: who to trust, and under what name."""
    func = click.option("--fqrn", metavar="NAME",
                        help="Expected repository name (default: from config, URL or manifest).")(
                            func)
    func = click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path,
                        dir_okay=False), metavar="FILE.pub",
                        help="Master public key to trust (repeatable).")(func)
    return repo_option()(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Machine-readable JSON on stdout.")(func)


def parse_when(text: str | None) -> dt.datetime | None:
    """``--as-of``: an ISO date or date-time, UTC unless it says otherwise."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--as-of {text!r} is not an ISO date like 2026-12-01 or "
                         "2026-12-01T12:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
