"""What every command shares: the loaded config, repository resolution, common options.

Imports of the library happen inside the functions that need them: this module is loaded
by every command, and ``--help`` or ``ls`` must not pay for what ``publish`` uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..cvmfs.compression import PRESETS
from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import Config, RepositoryConfig
    from ..engine.repository import NativeRepository
    from ..publisher import Publisher

F = TypeVar("F", bound=Callable[..., Any])
REPO_ENV = "CVMFS_PUBLISHER_REPO"


@dataclass
class State:
    config_path: Path | None
    verbose: int = 0
    creating: bool = False  # 'init': a --config file that does not exist yet is made
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from ..config import Config

            self._config = Config.load(self.config_path, must_exist=(
                self.config_path is not None and not self.creating))
        return self._config

    def repository(self, spec: str, keys: tuple[Path, ...] = (), fqrn: str | None = None
                   ) -> NativeRepository:
        """Any repository to read: a configured name, a directory or a URL."""
        from ..repositories import open_reader

        return open_reader(spec, self.config, keys=list(keys), fqrn=fqrn)

    def configured(self, name: str) -> RepositoryConfig:
        """A repository we write to: it must be in the config."""
        from ..repositories import configured

        return configured(self.config, name)

    def publisher(self, name: str, **overrides: Any) -> Publisher:
        from ..repositories import open_publisher

        return open_publisher(self.configured(name), **overrides)

    def default_repository(self) -> str:
        """``$CVMFS_PUBLISHER_REPO``, else the config's ``default_repository``."""
        name = self.config.default_name()
        if not name:
            raise UsageError(f"no repository given: use --repo NAME, or set {REPO_ENV} or "
                             f"default_repository in {self.config.path}")
        return name


pass_state = click.make_pass_decorator(State)


def default_repo(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """An omitted --repo is the default repository (resolved only when needed)."""
    if value:
        return value
    state = ctx.find_object(State)
    if state is None:
        state = State(None)
    name = state.default_repository()
    return (name,) if isinstance(value, tuple) else name


def _complete_repos(ctx: click.Context, _param: click.Parameter, incomplete: str
                    ) -> list[str]:
    """Shell completion: the configured repository names."""
    from ..config import Config
    from ..errors import PublisherError

    root = ctx.find_root()
    path = root.params.get("config_path") if root is not None else None
    try:
        names = Config.load(path).repositories
    except PublisherError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


_DEFAULT_HELP = f" [default: ${REPO_ENV}, else default_repository in the config]"


def configured_repo_option(func: F) -> F:
    """``--repo NAME``: a configured repository (commands that write need its keys)."""
    return click.option("--repo", "-r", "repo", metavar="NAME", callback=default_repo,
                        shell_complete=_complete_repos,
                        help="Configured repository." + _DEFAULT_HELP)(func)


def repo_option(required: bool = True) -> Callable[[F], F]:
    """``--repo NAME|DIR|URL``: any repository to read; ``required`` False: may be omitted
    even without a default repository."""
    return click.option("--repo", "-r", "repo", metavar="NAME|DIR|URL",
                        callback=default_repo if required else None,
                        shell_complete=_complete_repos,
                        help="Configured repository name, repository directory or http(s) "
                             "URL." + (_DEFAULT_HELP if required else ""))


def read_options(func: F) -> F:
    """Options for reading any repository: who to trust, and under what name."""
    func = click.option("--fqrn", metavar="NAME",
                        help="Expected repository name (default: from config, URL or manifest).")(
                            func)
    func = click.option("--key", "keys", multiple=True, type=click.Path(path_type=Path,
                        dir_okay=False), metavar="FILE.pub",
                        help="Master public key to trust (repeatable).")(func)
    return repo_option()(func)


def s3_flags(func: F) -> F:
    """``--endpoint``, ``--region`` and ``--s3 KEY=VALUE`` (read with ``s3_mapping``)."""
    for decorator in reversed([
        click.option("--endpoint", metavar="URL", help="S3 endpoint URL (for s3:// storage)."),
        click.option("--region", metavar="REGION", help="S3 region (for s3:// storage)."),
        click.option("--s3", "s3_options", multiple=True, metavar="KEY=VALUE",
                     help="Any other S3 setting of docs/s3.md (profile, credentials_file, acl, "
                          "public_url, ...); never secrets: those come from the environment "
                          "or files."),
    ]):
        func = decorator(func)
    return func


def s3_mapping(endpoint: str | None, region: str | None, items: tuple[str, ...]
               ) -> dict[str, str]:
    """The ``s3:`` settings ``--endpoint``, ``--region`` and ``--s3 KEY=VALUE`` give.

    Credentials are refused here: command lines end up in shell histories and ``ps``.
    """
    mapping = {k: v for k, v in (("endpoint", endpoint), ("region", region)) if v}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--s3 {item!r} is not KEY=VALUE")
        if "secret" in key.lower() or "access_key" in key.lower():
            raise UsageError("S3 credentials never go on the command line: use the "
                             "environment, an AWS profile or credentials_file")
        mapping[key] = value
    return mapping


def compression_option(func: F) -> F:
    """``--compression``: the preset of this run's new objects (``cvmfs.compression``)."""
    return click.option(
        "--compression", type=click.Choice(PRESETS),
        help="Object compressor: zlib (upstream's bytes), balanced (libdeflate, ~2.5x zlib's "
             "speed) or fast (ISA-L, ~10x, objects ~10% larger) [default: the config's, "
             "else balanced].")(func)


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
