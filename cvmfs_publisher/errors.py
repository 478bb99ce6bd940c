"""Every error the toolkit raises on purpose.

Library code raises these and never prints; the CLI turns each into a one-line message
and an exit code. Anything that is not a ``PublisherError`` is a bug and shows a traceback.
"""

from __future__ import annotations


class PublisherError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 1


class UsageError(PublisherError):
    """Bad input from the command line or a caller (paths, names, options)."""

    exit_code = 2


class InvalidName(UsageError):
    """A repository name that is not a fully qualified repository name."""


class InvalidPath(UsageError):
    """A repository path or archive member that is malformed or escapes its target."""


class SourceError(PublisherError):
    """The content to publish cannot be read (missing, unreadable, broken archive)."""


class ConfigError(PublisherError):
    """The configuration file is missing, malformed or lacks a repository."""


class KeyMaterialError(PublisherError):
    """Keys or certificates are missing, unreadable or do not belong together."""


class FormatError(PublisherError):
    """Bytes that do not follow the CVMFS format (manifest, whitelist, catalog, ...)."""


class SignatureError(PublisherError):
    """A signature, whitelist or name check of the trust chain failed."""


class StorageError(PublisherError):
    """The storage backend failed (I/O error, network, permissions)."""


class ObjectNotFound(StorageError):
    """A key that should exist in the storage does not."""


class RepositoryNotFound(PublisherError):
    """No repository at the given name, directory or URL."""


class RepositoryExists(PublisherError):
    """``init`` on a storage location that already holds a repository."""


class RepositoryBusy(PublisherError):
    """Another publisher holds the repository's publish lock."""

    exit_code = 75  # EX_TEMPFAIL: retrying later can succeed


class PathNotFound(PublisherError):
    """A path inside the repository does not exist."""


class TagError(PublisherError):
    """A tag that is missing, reserved or already taken."""


class CommandFailed(PublisherError):
    """An external command (``cvmfs_server``) failed; ``output`` is what it said."""

    def __init__(self, command: list[str], returncode: int, output: str) -> None:
        self.command, self.returncode, self.output = command, returncode, output
        said = " | ".join(line.strip() for line in output.strip().splitlines()[-3:]
                          if line.strip()) or "no output"
        super().__init__(f"'{' '.join(command)}' failed (exit {returncode}): {said}")


class VerificationFailed(PublisherError):
    """``verify`` found problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) found")
