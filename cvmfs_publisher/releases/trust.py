"""Who may publish where: GPG key fingerprints allowed per repository path glob.

The store of a repository is a directory (default ``$XDG_CONFIG_HOME/cvmfs-publisher/
trust/<fqrn>``) holding ``policy.yaml`` and one armored public key per fingerprint. It is
never a user's GnuPG home: checks run in a fresh, short-lived keyring holding only the
trusted keys (``keyring()``), so nothing a user imported elsewhere can vouch for a
release, and gpg-agent's socket path stays short.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gnupg
import yaml

from ..errors import ConfigError, KeyMaterialError, UsageError
from .globs import path_matches

POLICY = "policy.yaml"
# python-gnupg warns on every non-zero exit of gpg, which is how gpg says "bad signature":
# our errors say it in one line, so its warnings would only repeat it
logging.getLogger("gnupg").setLevel(logging.ERROR)
REFUSED_VALIDITY = {"r": "revoked", "e": "expired", "i": "invalid", "d": "disabled"}


@dataclass
class TrustedKey:
    fingerprint: str
    paths: list[str]
    uids: list[str] = field(default_factory=list)
    expires: int | None = None  # seconds since the epoch; None: never

    def grants(self, path: str) -> bool:
        return any(path_matches(glob, path) for glob in self.paths)


class TrustStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # -- the policy file ------------------------------------------------------------------

    def keys(self) -> list[TrustedKey]:
        path = self.directory / POLICY
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the trust policy ({exc})") from None
        try:
            return [TrustedKey(str(k["fingerprint"]), [str(p) for p in k["paths"]],
                               [str(u) for u in k.get("uids", [])], k.get("expires"))
                    for k in data.get("keys", [])]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: malformed trust policy ({exc})") from None

    def _save(self, keys: list[TrustedKey]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"keys": [{"fingerprint": k.fingerprint, "paths": k.paths, "uids": k.uids,
                          "expires": k.expires} for k in keys]}
        tmp = self.directory / f".{POLICY}.tmp"
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        os.replace(tmp, self.directory / POLICY)

    def add(self, key_file: Path, paths: list[str]) -> list[TrustedKey]:
        """Trust every primary key in ``key_file`` for ``paths``; refuse unusable keys."""
        globs = [check_glob(p) for p in paths]
        try:
            armored = key_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyMaterialError(f"cannot read key file {key_file}: {exc}") from None
        with scratch_gpg() as gpg:
            found = gpg.import_keys(armored)
            if not found.fingerprints:
                raise KeyMaterialError(f"{key_file} holds no OpenPGP public key")
            if gpg.list_keys(secret=True):
                raise KeyMaterialError(f"{key_file} holds a private key: give the public key "
                                       "only (gpg --export --armor FINGERPRINT)")
            added = [self._describe(gpg, fpr, globs) for fpr in dict.fromkeys(
                found.fingerprints)]
            exported = {k.fingerprint: gpg.export_keys(k.fingerprint) for k in added}
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for fingerprint, text in exported.items():
            (self.directory / f"{fingerprint}.asc").write_text(text, encoding="ascii")
        keys = {k.fingerprint: k for k in self.keys()}
        for key in added:
            old = keys.get(key.fingerprint)
            key.paths = sorted(set(key.paths) | set(old.paths if old else []))
            keys[key.fingerprint] = key
        self._save(list(keys.values()))
        return added

    @staticmethod
    def _describe(gpg: gnupg.GPG, fingerprint: str, globs: list[str]) -> TrustedKey:
        listed = next((k for k in gpg.list_keys() if k["fingerprint"] == fingerprint), None)
        if listed is None:  # a subkey fingerprint or revocation only
            raise KeyMaterialError(f"{fingerprint} is not a primary public key")
        refused = key_problem(listed)
        if refused:
            raise KeyMaterialError(f"key {fingerprint} is {refused}: not trusted")
        expires = int(listed["expires"]) if listed.get("expires") else None
        return TrustedKey(fingerprint, globs, list(listed.get("uids", [])), expires)

    def remove(self, fingerprint: str) -> TrustedKey:
        fingerprint = fingerprint.replace(" ", "").upper()
        keys = self.keys()
        match = [k for k in keys if k.fingerprint == fingerprint or
                 (len(fingerprint) >= 16 and k.fingerprint.endswith(fingerprint))]
        if len(match) != 1:
            raise UsageError(f"no single trusted key {fingerprint} in {self.directory}")
        self._save([k for k in keys if k is not match[0]])
        (self.directory / f"{match[0].fingerprint}.asc").unlink(missing_ok=True)
        return match[0]

    def granted(self, fingerprint: str, path: str) -> TrustedKey | None:
        return next((k for k in self.keys() if k.fingerprint == fingerprint and
                     k.grants(path)), None)

    @contextlib.contextmanager
    def keyring(self) -> Iterator[gnupg.GPG]:
        """A fresh GnuPG home with exactly the trusted keys, removed afterwards."""
        with scratch_gpg() as gpg:
            for key in self.keys():
                armored = self.directory / f"{key.fingerprint}.asc"
                try:
                    gpg.import_keys(armored.read_text(encoding="ascii"))
                except OSError as exc:
                    raise ConfigError(f"trusted key {armored} is unreadable: {exc}") from None
            yield gpg


def key_problem(listed: dict, now: dt.datetime | None = None) -> str | None:
    """Why a key (as ``gpg.list_keys`` describes it) must not sign releases, if it must not."""
    validity = listed.get("trust", "")
    if validity in REFUSED_VALIDITY:
        return REFUSED_VALIDITY[validity]
    expires = listed.get("expires")
    moment = (now or dt.datetime.now(dt.UTC)).timestamp()
    if expires and int(expires) <= moment:
        return "expired"
    return None


def check_glob(glob: str) -> str:
    """A path glob as the policy stores it: absolute, no empty, ``.`` or ``..`` parts."""
    parts = [p for p in glob.split("/") if p]
    if not glob.startswith("/") or any(p in (".", "..") or "\0" in p for p in parts):
        raise UsageError(f"--path {glob!r} must be an absolute repository path glob")
    if any("**" in p and p != "**" for p in parts):
        raise UsageError(f"--path {glob!r}: '**' must be a whole path component")
    return "/" + "/".join(parts)


@contextlib.contextmanager
def scratch_gpg() -> Iterator[gnupg.GPG]:
    """A throw-away GnuPG home under /tmp (a short path, as gpg-agent's socket needs)."""
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    try:
        home.chmod(0o700)
        (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
        yield gnupg.GPG(gnupghome=str(home))
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
