"""Real GnuPG keys for tests: generated in short homes under /tmp, removed afterwards.

gpg-agent's socket must fit in 108 bytes, so homes never live in pytest's long tmp_path;
an agent cache of 0 makes wrong passphrases fail (TESTING.md section 4).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gnupg


@dataclass
class Signer:
    gpg: gnupg.GPG
    fingerprint: str

    @property
    def home(self) -> str:
        return self.gpg.gnupghome

    def public(self, target: Path) -> Path:
        target.write_text(self.gpg.export_keys(self.fingerprint))
        return target

    def sign(self, payload: Path, suffix: str = ".asc") -> Path:
        output = payload.with_name(payload.name + suffix)
        with open(payload, "rb") as handle:
            result = self.gpg.sign_file(handle, keyid=self.fingerprint, detach=True,
                                        binary=False, output=str(output))
        assert result.status == "signature created", result.stderr
        return output

    def revoked_public(self, target: Path) -> Path:
        """The public key with the revocation certificate gpg made at generation applied."""
        certificate = Path(self.home) / "openpgp-revocs.d" / f"{self.fingerprint}.rev"
        text = certificate.read_text().replace(":-----BEGIN", "-----BEGIN")
        self.gpg.import_keys(text)
        assert [k["trust"] for k in self.gpg.list_keys(keys=self.fingerprint)] == ["r"]
        return self.public(target)


@contextmanager
def gpg_home(options: list[str] | None = None) -> Iterator[gnupg.GPG]:
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
    try:
        yield gnupg.GPG(gnupghome=str(home), options=options)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def new_signer(gpg: gnupg.GPG, name: str, expire: str = "1y") -> Signer:
    key = gpg.gen_key(gpg.gen_key_input(
        key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=name,
        name_email=f"{name.lower().replace(' ', '.')}@example.org", expire_date=expire,
        no_protection=True))
    assert key.fingerprint, key.stderr
    return Signer(gpg, str(key.fingerprint))
