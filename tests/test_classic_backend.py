"""The classic backend's failure paths, through the real CLI and the cvmfs_server stand-in.

Every way a publish can go wrong must end with no open transaction (or, if even
``abort`` fails, with a message that says so and how to recover), nothing published, and
the command's own words in the error.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cliprocess import run_cli_process
from publishers import FAKE_SERVER, FakeServer

NAME = "sw.example.org"


@pytest.fixture
def fake(fake_server: FakeServer) -> FakeServer:
    fake_server.run("mkfs", "-o", "root", NAME)
    return fake_server


@pytest.fixture
def classic(cli, fake: FakeServer, tmp_path: Path) -> str:
    """``sw.example.org`` registered with ``init --backend cvmfs_server``."""
    result = cli("init", NAME, "--backend", "cvmfs_server", "--command", FAKE_SERVER,
                 "--mount-root", fake.home / "mount", "--spool-root", fake.home / "spool",
                 "--keys", tmp_path / "keys")
    assert result.code == 0, result.err
    assert "registered sw.example.org" in result.out
    return NAME


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("tool\n")
    return root


def published(fake: FakeServer) -> Path:
    return fake.home / "spool" / NAME / "rdonly"


def after_first_publish(cli, fake: FakeServer, src: Path) -> int:
    assert cli("publish", src, "--repo", NAME, "--path", "/sw/a/1").code == 0
    return fake.state(NAME)["revision"]


def test_cli_publish_tag_rm_rollback(cli, classic, fake, src) -> None:
    assert cli("publish", src, "--repo", NAME, "--path", "/opt/a", "-t", "a-1").code == 0
    assert (published(fake) / "opt/a/bin/tool").read_text() == "tool\n"
    assert cli("tag", "add", "stable", "--revision", "a-1", "--repo", NAME).code == 0
    assert cli("rm", "/opt/a/bin", "--repo", NAME).code == 0
    assert not (published(fake) / "opt/a/bin").exists()
    rolled = cli("rollback", "--to", "stable", "--repo", NAME, "--json")
    assert rolled.code == 0, rolled.err
    assert (published(fake) / "opt/a/bin/tool").exists()
    assert fake.subcommands().count("transaction") == 2  # publish and rm
    assert ["rollback", "-t", "stable", "-f", NAME] in fake.calls()
    assert fake.violations() == []


def test_publish_failure_aborts_and_shows_the_output(cli, classic, fake, src,
                                                     monkeypatch) -> None:
    before = after_first_publish(cli, fake, src)
    monkeypatch.setenv("FAKE_CVMFS_FAIL", "publish")
    result = cli("publish", src, "--repo", NAME, "--path", "/sw/b/1")
    assert result.code == 1
    assert "fake failure of publish (FAKE_CVMFS_FAIL)" in result.err
    assert fake.subcommands()[-3:] == ["transaction", "publish", "abort"]
    assert not fake.in_transaction(NAME)
    assert fake.state(NAME)["revision"] == before
    assert not (fake.home / "mount" / NAME / "sw/b").exists()
    assert fake.violations() == []


def test_failing_abort_says_the_transaction_may_be_open(cli, classic, fake, src,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("FAKE_CVMFS_FAIL", "publish,abort")
    result = cli("publish", src, "--repo", NAME, "--path", "/sw/b/1")
    assert result.code == 1
    assert "may still be in a transaction" in result.err
    assert "unlock --force" in result.err
    assert fake.in_transaction(NAME)
    monkeypatch.delenv("FAKE_CVMFS_FAIL")
    assert cli("unlock", "--force", "--repo", NAME).code == 0
    assert not fake.in_transaction(NAME)


def test_missing_cvmfs_server_is_one_clear_line(cli, tmp_path, src) -> None:
    result = cli("init", NAME, "--backend", "cvmfs_server", "--command",
                 tmp_path / "no" / "cvmfs_server", "--keys", tmp_path / "keys")
    assert result.code == 1
    assert "cvmfs_server not found" in result.err
    assert "Traceback" not in result.err
    assert cli("publish", src, "--repo", NAME, "--path", "/x").code != 0  # never registered


def test_sigterm_during_the_transaction_aborts(cli, classic, fake, src) -> None:
    before = after_first_publish(cli, fake, src)
    result = run_cli_process("publish", src, "--repo", NAME, "--path", "/sw/b/1",
                             env={"FAKE_CVMFS_SIGNAL_PARENT": "transaction"})
    assert result.returncode == 143, result.stderr
    assert "terminated: nothing was published" in result.stderr
    assert fake.subcommands()[-2:] == ["transaction", "abort"]
    assert not fake.in_transaction(NAME)
    assert fake.state(NAME)["revision"] == before
    assert fake.violations() == []


def test_kill_leaves_a_transaction_that_unlock_clears(cli, classic, fake, src) -> None:
    result = run_cli_process("publish", src, "--repo", NAME, "--path", "/sw/b/1",
                             env={"FAKE_CVMFS_SIGNAL_PARENT": "transaction:KILL"})
    assert result.returncode == -9
    assert fake.in_transaction(NAME)
    busy = cli("publish", src, "--repo", NAME, "--path", "/sw/c/1")
    assert busy.code == 75, busy.err
    assert "busy" in busy.err and "--wait" in busy.err
    unlocked = cli("unlock", "--force", "--repo", NAME)
    assert unlocked.code == 0 and "cvmfs_server transaction" in unlocked.out
    assert cli("publish", src, "--repo", NAME, "--path", "/sw/c/1").code == 0
    assert not (published(fake) / "sw/b").exists()
    assert (published(fake) / "sw/c/1/bin/tool").exists()


def test_wait_takes_the_repository_when_the_other_transaction_ends(classic, fake, src) -> None:
    fake.run("transaction", NAME)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "cvmfs_publisher.cli", "publish", str(src), "--repo", NAME,
         "--path", "/sw/w/1", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 60
    while fake.subcommands().count("transaction") < 3:  # mkfs's, ours, one refused retry
        assert waiting.poll() is None, waiting.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fake.run("abort", "-f", NAME)
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert (published(fake) / "sw/w/1/bin/tool").exists()


def test_the_stand_in_catches_writes_outside_a_transaction(classic, fake) -> None:
    """The contract check can fail: a write without a transaction is caught."""
    (fake.home / "mount" / NAME / "sneaky").write_text("x")
    refused = fake.run("transaction", NAME, check=False)
    assert refused.returncode != 0
    assert "modified outside a transaction" in refused.stderr
    assert [v for v in fake.violations() if "outside a transaction" in v["rule"]]


def test_the_stand_in_refuses_what_the_real_one_refuses(classic, fake) -> None:
    assert fake.run("publish", NAME, check=False).returncode == 1  # no transaction
    fake.run("transaction", NAME)
    assert fake.run("transaction", NAME, check=False).returncode == 17  # EEXIST
    assert fake.run("tag", "-a", "x", NAME, check=False).returncode == 1
    assert fake.run("abort", NAME, check=False).returncode == 1  # would prompt
    assert fake.run("publish", "--bogus", NAME, check=False).returncode == 2
    assert len(fake.violations()) == 4
