"""Errors of the unpacker, as subclasses of the toolkit's own so the CLI maps them alike."""

from __future__ import annotations

from cvmfs_publisher.errors import ConfigError, PublisherError, SourceError, UsageError


class InvalidReference(UsageError):
    """An image reference that does not follow ``[scheme://]REGISTRY/REPOSITORY[:TAG][@DIGEST]``."""


class WishlistError(ConfigError):
    """A wishlist that is not valid YAML or not a valid version-1 recipe (names the line)."""


class RegistryError(SourceError):
    """The registry refused or failed a request (HTTP status, network, bad answer)."""


class AuthError(RegistryError):
    """The registry wants credentials we do not have, or refused the ones we sent."""


class ManifestError(RegistryError):
    """A manifest or index we cannot use (unknown media type, schema 1, no such platform)."""


class DigestMismatch(RegistryError):
    """Bytes that do not hash to the digest they were asked for: never use them."""


class UnsafeLayer(PublisherError):
    """A layer member that would escape the image tree or is otherwise not applicable.

    The whole image is rejected: publishing a partial or clamped tree hides the problem.
    """
