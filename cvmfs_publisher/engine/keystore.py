"""Key files on disk, named as ``cvmfs_server mkfs`` names them in ``/etc/cvmfs/keys``.

Private keys are created 0600 before a byte is written, and every file is written under a
temporary name and renamed, so an interrupted ``init`` never leaves a truncated key.
``ensure_keyset`` completes whatever an earlier interrupted run left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from ..cvmfs import keys as k
from ..errors import KeyMaterialError

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600


def key_paths(directory: Path, fqrn: str) -> dict[str, Path]:
    return {kind: directory / f"{fqrn}{suffix}" for kind, suffix in k.SUFFIXES.items()}


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have removed bits of a public file
        os.link(tmp, path)  # fails instead of overwriting an existing key
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path, required: bool) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if required:
            raise KeyMaterialError(f"missing key file {path}") from None
        return None
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None


def ensure_keyset(directory: Path, fqrn: str, now: dt.datetime) -> k.KeySet:
    """Load the repository's keys, generating the ones that are missing.

    A public half without its private key cannot be completed and is an error.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = key_paths(directory, fqrn)
    master = _read(paths["masterkey"], False)
    if master is None:
        if paths["pub"].exists():
            raise KeyMaterialError(f"{paths['pub']} exists without {paths['masterkey']}")
        master = k.private_pem(k.generate_private_key())
        _write(paths["masterkey"], master, PRIVATE_MODE)
    if not paths["pub"].exists():
        public = k.load_private_key(master, paths["masterkey"].name).public_key()
        _write(paths["pub"], k.public_pem(public), PUBLIC_MODE)
    signing = _read(paths["key"], False)
    if signing is None:
        if paths["crt"].exists():
            raise KeyMaterialError(f"{paths['crt']} exists without {paths['key']}")
        signing = k.private_pem(k.generate_private_key())
        _write(paths["key"], signing, PRIVATE_MODE)
    if not paths["crt"].exists():
        signer = k.load_private_key(signing, paths["key"].name)
        _write(paths["crt"], k.make_certificate(fqrn, signer, now), PUBLIC_MODE)
    return load_keyset(directory, fqrn)


def load_keyset(directory: Path, fqrn: str, *, need_signing: bool = True,
                need_master: bool = False) -> k.KeySet:
    paths = key_paths(directory, fqrn)
    keys = k.KeySet(
        fqrn=fqrn,
        certificate=_read(paths["crt"], True) or b"",
        public_master=_read(paths["pub"], True) or b"",
        master_key=_read(paths["masterkey"], need_master),
        signing_key=_read(paths["key"], need_signing),
    )
    keys.check_pairing()
    return keys


def load_public_keys(paths: list[Path]) -> list:
    """Master public keys a reader trusts (``CVMFS_PUBLIC_KEY``, colon-separated upstream)."""
    result = []
    for path in paths:
        pem = _read(path, True)
        assert pem is not None
        result.append(k.load_public_key(pem, str(path)))
    return result
