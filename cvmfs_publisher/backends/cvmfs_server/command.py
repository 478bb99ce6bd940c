"""Calling ``cvmfs_server`` (optionally behind ``sudo -n``) and reading what it says.

Every call goes through ``ServerCommand.run``, so the command line, its environment and
the translation of failures into ``CommandFailed`` (carrying the command's own output)
live in one place. Exit codes follow ``cvmfs/publish/cmd_transaction.cc``: EEXIST when
a transaction is already open, EBUSY when a gateway lease is taken.

A signal (Ctrl-C, SIGTERM) never cuts a ``cvmfs_server`` call short: the call runs to its
end, ``transaction_open`` records what it left behind, and only then is the signal's
exception raised, so the caller knows whether there is a transaction to abort.
"""

from __future__ import annotations

import errno
import logging
import shlex
import subprocess
import tempfile
from dataclasses import dataclass

from ...errors import CommandFailed, PublisherError, RepositoryBusy

log = logging.getLogger(__name__)
BUSY_CODES = (errno.EEXIST, errno.EBUSY)


@dataclass(frozen=True)
class TagLine:
    """One line of ``cvmfs_server tag -lx``: name hash size revision timestamp channel text."""

    name: str
    root_hash: str
    size: int
    revision: int
    timestamp: int
    description: str

    @classmethod
    def parse(cls, line: str) -> TagLine:
        parts = line.split(" ", 6)
        if len(parts) < 6:
            raise PublisherError(f"cannot read cvmfs_server tag list line {line!r}")
        name, root_hash, size, revision, timestamp = parts[:5]
        try:
            return cls(name, root_hash, int(size), int(revision), int(timestamp),
                       parts[6] if len(parts) > 6 else "")
        except ValueError:
            raise PublisherError(f"cannot read cvmfs_server tag list line {line!r}") from None


class ServerCommand:
    def __init__(self, argv: list[str] | str) -> None:
        self.argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
        if not self.argv:
            raise PublisherError("the cvmfs_server command is empty")
        self.transaction_open = False  # opened by us and neither published nor aborted

    def run(self, *args: str) -> str:
        """Run one subcommand; its combined output, or ``CommandFailed``/``RepositoryBusy``."""
        command = [*self.argv, *args]
        log.info("running %s", shlex.join(command))
        returncode, output, interrupted = self._complete(command)
        log.debug("%s said: %s", args[0], output)
        if returncode == 0 and args[0] in ("transaction", "publish", "abort"):
            self.transaction_open = args[0] == "transaction"
        if interrupted is not None:
            raise interrupted
        if returncode != 0:
            raise CommandFailed(command, returncode, output)
        return output

    def _complete(self, command: list[str]) -> tuple[int, str, BaseException | None]:
        """Run to the end whatever arrives meanwhile; the first interruption is returned."""
        interrupted: BaseException | None = None
        with tempfile.TemporaryFile() as output:
            try:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                           stderr=subprocess.STDOUT)
            except FileNotFoundError:
                raise PublisherError(
                    f"{self.argv[0]} not found: install the cvmfs-server package on this host "
                    "(the stratum0 playbooks do) or set 'command' in the repository's config"
                ) from None
            except OSError as exc:
                raise PublisherError(f"cannot run {shlex.join(command)}: "
                                     f"{exc.strerror}") from None
            while process.returncode is None:
                try:
                    process.wait()
                except BaseException as exc:
                    interrupted = interrupted or exc
            output.seek(0)
            text = output.read().decode("utf-8", "replace")
        return process.returncode, text, interrupted

    def open_transaction(self, target: str) -> None:
        """``transaction <fqrn>[/lease/path]``; ``RepositoryBusy`` while another is open."""
        try:
            self.run("transaction", target)
        except CommandFailed as exc:
            if exc.returncode in BUSY_CODES:
                raise RepositoryBusy(f"{target.split('/', 1)[0]} is busy: cvmfs_server "
                                     f"already has a transaction open ({exc}); retry later "
                                     "or use --wait") from None
            raise

    def tags(self, fqrn: str) -> list[TagLine]:
        return [TagLine.parse(line) for line in self.run("tag", "-lx", fqrn).splitlines()
                if line.strip()]
