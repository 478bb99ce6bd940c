"""The classic backend: a Stratum 0 that upstream ``cvmfs_server`` runs on this host.

This toolkit never runs ``mkfs`` (the playbooks do); ``init --backend cvmfs_server`` only
records an existing repository. Publishing follows ``cvmfs_server``'s documented contract
(``transaction``, edits in ``/cvmfs/<fqrn>``, ``publish`` or ``abort -f``); tags, rollback,
garbage collection and re-signing are its own subcommands.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ...config import RepositoryConfig
from ...cvmfs.dirtab import RELEASE_CATALOGS
from ...cvmfs.names import is_within
from ...entries import Owner
from ...errors import CommandFailed, PublisherError, RepositoryBusy
from ...publisher import (
    ClientSettings,
    GcResult,
    LockInfo,
    Progress,
    ResignResult,
    TagInfo,
    TreeView,
)
from .command import ServerCommand, TagLine
from .session import CvmfsServerSession, tag_info
from .spool import Spool
from .view import DirectoryView

log = logging.getLogger(__name__)
LOCK_FILE = "in_transaction.lock"
WAIT_STEPS = (1, 2, 5, 10)  # seconds between attempts when --wait meets an open transaction


class TransactionLeftOpen(PublisherError):
    """Aborting failed after a failed publish: the repository may still be in a transaction."""


class CvmfsServerPublisher:
    backend = "cvmfs_server"

    def __init__(self, name: str, command: ServerCommand, *, mount_root: Path,
                 spool_root: Path, public_key: Path, server_url: str | None = None,
                 gateway: bool = False, owner: Owner | None = None,
                 release_catalogs: list[str] | tuple[str, ...] = RELEASE_CATALOGS) -> None:
        self.name, self.command = name, command
        self.release_catalogs = list(release_catalogs)
        self.mount_root, self.spool_root = mount_root, spool_root
        self.public_key, self.server_url = public_key, server_url
        self.gateway = gateway
        self.owner = (owner.uid, owner.gid) if owner else None

    @classmethod
    def from_config(cls, repo: RepositoryConfig) -> CvmfsServerPublisher:
        owner = repo.setting("owner")
        url = repo.location() if repo.storage.startswith(("http://", "https://")) else None
        return cls(
            repo.name, ServerCommand(repo.setting("command") or "cvmfs_server"),
            mount_root=Path(repo.setting("mount_root") or "/cvmfs"),
            spool_root=Path(repo.setting("spool_root") or "/var/spool/cvmfs"),
            public_key=repo.keys / f"{repo.name}.pub", server_url=url,
            gateway=bool(repo.setting("gateway")),
            owner=Owner.parse(str(owner)) if owner is not None else None,
            release_catalogs=repo.setting("release_catalogs", RELEASE_CATALOGS),
        )

    @property
    def writable_root(self) -> Path:
        return self.mount_root / self.name

    # -- publishing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, *, wait: bool = False, progress: Progress | None = None
                ) -> Iterator[CvmfsServerSession]:
        spool = Spool()
        try:
            yield CvmfsServerSession(self, spool, wait=wait, progress=progress)
        finally:
            spool.close()

    def lease_target(self, paths: list[str]) -> str:
        """``<fqrn>`` or, with a gateway, ``<fqrn>/<deepest existing common parent>``."""
        if not self.gateway:
            return self.name
        common = paths[0]
        for path in paths[1:]:
            while not is_within(path, common):
                common = common.rsplit("/", 1)[0]
        with self.view() as view:
            while common:
                found = view.lookup(common)
                if found is not None and found.is_directory:
                    break
                common = common.rsplit("/", 1)[0]
        return self.name + common

    def open_transaction(self, target: str, *, wait: bool) -> None:
        attempt = 0
        while True:
            try:
                self.command.open_transaction(target)
                return
            except RepositoryBusy:
                if not wait:
                    raise
            delay = WAIT_STEPS[min(attempt, len(WAIT_STEPS) - 1)]
            log.info("%s is in another transaction; trying again in %d s", self.name, delay)
            time.sleep(delay)
            attempt += 1

    def abort(self, cause: BaseException) -> None:
        """``abort -f`` after a failure; if that fails too, say the transaction may be open."""
        try:
            self.command.run("abort", "-f", self.name)
        except PublisherError as exc:
            raise TransactionLeftOpen(
                f"publishing {self.name} failed ({cause or type(cause).__name__}) and "
                f"aborting failed too ({exc}); the repository may still be in a transaction: "
                "run 'cvmfs-publisher unlock --force' or 'cvmfs_server abort -f' "
                f"{self.name}") from cause

    # -- reading --------------------------------------------------------------------------

    def view(self) -> TreeView:
        return DirectoryView(self.spool_root / self.name / "rdonly")

    def tag_lines(self) -> list[TagLine]:
        return self.command.tags(self.name)

    def tags(self) -> list[TagInfo]:
        return [tag_info(line) for line in self.tag_lines()]

    def check_served(self) -> int:
        """That ``cvmfs_server`` here serves the repository; its current revision."""
        listed = self.command.run("list")
        if not any(line.split(" ", 1)[0] == self.name for line in listed.splitlines()):
            raise PublisherError(f"cvmfs_server on this host has no repository {self.name}; "
                                 "create it first (cvmfs_server mkfs, or the stratum0 "
                                 "playbooks)")
        trunk = [line.revision for line in self.tag_lines() if line.name == "trunk"]
        return trunk[0] if trunk else 0

    # -- maintenance --------------------------------------------------------------------------

    def gc(self, *, keep_revisions: int, keep_since: dt.datetime | None, dry_run: bool,
           wait: bool = False) -> GcResult:
        """``cvmfs_server gc`` takes a revision count or a time, not both: the time wins."""
        args = ["gc", "-f", "-l"]
        if keep_since is not None:
            args += ["-t", keep_since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")]
        else:
            args += ["-r", str(keep_revisions)]
        if dry_run:
            args.append("-d")
        return GcResult(dry_run=dry_run, output=self.command.run(*args, self.name))

    def resign(self, days: int | None = None) -> ResignResult:
        self.command.run("resign", *(["-d", str(days)] if days else []), self.name)
        return ResignResult(self.name, None, [])

    def lock_holder(self) -> LockInfo | None:
        lock = self.spool_root / self.name / LOCK_FILE
        try:
            since = lock.stat().st_mtime
        except FileNotFoundError:
            return None
        return LockInfo("a cvmfs_server transaction", socket.gethostname(), 0, since)

    def break_lock(self) -> LockInfo | None:
        """``abort -f`` an open transaction: only when its publisher is known to be gone."""
        holder = self.lock_holder()
        if holder is not None:
            try:
                self.command.run("abort", "-f", self.name)
            except CommandFailed as exc:
                raise PublisherError(f"cannot abort the open transaction: {exc}") from None
        return holder

    def client_settings(self) -> ClientSettings:
        return ClientSettings(self.name, self.server_url, self.public_key)


