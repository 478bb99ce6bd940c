"""Key files on disk, named as ``cvmfs_server mkfs`` names them in ``/etc/cvmfs/keys``.

Private keys are created 0600 before a byte is written, and every file is written under a
temporary name and renamed, so an interrupted ``init`` never leaves a truncated key.
``ensure_keyset`` completes whatever an earlier interrupted run left behind.

A private key (``.key``, ``.masterkey``) that group or others may read is refused wherever
it is read, as ssh refuses one: whoever could read it could sign in the repository's name,
and a copy taken cannot be revoked short of new keys on every client. The mode is checked
on the descriptor the key is read from (no race with a ``chmod``), and only the mode: a key
another user owns can only be read without group or other bits by root, who may.
``.pub`` and ``.crt`` are public.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ..cvmfs import key_material as k
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


def _read(path: Path, required: bool, private: bool = False) -> bytes | None:
    """The file's bytes; a ``private`` key only if nobody but its owner may read it."""
    try:
        with path.open("rb") as f:
            if private:
                _check_private_mode(path, os.fstat(f.fileno()).st_mode)
            return f.read()
    except FileNotFoundError:
        if required:
            raise KeyMaterialError(f"missing key file {path}") from None
        return None
    except OSError as exc:
        raise KeyMaterialError(f"cannot read {path}: {exc.strerror}") from None


def _check_private_mode(path: Path, mode: int) -> None:
    if mode & 0o077:
        raise KeyMaterialError(
            f"permissions {stat.S_IMODE(mode):04o} for {path} are too open: a private key must "
            f"be readable by its owner only; run 'chmod 600 {shlex.quote(str(path))}'")


def ensure_keyset(directory: Path, fqrn: str, now: dt.datetime) -> k.KeySet:
    """Load the repository's keys, generating the ones that are missing.

    A public half without its private key cannot be completed and is an error.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = key_paths(directory, fqrn)
    _ensure_pair(paths["masterkey"], paths["pub"], lambda key: k.public_pem(key.public_key()))
    _ensure_pair(paths["key"], paths["crt"], lambda key: k.make_certificate(fqrn, key, now))
    return load_keyset(directory, fqrn)


def _ensure_pair(private_path: Path, public_path: Path,
                 derive: Callable[[rsa.RSAPrivateKey], bytes]) -> None:
    """A private key and what is derived from it (public key or certificate)."""
    private = _read(private_path, False, private=True)
    if private is None:
        if public_path.exists():
            raise KeyMaterialError(f"{public_path} exists without {private_path}")
        private = k.private_pem(k.generate_private_key())
        _write(private_path, private, PRIVATE_MODE)
    if not public_path.exists():
        _write(public_path, derive(k.load_private_key(private, private_path.name)), PUBLIC_MODE)


def load_keyset(directory: Path, fqrn: str, *, need_signing: bool = True,
                need_master: bool = False) -> k.KeySet:
    paths = key_paths(directory, fqrn)
    keys = k.KeySet(
        fqrn=fqrn,
        certificate=_read(paths["crt"], True) or b"",
        public_master=_read(paths["pub"], True) or b"",
        master_key=_read(paths["masterkey"], need_master, private=True),
        signing_key=_read(paths["key"], need_signing, private=True),
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
