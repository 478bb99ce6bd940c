"""Shared test fixtures: an isolated home for every test, the upstream fixture, a CLI runner."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixturedata import FIXTURE_NAME, find_fixture
from publishers import FakeServer

from cvmfs_publisher.cli import main


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real user's config, keys or cache."""
    home = tmp_path / "home"
    for name, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                      ("HOME", "")):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("CVMFS_PUBLISHER_CONFIG", raising=False)
    return home


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The in-process CLI points the root logger at the captured stderr; later tests must
    not log there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """A writable copy of the upstream reference repository (storage/ and keys/)."""
    target = tmp_path / "fixture"
    shutil.copytree(find_fixture(), target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (target / "keys" / f"{FIXTURE_NAME}.key").chmod(0o600)
    (target / "keys" / f"{FIXTURE_NAME}.masterkey").chmod(0o600)
    return target


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return find_fixture()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process: ``cli("init", "sw.example.org", ...)`` -> Result."""

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """The cvmfs_server stand-in's state directory, in the environment of every call."""
    server = FakeServer(tmp_path / "fake")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return server


@pytest.fixture
def repo(cli, tmp_path: Path) -> str:
    """A freshly initialised native repository ``sw.example.org`` in ``tmp_path/stratum0``."""
    result = cli("init", "sw.example.org", "--storage", tmp_path / "stratum0")
    assert result.code == 0, result.err
    return "sw.example.org"
