"""Turning what a user names into the two storages of a replica and the repository name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs.names import check_fqrn
from ..engine import key_files
from ..errors import InvalidName, UsageError
from ..storage import Storage, open_storage


def repository_name(source: str, fqrn: str | None) -> str:
    """``--fqrn``, else the last component of the source URL or directory
    (``http://host/cvmfs/<fqrn>``, ``/srv/cvmfs/<fqrn>``)."""
    if fqrn:
        return check_fqrn(fqrn)
    last = source.rstrip("/").rsplit("/", 1)[-1]
    try:
        return check_fqrn(last)
    except InvalidName:
        raise UsageError(f"cannot tell the repository name from {source!r}: give --fqrn") \
            from None


def open_source(source: str) -> Storage:
    """The repository to copy from, read-only: an http(s) URL or a directory."""
    if source.startswith("s3://"):
        raise UsageError("replicate from a bucket through its HTTP URL (the address clients "
                         "use), not s3://")
    if not source.startswith(("http://", "https://")) and not Path(source).is_dir():
        raise UsageError(f"{source!r} is neither an http(s) URL nor a directory")
    return open_storage(source, read_only=True)


def open_replica(root: str, fqrn: str, s3: Mapping[str, Any] | None = None) -> Storage:
    """The replica of ``fqrn`` below a Stratum 1 root: ``<DIR>/<fqrn>`` or
    ``s3://BUCKET[/PREFIX]`` (the repository lives below ``[PREFIX/]<fqrn>/``, as on a
    Stratum 0 in a bucket). Nothing is created until a snapshot writes."""
    if root.startswith(("http://", "https://")):
        raise UsageError(f"{root}: a replica is written to a directory or an s3:// bucket")
    if root.startswith("s3://"):
        return open_storage(root, fqrn=fqrn, s3=dict(s3 or {}))
    if s3:
        raise UsageError("S3 settings (--endpoint, --region, --s3) only apply to s3:// replicas")
    return open_storage(str(Path(root).expanduser().resolve() / fqrn))


def load_master_keys(paths: list[Path]) -> list[rsa.RSAPublicKey]:
    if not paths:
        raise UsageError("give the source's master public key with --key FILE.pub")
    return key_files.load_public_keys(paths)
