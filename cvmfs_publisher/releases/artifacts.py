"""Publishing a signed release artifact: check everything, then one transaction.

Order matters: the artifact is copied where nobody else can write (so what was verified
is what gets published), its sha256 and detached signature are checked, the signer must
be granted the target path, and only then is it unpacked by the safe tarball producer
(no member escapes the target; device files are refused) into one tagged revision whose
tag description records the provenance.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..cvmfs.names import display, normalize_path
from ..entries import Entry, Kind
from ..errors import InvalidPath, SignatureError, SourceError, UsageError
from ..publisher import CommitResult, Progress, Publisher, publish
from ..sources import tarball_entries
from .provenance import Provenance
from .signatures import file_sha256, verify_detached
from .trust import TrustStore


@dataclass(frozen=True)
class Release:
    path: str
    tag: str
    signer: str
    sha256: str
    result: CommitResult


def release_path(path: str) -> str:
    """A release goes below the root, never at it."""
    normalized = normalize_path(path)
    if not normalized:
        raise InvalidPath("a release needs a path below the root, like /sw/pkg/1.2.3")
    return normalized


def default_tag(path: str) -> str:
    """``/sw/pkg/1.2.3`` -> ``pkg-1.2.3``: the last two components."""
    return "-".join(path.strip("/").split("/")[-2:])


def refuse_existing(publisher: Publisher, path: str) -> None:
    with publisher.view() as view:
        if view.lookup(path) is not None:
            raise UsageError(f"{display(path)} already exists in {publisher.name}: a release "
                             "is never overwritten (use --force to replace it)")


def without_devices(entries: Iterable[Entry], where: str) -> Iterator[Entry]:
    for entry in entries:
        if entry.kind in (Kind.CHAR, Kind.BLOCK):
            raise InvalidPath(f"{where}: {entry.path} is a device file; releases carry none")
        yield entry


@contextlib.contextmanager
def private_copy(artifact: Path) -> Iterator[Path]:
    """The artifact copied into a 0700 directory, so it cannot change after its checks."""
    directory = Path(tempfile.mkdtemp(prefix="cvmfs-release-"))
    try:
        copy = directory / artifact.name
        try:
            shutil.copyfile(artifact, copy)
        except OSError as exc:
            raise SourceError(f"cannot read {artifact}: {exc.strerror}") from None
        yield copy
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def verify_signed(trust: TrustStore, artifact: Path, signature: Path, path: str,
                  sha256: str | None) -> tuple[str, str]:
    """(signer fingerprint, artifact sha256) once every check passed."""
    actual = file_sha256(artifact)
    if sha256 is not None and actual != sha256.strip().lower():
        raise SignatureError(f"{artifact.name}: sha256 is {actual}, expected {sha256}")
    with trust.keyring() as gpg:
        signer = verify_detached(gpg, artifact, signature)
    if trust.granted(signer, path) is None:
        raise SignatureError(f"key {signer} is not trusted to publish under {display(path)} "
                             f"in {trust.directory}")
    return signer, actual


def release_artifact(publisher: Publisher, trust: TrustStore, artifact: Path,
                     signature: Path, path: str, *, sha256: str | None = None,
                     tag: str | None = None, message: str = "",
                     provenance: Provenance | None = None, force: bool = False,
                     wait: bool = False, progress: Progress | None = None) -> Release:
    path = release_path(path)
    tag = tag or default_tag(path)
    if not force:
        refuse_existing(publisher, path)
    with private_copy(artifact) as copy:
        signer, digest = verify_signed(trust, copy, signature, path, sha256)
        record = Provenance(signer=signer, sha256=digest, **_extra(provenance))
        entries = without_devices(tarball_entries(copy), artifact.name)
        result = publish(publisher, [(path, entries)], tag=tag, wait=wait, progress=progress,
                         message=record.describe(message or f"release {tag}"))
    return Release(path, tag, signer, digest, result)


def _extra(provenance: Provenance | None) -> dict[str, str | None]:
    if provenance is None:
        return {}
    return {"source": provenance.source, "git": provenance.git, "ref": provenance.ref,
            "pipeline": provenance.pipeline}
