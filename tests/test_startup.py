"""Start-up imports only what a command needs (issue 13, item 5). Timing is bench/startup.py's
business; this checks which modules a fresh interpreter loads, which does not flake."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvmfs_publisher.cli import COMMANDS, cli

NAME = "sw.example.org"
# what no command that only reads a repository needs
NEVER_FOR_READING = ("rich", "boto3", "botocore", "jinja2", "gnupg", "git", "watchdog",
                     "pathspec", "cvmfs_publisher.web", "cvmfs_publisher.releases",
                     "cvmfs_publisher.watch", "cvmfs_publisher.replication",
                     "cvmfs_publisher.backends", "cvmfs_publisher.ci",
                     "cvmfs_publisher.sources", "unpacker")


def imported(*args: str | Path) -> set[str]:
    """Every module a fresh ``cvmfs-publisher ARGS`` imported (``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cvmfs_publisher.cli",
                           *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "self [us]" not in line}


def loaded(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_imports_no_command() -> None:
    modules = imported("--help")
    ours = loaded(modules, ("cvmfs_publisher",))
    assert ours == ["cvmfs_publisher", "cvmfs_publisher.cli", "cvmfs_publisher.cli.output",
                    "cvmfs_publisher.errors"]
    assert not loaded(modules, ("numpy", "requests", "urllib3", "cryptography", "yaml",
                                "logging", *NEVER_FOR_READING))


@pytest.mark.parametrize("args", [("ls", "/"), ("cat", "/sw/f")])
def test_ls_and_cat_import_only_the_read_path(cli, repo: str, tmp_path: Path,
                                              args: tuple[str, ...]) -> None:
    (tmp_path / "f").write_text("x\n")
    assert cli("publish", tmp_path / "f", "--repo", repo, "--path", "/sw/f").code == 0
    modules = imported(*args, "--repo", repo)
    assert not loaded(modules, NEVER_FOR_READING)
    commands = loaded(modules, ("cvmfs_publisher.cli",))
    assert commands == ["cvmfs_publisher.cli", "cvmfs_publisher.cli.browse",
                        "cvmfs_publisher.cli.common", "cvmfs_publisher.cli.logs",
                        "cvmfs_publisher.cli.output"]


def test_the_command_list_matches_the_commands() -> None:
    """--help lists commands from a table: it must say what each command says itself."""
    context = click.Context(cli)
    assert sorted(COMMANDS) == cli.list_commands(context)
    for name, (module, attribute, summary) in COMMANDS.items():
        command = getattr(importlib.import_module(f"cvmfs_publisher.cli.{module}"), attribute)
        assert command.name == name
        assert command.help is not None
        first = " ".join(command.help.split("\n\n")[0].split())
        assert first == summary, name
        for limit in (45, 80):
            assert (command.get_short_help_str(limit)
                    == click.Command(name, help=summary).get_short_help_str(limit))
    listed = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    for name, (module, attribute, _) in COMMANDS.items():
        command = getattr(importlib.import_module(f"cvmfs_publisher.cli.{module}"), attribute)
        assert f"  {name:<15}  {command.get_short_help_str(100 - 6 - 15)}\n" in listed
