"""The ``cvmfs-publisher`` command: thin click commands over the library."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from .. import __version__
from ..errors import PublisherError, VerificationFailed
from . import (
    bootstrap,
    browse,
    history,
    publish,
    release,
    replicate,
    repo,
    serve,
    unpack,
    verify,
    watch,
)
from .common import State
from .output import printable, stderr


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvmfs-publisher")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="CVMFS_PUBLISHER_CONFIG", metavar="FILE",
              help="Config file [default: $XDG_CONFIG_HOME/cvmfs-publisher/config.yaml].")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Publish signed, transactional CernVM-FS repositories without a cvmfs_server host.

    Start with 'init', publish with 'publish', check with 'verify', serve with 'serve'.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    ctx.obj = State(config_path, verbose)


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives, not at setup time.

    Log messages quote names from repositories and archives: escaped like all output.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        shown = logging.makeLogRecord(record.__dict__)
        shown.msg, shown.args = printable(record.getMessage()), None
        super().emit(shown)


for module in (repo, publish, release, browse, history, verify, serve, unpack, watch,
               bootstrap, replicate):
    for command in module.COMMANDS:
        cli.add_command(command)


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so open sessions abort as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def install_signal_handlers() -> object:
    """SIGTERM unwinds like Ctrl-C: a publish aborts cleanly, never half-way.

    Returns the handler it replaced (None off the main thread, where none is installed).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate)


def main(argv: list[str] | None = None) -> int:
    """Entry point: library errors become one line on stderr and an exit code."""
    previous = install_signal_handlers()
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def _run(argv: list[str] | None) -> int:
    try:
        code = cli.main(args=argv, prog_name="cvmfs-publisher", standalone_mode=False)
    except VerificationFailed as exc:
        return exc.exit_code
    except PublisherError as exc:
        stderr.print(f"error: {exc}")
        return exc.exit_code
    except click.exceptions.Abort:
        stderr.print("interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        stderr.print("interrupted: nothing was published")
        return 130
    except Terminated:
        stderr.print("terminated: nothing was published")
        return 143
    except BrokenPipeError:
        return 141
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
