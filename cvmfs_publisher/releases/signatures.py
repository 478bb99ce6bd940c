"""Checking who signed: detached signatures of artifacts, signed annotated git tags.

Both checks run against a keyring holding only the repository's trusted keys and return
the signer's *primary* key fingerprint, which the trust policy is written in (a release
may be signed with a signing subkey). A signature by an expired or revoked key, a bad
signature, an unknown key or no signature at all is a ``SignatureError`` naming why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import git
import gnupg

from ..errors import SignatureError, SourceError

BLOCK = 1 << 20
REFUSED = ("[GNUPG:] EXPKEYSIG", "[GNUPG:] REVKEYSIG", "[GNUPG:] KEYEXPIRED",
           "[GNUPG:] KEYREVOKED")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()


def verify_detached(gpg: gnupg.GPG, artifact: Path, signature: Path) -> str:
    """The primary fingerprint of whoever signed ``artifact`` with ``signature``."""
    try:
        with open(signature, "rb") as handle:
            result = gpg.verify_file(handle, data_filename=str(artifact))
    except OSError as exc:
        raise SignatureError(f"cannot read signature {signature}: {exc.strerror}") from None
    if result.status == "no public key":
        raise SignatureError(f"{artifact.name} is signed by key {result.key_id}, which is not "
                             "trusted for this repository")
    if not result.valid or result.key_status is not None:
        why = result.key_status or result.status or "no valid signature"
        raise SignatureError(f"{artifact.name}: signature {signature.name} refused: {why}")
    return str(result.pubkey_fingerprint or result.fingerprint)


def verify_tag(gpg: gnupg.GPG, checkout: Path, tag: str, commit: str | None = None) -> str:
    """The primary fingerprint that signed annotated ``tag``; it must point at ``commit``."""
    repo = git.Repo(checkout)
    try:
        with repo.git.custom_environment(GNUPGHOME=gpg.gnupghome, LC_ALL="C"):
            _code, _out, said = repo.git.verify_tag("--raw", tag, with_extended_output=True)
    except git.GitCommandError as exc:
        said = [line[line.index("error:"):].rstrip("'") for line in str(exc.stderr).splitlines()
                if "error:" in line]
        why = said[-1] if said else "no signature"
        raise SignatureError(f"tag {tag} is not signed by a trusted key ({why})") from None
    status = said.splitlines()
    if any(s.startswith(REFUSED) for s in status) or not any(
            s.startswith("[GNUPG:] GOODSIG") for s in status):
        raise SignatureError(f"tag {tag} is signed by an expired or revoked key")
    if commit is not None and repo.tags[tag].commit.hexsha != commit:
        raise SignatureError(f"tag {tag} points at {repo.tags[tag].commit.hexsha[:12]}, not at "
                             f"the commit being published ({commit[:12]})")
    return next(s for s in status if s.startswith("[GNUPG:] VALIDSIG")).split()[-1]
