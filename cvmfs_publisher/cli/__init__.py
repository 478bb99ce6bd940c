"""The ``cvmfs-publisher`` command: thin click commands over the library.

Commands load on demand: ``--help`` lists them from ``COMMANDS`` below without importing
any of their modules, and a command imports only what it uses, so ``--help``, ``ls`` and
``cat`` start in a fraction of the time the whole toolkit takes to import.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from pathlib import Path

import click

from .. import __version__
from ..errors import PublisherError, VerificationFailed
from .output import stderr

# name -> (module in this package, attribute, first paragraph of its help). The help text
# is the command's own (tests/test_startup.py compares them), kept here so listing the
# commands imports nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "bootstrap": ("bootstrap", "bootstrap", "Set up a personal Stratum 0 on HOST: write an "
                                            "Ansible inventory from a few answers and run "
                                            "stratum0_playbooks/ (native-publisher.yml or "
                                            "classic-stratum0.yml)."),
    "cat": ("browse", "cat", "Write a file's content to stdout (every object hash-checked)."),
    "check-whitelist": ("repo", "check_whitelist", "For monitoring: exit 1 when the whitelist "
                                                   "expires within --within (or has expired), 0 "
                                                   "otherwise. Reads the repository as 'verify' "
                                                   "does, every signature checked."),
    "ci": ("release", "ci", "Publishing from CI jobs and git hooks (release tags and nightlies)."),
    "client-config": ("repo", "client_config", "Print a CVMFS client configuration for the "
                                               "repository, and the public key path."),
    "diff": ("history", "diff", "List paths added (A), removed (D) and changed (M) from OLD to "
                                "NEW (tags or revisions)."),
    "gc": ("history", "gc", "Delete objects that no kept revision uses: the current one, named "
                            "tags, and recent ones."),
    "info": ("status", "info", "Where one repository stands: revision, tags, objects, storage, "
                               "lock, whitelist."),
    "init": ("repo", "init", "Create repository NAME: keys, whitelist and an empty signed "
                             "revision 0."),
    "list": ("status", "list_command", "The configured repositories: backend, storage, current "
                                       "revision and last publish."),
    "ls": ("browse", "ls", "List a directory of the repository (what a mounted client would "
                           "show)."),
    "publish": ("publish", "publish", "Publish directory, file or tarball SRC (.tar, .tar.gz, "
                                      ".tar.zst) at --path, or several changes (--add, --remove, "
                                      "--changes) in one revision."),
    "release": ("release", "release", "Publish tarball ARTIFACT at --path if signed by a key "
                                      "trusted for that path."),
    "replica-gc": ("replicate", "replica_gc_command", "Delete the objects of a replica (Stratum "
                                                      "1 root ROOT) that no kept revision uses."),
    "replicate": ("replicate", "replicate", "Make or update a replica (Stratum 1) of the "
                                            "repository at SOURCE (URL or directory)."),
    "resign": ("repo", "resign", "Renew the whitelist (it expires after 30 days; run this weekly "
                                 "from cron)."),
    "rm": ("publish", "rm", "Remove paths (and everything below them) in one new revision."),
    "rollback": ("history", "rollback", "Publish a new revision whose content equals TAG "
                                        "(default: trunk-previous, the revision before the "
                                        "current one)."),
    "serve": ("serve", "serve", "Serve repositories at http://HOST:PORT/cvmfs/<name>/ until "
                                "interrupted."),
    "tag": ("history", "tag", "Name revisions (add) or remove names (rm); list them with 'tags'."),
    "tags": ("browse", "tags", "List the named revisions (tags) of the repository."),
    "trust": ("release", "trust", "Which GPG keys may publish releases under which paths of a "
                                  "repository."),
    "unlock": ("repo", "unlock", "Break a stale publish lock left by a publisher that died (S3 "
                                 "leases)."),
    "unpack": ("unpack", "unpack", "Unpack the images of WISHLIST (and/or --image) that changed, "
                                   "and publish them."),
    "unpack-gc": ("unpack", "unpack_gc", "Remove images no longer wished for (after the grace "
                                         "period) and their flat trees."),
    "verify": ("verify", "verify_command", "Check signatures, whitelist, every catalog, counter "
                                           "and object; exit 1 on any problem."),
    "watch": ("watch", "watch", "Publish a drop area (a folder or a bucket) at --path whenever "
                                "it settles; runs until stopped (SIGTERM abandons a publish "
                                "cleanly). Files still being written wait."),
    "watch-status": ("watch", "watch_status", "Each drop area of REPO: last publish, pending "
                                              "changes, last error."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when used, and listed without importing them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attribute, _ = COMMANDS[cmd_name]
        # __import__, not importlib.import_module: -X importtime reports only the former
        loaded = __import__(f"{__name__}.{module}", fromlist=[attribute])
        command = getattr(loaded, attribute)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            # a stand-in with the same help shortens it exactly as the command would
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][2])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvmfs-publisher")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              envvar="CVMFS_PUBLISHER_CONFIG", metavar="FILE",
              help="Config file [default: $XDG_CONFIG_HOME/cvmfs-publisher/config.yaml]; "
                   "it must exist, except for 'init', which creates it.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug, with the "
              "messages of the libraries used).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Publish signed, transactional CernVM-FS repositories without a cvmfs_server host.

    Start with 'init', publish with 'publish', check with 'verify', serve with 'serve'.
    Commands that take --repo use $CVMFS_PUBLISHER_REPO or the config's
    default_repository when it is not given.
    """
    from .common import State
    from .logs import setup_logging

    setup_logging(verbose)
    ctx.obj = State(config_path, verbose, creating=ctx.invoked_subcommand == "init")


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
        with warnings.catch_warnings():
            return _run(argv)
    finally:
        if "logging" in sys.modules:  # imported once a command ran (not for --help)
            sys.modules["logging"].captureWarnings(False)
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
