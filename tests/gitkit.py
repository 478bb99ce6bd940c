"""Throw-away git repositories for tests: a fixed identity, no user or system config.

``git`` runs the real git binary; signed tags use the GnuPG home of a ``gpgkit.Signer``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.org",
            "GIT_COMMITTER_NAME": "Test Author", "GIT_COMMITTER_EMAIL": "author@example.org",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


def git_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point git at another repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, **IDENTITY, **extra}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          input=stdin, env=env or git_env(), timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}{done.stderr}")
    return done


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def init_repo(path: Path, files: dict[str, str], branch: str = "main") -> str:
    """A repository at ``path`` with ``files`` committed on ``branch``; the commit's sha."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.name", IDENTITY["GIT_AUTHOR_NAME"])  # for tools that ask git
    git(path, "config", "user.email", IDENTITY["GIT_AUTHOR_EMAIL"])
    write_tree(path, files)
    return commit(path, "initial commit")


def commit(path: Path, message: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return head(path)


def head(path: Path) -> str:
    return git(path, "rev-parse", "HEAD").stdout.strip()


def signed_tag(path: Path, name: str, gnupghome: str, fingerprint: str) -> None:
    git(path, "-c", f"user.signingkey={fingerprint}", "tag", "-s", name, "-m",
        f"release {name}", env=git_env(GNUPGHOME=gnupghome))


def annotated_tag(path: Path, name: str) -> None:
    git(path, "tag", "-a", name, "-m", f"release {name}")
