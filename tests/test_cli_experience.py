"""The operator's view through the real CLI (issue 14): status at a glance, the repository
argument, safe changes, quiet and honest output, shell completion.

Every bad input is checked for its exact message and exit code; JSON for its exact shape.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pty
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from fixturedata import FIXTURE_NAME
from publishers import FAKE_SERVER, FakeServer

from cvmfs_publisher.cli import main
from cvmfs_publisher.cli.output import WorkProgress
from cvmfs_publisher.config import Config
from cvmfs_publisher.engine.diff import Change, shown
from cvmfs_publisher.repositories import open_native
from cvmfs_publisher.storage import ObjectStream, wrapped_by
from cvmfs_publisher.storage.wrappers import StorageWrapper

NAME = "sw.example.org"


def config_path(home: Path) -> Path:
    return home / "config" / "cvmfs-publisher" / "config.yaml"


def tree(root: Path, name: str, files: dict[str, str]) -> Path:
    top = root / name
    for rel, text in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    return top


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``roots`` with its size and mtime: what "nothing written" compares."""
    found = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


def one_line(result, code: int, message: str) -> None:
    """The command failed with ``code`` and printed exactly ``error: message``."""
    assert (result.code, result.err) == (code, f"error: {message}\n"), result
    assert result.out == ""


@pytest.fixture
def content(tmp_path: Path) -> Path:
    return tree(tmp_path, "content", {"bin/tool": "one\n", "share/a": "a\n"})


# -- 1. see where things stand ------------------------------------------------------------------


def test_list_json_shape(cli, repo: str, tmp_path: Path, isolated_home: Path,
                         content: Path) -> None:
    assert cli("init", "sw.other.org", "--storage", tmp_path / "other").code == 0
    assert cli("publish", content, "--repo", repo, "--path", "/sw/a/1").code == 0
    config = config_path(isolated_home)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({"default_repository": "sw.other.org", **data}))
    (tmp_path / "other" / "sw.other.org" / ".cvmfspublished").unlink()  # unreadable now

    result = cli("list", "--json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert [sorted(item) for item in listed] == [sorted(
        ["repository", "default", "backend", "storage", "revision", "published", "error"])] * 2
    ours, other = listed
    published = dt.datetime.fromisoformat(ours.pop("published"))
    assert abs((dt.datetime.now(dt.UTC) - published).total_seconds()) < 120
    assert ours == {"repository": NAME, "default": False, "backend": "native",
                    "storage": str(tmp_path / "stratum0" / NAME), "revision": 1,
                    "error": None}
    assert other == {"repository": "sw.other.org", "default": True, "backend": "native",
                     "storage": str(tmp_path / "other" / "sw.other.org"), "revision": None,
                     "published": None, "error": f"no repository at {tmp_path / 'other'}"
                     "/sw.other.org (no .cvmfspublished)"}

    text = cli("list")
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0].split() == ["repository", "backend", "storage", "revision", "last",
                                "publish"]
    assert lines[1].split()[:4] == [NAME, "native", str(tmp_path / "stratum0" / NAME), "1"]
    assert lines[2].split()[:4] == ["sw.other.org", "(default)", "native",
                                    str(tmp_path / "other" / "sw.other.org")]
    assert lines[2].endswith(f"no repository at {tmp_path / 'other'}/sw.other.org (no "
                             ".cvmfspublished)")


def test_list_without_repositories(cli, isolated_home: Path) -> None:
    result = cli("list")
    assert (result.code, result.out) == (0, "")
    assert result.err == (f"no repositories in {config_path(isolated_home)}; create one with "
                          "'cvmfs-publisher init NAME --storage DIR'\n")
    assert json.loads(cli("list", "--json").out) == []


def test_info_json_shape(cli, repo: str, tmp_path: Path, content: Path) -> None:
    assert cli("publish", content, "--repo", repo, "--path", "/sw/a/1", "-t", "a-1").code == 0
    result = cli("info", "--repo", repo, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    storage = tmp_path / "stratum0" / NAME
    objects = [p for p in (storage / "data").rglob("*") if p.is_file() and "txn" not in p.parts]
    head = open_native(Config.load().get(NAME)).head()
    assert sorted(info) == ["backend", "bytes", "default", "lock", "notes", "objects",
                            "published", "repository", "revision", "storage", "tags",
                            "whitelist"]
    assert info["whitelist"].pop("seconds_left") > 29 * 86400
    assert info == {
        "repository": NAME, "default": False, "backend": "native", "storage": str(storage),
        "revision": 1,
        "published": dt.datetime.fromtimestamp(head.manifest.timestamp, dt.UTC).isoformat(),
        "tags": {"count": 2, "names": ["a-1", "trunk"]},
        "objects": len(objects), "bytes": sum(p.stat().st_size for p in objects),
        "lock": None,
        "whitelist": {"expires": head.whitelist.expires.isoformat(), "expiring": False},
        "notes": [],
    }


def test_info_shows_the_lock_holder(cli, repo: str) -> None:
    storage = open_native(Config.load().get(NAME)).storage
    with storage.lock("alice publishing by hand"):
        info = json.loads(cli("info", "--repo", repo, "--json").out)
        text = cli("info", "--repo", repo).out
    assert info["lock"]["owner"] == "alice publishing by hand"
    assert info["lock"]["pid"] == os.getpid()
    assert sorted(info["lock"]) == ["expires", "host", "owner", "pid", "since"]
    assert f"lock:       held by alice publishing by hand (pid {os.getpid()} on " in text
    assert json.loads(cli("info", "--repo", repo, "--json").out)["lock"] is None


def test_info_and_verify_warn_when_the_whitelist_expires_within_7_days(cli, repo: str
                                                                       ) -> None:
    assert cli("resign", "--repo", repo, "--days", "3").code == 0
    info = cli("info", "--repo", repo)
    assert info.code == 0
    assert info.err == (f"warning: the whitelist of {NAME} expires within 7 days: run "
                        f"'cvmfs-publisher resign --repo {NAME}'\n")
    assert "(3.0 days left)" in info.out or "(2.9 days left)" in info.out
    assert json.loads(cli("info", "--repo", repo, "--json").out)["whitelist"]["expiring"]
    verified = cli("verify", "--repo", repo)
    assert verified.code == 0 and verified.out.startswith("OK: ")
    assert verified.err.startswith(f"warning: the whitelist of {NAME} expires on ")
    assert verified.err.endswith(f"days: run 'cvmfs-publisher resign --repo {NAME}' (or let a "
                                 "timer run 'resign --if-expiring-within 7d')\n")
    assert "whitelist_warning" in json.loads(cli("verify", "--repo", repo, "--json").out)
    # the timer's command renews it, and then nobody warns any more
    renewed = cli("resign", "--repo", repo, "--if-expiring-within", "7d")
    assert renewed.code == 0 and "re-signed, valid until" in renewed.out
    assert cli("info", "--repo", repo).err == ""
    assert cli("verify", "--repo", repo).err == ""


def test_info_of_a_classic_repository(cli, fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.run("mkfs", "-o", "root", NAME)
    assert cli("init", NAME, "--backend", "cvmfs_server", "--command", FAKE_SERVER,
               "--mount-root", fake_server.home / "mount", "--spool-root",
               fake_server.home / "spool", "--keys", tmp_path / "keys",
               "--storage", tmp_path / "nowhere").code == 0
    result = cli("info", "--repo", NAME, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    trunk = fake_server.state(NAME)["tags"]["trunk"]
    assert info["backend"] == "cvmfs_server" and info["revision"] == trunk["revision"]
    assert info["tags"] == {"count": 1, "names": ["trunk"]}
    assert (info["lock"], info["whitelist"], info["objects"], info["bytes"]) == (None,) * 4
    assert info["notes"] == [f"storage {tmp_path / 'nowhere' / NAME} not readable here "
                             f"(missing key file {tmp_path / 'keys' / NAME}.pub): no "
                             "whitelist expiry or object counts"]


# -- 2. the repository argument -----------------------------------------------------------------


def test_default_repository_from_the_environment_and_the_config(
        cli, repo: str, tmp_path: Path, isolated_home: Path, content: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    one_line(cli("ls"), 2, "no repository given: use --repo NAME, or set CVMFS_PUBLISHER_REPO "
             f"or default_repository in {config_path(isolated_home)}")
    config = config_path(isolated_home)
    config.write_text(config.read_text() + f"default_repository: {NAME}\n")
    assert cli("publish", content, "--path", "/sw/a/1").code == 0
    assert "bin" in cli("ls", "/sw/a/1").out
    # init keeps the key when it rewrites the file
    assert cli("init", "sw.other.org", "--storage", tmp_path / "other").code == 0
    assert yaml.safe_load(config.read_text())["default_repository"] == NAME
    assert json.loads(cli("info", "--json").out)["repository"] == NAME
    monkeypatch.setenv("CVMFS_PUBLISHER_REPO", "sw.other.org")  # the environment wins
    assert json.loads(cli("info", "--json").out)["repository"] == "sw.other.org"
    assert json.loads(cli("tags", "--json").out) == []


def test_a_default_repository_that_is_not_configured(cli, repo: str,
                                                     isolated_home: Path) -> None:
    config = config_path(isolated_home)
    config.write_text(config.read_text() + "default_repository: sw.exmple.org\n")
    one_line(cli("ls", "--repo", repo), 1,
             f"{config}: default_repository 'sw.exmple.org' is not one of the configured "
             f"repositories ({NAME}) (did you mean '{NAME}'?)")


def test_names_close_to_a_configured_one(cli, repo: str, content: Path,
                                         isolated_home: Path) -> None:
    config = config_path(isolated_home)
    one_line(cli("publish", content, "--repo", "sw.exmple.org", "--path", "/x"), 1,
             f"no repository 'sw.exmple.org' in {config}; did you mean '{NAME}'?")
    one_line(cli("ls", "--repo", "sw.examlpe.org"), 1,
             f"'sw.examlpe.org' is neither a configured repository (see {config}), a "
             f"repository directory nor an http(s) URL; did you mean '{NAME}'?")
    one_line(cli("publish", content, "--repo", "other.example.org", "--path", "/x"), 1,
             f"no repository 'other.example.org' in {config} (configured: {NAME}); create it "
             "with 'cvmfs-publisher init other.example.org --storage DIR'")
    one_line(cli("gc", "--repo", "no_dots"), 1,
             f"no repository 'no_dots' in {config} (configured: {NAME})")


def test_a_directory_where_a_configured_repository_is_needed(cli, repo: str, tmp_path: Path,
                                                             content: Path,
                                                             fixture_copy: Path,
                                                             isolated_home: Path) -> None:
    own = tmp_path / "stratum0" / NAME
    one_line(cli("publish", content, "--repo", own, "--path", "/x"), 2,
             f"{own} is the directory of the configured repository {NAME}: use --repo {NAME}")
    other = fixture_copy / "storage"
    one_line(cli("rm", "/x", "--repo", other), 2,
             f"{other} is the directory of repository {FIXTURE_NAME}, which is not configured "
             f"in {config_path(isolated_home)}; this command writes, so it needs a configured "
             f"name: add '{FIXTURE_NAME}: {{storage: {fixture_copy}, keys: KEY_DIR}}' under "
             "repositories there (KEY_DIR holding its keys)")
    one_line(cli("tag", "add", "x", "--repo", tmp_path), 2,
             f"{tmp_path} is a directory, not a repository (it has no .cvmfspublished) nor the "
             "name of a configured repository")
    one_line(cli("unlock", "--force", "--repo", f"http://127.0.0.1:1/cvmfs/{NAME}"), 2,
             f"http://127.0.0.1:1/cvmfs/{NAME} is a URL; this command writes, so it needs the "
             "name of a configured repository (see 'cvmfs-publisher list')")


def test_a_config_file_that_does_not_exist(cli, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing.yaml"
    message = (f"config file {missing} does not exist (create it with 'cvmfs-publisher "
               "--config FILE init NAME --storage DIR')")
    one_line(cli("--config", missing, "ls", "--repo", NAME), 1, message)
    one_line(cli("--config", missing, "list"), 1, message)
    monkeypatch.setenv("CVMFS_PUBLISHER_CONFIG", str(missing))  # the environment names it too
    one_line(cli("info", "--repo", NAME), 1, message)
    assert cli("init", NAME, "--storage", tmp_path / "s0").code == 0  # init creates it
    assert NAME in yaml.safe_load(missing.read_text())["repositories"]
    assert cli("info", "--repo", NAME).code == 0


def test_verify_a_directory_that_is_not_a_repository(cli, repo: str, tmp_path: Path) -> None:
    one_line(cli("verify", "--repo", tmp_path / "content-nowhere"), 1,
             f"'{tmp_path / 'content-nowhere'}' is neither a configured repository (see "
             f"{tmp_path / 'home/config/cvmfs-publisher/config.yaml'}), a repository "
             "directory nor an http(s) URL")
    (tmp_path / "empty").mkdir()
    one_line(cli("verify", "--repo", tmp_path / "empty"), 1,
             f"{tmp_path / 'empty'} is not a CVMFS repository: the directory has no "
             ".cvmfspublished")
    one_line(cli("verify", "--repo", tmp_path / "stratum0"), 1,
             f"{tmp_path / 'stratum0'} is not a CVMFS repository: the directory has no "
             f".cvmfspublished; did you mean {tmp_path / 'stratum0' / NAME}?")
    # a repository directory: its manifest names it, so its key is found without --key
    verified = cli("verify", "--repo", tmp_path / "stratum0" / NAME)
    assert verified.code == 0 and verified.out.startswith(f"OK: {NAME} revision 0"), verified


# -- 3. safe changes ----------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_says_what_would_change(cli, repo: str, tmp_path: Path,
                                                         isolated_home: Path) -> None:
    v1 = tree(tmp_path, "v1", {"bin/tool": "one\n", "share/a": "a\n"})
    v2 = tree(tmp_path, "v2", {"bin/tool": "two\n", "share/b": "bb\n"})
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/t/1").code == 0
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/u/1").code == 0
    watched = (tmp_path / "stratum0", isolated_home)
    before = snapshot(*watched)
    dry = cli("publish", v2, "--repo", repo, "--path", "/sw/t/1", "--remove", "/sw/u",
              "--dry-run", "-t", "t-2")
    assert dry.code == 0, dry.err
    assert snapshot(*watched) == before
    lines = dry.out.splitlines()
    assert lines[:-1] == ["M /sw/t/1/bin/tool (content)", "D /sw/t/1/share/a",
                          "A /sw/t/1/share/b", "D /sw/u"]
    assert lines[-1].startswith(f"dry run: revision 3 of {NAME} would add 1, change 1 and "
                                "remove 2 paths; 2 files (7 B) read, ")
    assert lines[-1].endswith(" to store; nothing was written")
    data = json.loads(cli("publish", v2, "--repo", repo, "--path", "/sw/t/1", "--remove",
                          "/sw/u", "--dry-run", "--json").out)
    assert snapshot(*watched) == before
    assert sorted(data) == ["added", "bytes_in", "bytes_written", "changed", "dry_run",
                            "files", "objects_written", "removed", "repository", "revision",
                            "tag", "warnings"]
    assert (data["added"], data["changed"], data["removed"]) == (
        ["/sw/t/1/share/b"], [{"path": "/sw/t/1/bin/tool", "fields": ["content"]}],
        ["/sw/t/1/share/a", "/sw/u"])
    assert data["dry_run"] and data["revision"] == 3 and data["objects_written"] > 0
    # a dry run checks what the real one would: the tag exists already
    assert cli("tag", "add", "taken", "--repo", repo).code == 0
    refused = cli("publish", v2, "--repo", repo, "--path", "/x", "--dry-run", "-t", "taken")
    assert refused.code == 1 and "already exists" in refused.err
    real = cli("publish", v2, "--repo", repo, "--path", "/sw/t/1", "--remove", "/sw/u")
    assert real.out.startswith(f"published revision 3 of {NAME}")


def test_dry_run_refused_for_a_classic_repository(cli, fake_server: FakeServer,
                                                  tmp_path: Path, content: Path) -> None:
    fake_server.run("mkfs", "-o", "root", NAME)
    assert cli("init", NAME, "--backend", "cvmfs_server", "--command", FAKE_SERVER,
               "--mount-root", fake_server.home / "mount", "--spool-root",
               fake_server.home / "spool", "--keys", tmp_path / "keys").code == 0
    one_line(cli("publish", content, "--repo", NAME, "--path", "/x", "--dry-run"), 2,
             f"--dry-run is not available for {NAME}: its backend is cvmfs_server, which cannot "
             "try a publish without opening a real transaction; publish, then "
             "'cvmfs-publisher diff trunk-previous' shows what changed")
    assert "transaction" not in fake_server.subcommands()


def test_publishing_at_the_root_needs_force(cli, repo: str, content: Path) -> None:
    one_line(cli("publish", content, "--repo", repo, "--path", "/"), 2,
             f"{content} --path /: publishing at / replaces the whole repository; add --force "
             "if that is what you want")
    one_line(cli("publish", "--repo", repo, "--add", f"{content}:/"), 2,
             f"--add {content}:/: publishing at / replaces the whole repository; add --force "
             "if that is what you want")
    one_line(cli("publish", content, "--repo", repo, "--path", ""), 2,
             "the repository path is empty: use / to publish at the root")
    forced = cli("publish", content, "--repo", repo, "--path", "/", "--force")
    assert forced.code == 0, forced.err
    assert cli("cat", "/bin/tool", "--repo", repo).out == "one\n"


def test_several_changes_in_one_revision(cli, repo: str, tmp_path: Path) -> None:
    a = tree(tmp_path, "a", {"f": "a\n"})
    b = tree(tmp_path, "b", {"g": "b\n"})
    assert cli("publish", a, "--repo", repo, "--path", "/old/x").code == 0
    result = cli("publish", "--repo", repo, "--add", f"{a}:/sw/a/1", "--add", f"{b}:/sw/b/1",
                 "--remove", "/old", "-t", "both", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["revision"] == 2
    assert cli("cat", "/sw/a/1/f", "--repo", repo).out == "a\n"
    assert cli("cat", "/sw/b/1/g", "--repo", repo).out == "b\n"
    assert cli("ls", "/old", "--repo", repo).code == 1
    changes = json.loads(cli("diff", "1", "2", "--repo", repo, "--json").out)
    assert {(c["kind"], c["path"]) for c in changes} == {
        ("added", "/sw"), ("removed", "/old")}

    listing = tmp_path / "lists" / "changes.txt"
    listing.parent.mkdir()
    (tmp_path / "lists" / "c d").mkdir()
    (tmp_path / "lists" / "c d" / "h").write_text("c\n")
    listing.write_text("# next release\n\nadd '../a' /sw/a/2   # relative to this file\n"
                       "add \"c d\" /sw/c/1\nremove /sw/b\n")
    result = cli("publish", "--repo", repo, "--changes", listing)
    assert result.code == 0, result.err
    assert result.out.startswith(f"published revision 3 of {NAME}: 2 files")
    assert cli("cat", "/sw/a/2/f", "--repo", repo).out == "a\n"
    assert cli("cat", "/sw/c/1/h", "--repo", repo).out == "c\n"
    assert cli("ls", "/sw/b", "--repo", repo).code == 1


def test_bad_changes_are_refused_before_anything_happens(cli, repo: str, tmp_path: Path,
                                                        content: Path) -> None:
    listing = tmp_path / "changes.txt"
    cases = [
        (("publish", "--repo", repo), "nothing to publish: give SRC --path /REPO/PATH, --add "
         "SRC:/REPO/PATH, --remove /REPO/PATH or --changes FILE"),
        (("publish", content, "--repo", repo), f"give --path /REPO/PATH: where {content} goes"),
        (("publish", "--repo", repo, "--path", "/x"),
         "--path says where SRC goes: give SRC too, or use --add SRC:/REPO/PATH"),
        (("publish", "--repo", repo, "--add", str(content)),
         f"--add '{content}' is not SRC:/REPO/PATH"),
        (("publish", "--repo", repo, "--add", f"{content}:/sw/a", "--remove", "/sw/a/bin"),
         f"--add {content}:/sw/a and --remove /sw/a/bin both change /sw/a/bin: one revision "
         "changes each path once (publish the larger tree, or change the two paths in two "
         "revisions)"),
        (("publish", "--repo", repo, "--add", f"{content}:/sw/a", "--add", f"{content}:/sw/a"),
         f"--add {content}:/sw/a and --add {content}:/sw/a both change /sw/a: one revision "
         "changes each path once (publish the larger tree, or change the two paths in two "
         "revisions)"),
        (("publish", "--repo", repo, "--changes", listing),
         f"changes file {listing} does not exist"),
    ]
    for args, message in cases:
        one_line(cli(*args), 2, message)
    for text, message in [
        ("# nothing\n", f"changes file {listing} lists no change"),
        ("add only-one\n", f"{listing}:1: expected 'add SRC /REPO/PATH' or 'remove /REPO/PATH', "
         "not 'add only-one'"),
        ("remove /a\nmove /a /b\n", f"{listing}:2: expected 'add SRC /REPO/PATH' or 'remove "
         "/REPO/PATH', not 'move /a /b'"),
        ("add 'unclosed /a\n", f"{listing}:1: No closing quotation"),
        ("remove /\n", "refusing to remove the repository root; publish an empty directory "
         "at / to clear it"),
    ]:
        listing.write_text(text)
        result = cli("publish", "--repo", repo, "--changes", listing)
        assert (result.code, result.err) in ((2, f"error: {message}\n"),
                                             (1, f"error: {message}\n")), result
    assert json.loads(cli("info", "--repo", repo, "--json").out)["revision"] == 0


def test_rollback_goes_to_trunk_previous_and_says_what_changed(cli, repo: str,
                                                               tmp_path: Path) -> None:
    v1 = tree(tmp_path, "v1", {"bin/tool": "one\n", "share/a": "a\n"})
    v2 = tree(tmp_path, "v2", {"bin/tool": "two\n", "share/b": "b\n"})
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/t/1").code == 0
    assert cli("publish", v2, "--repo", repo, "--path", "/sw/t/1").code == 0
    result = cli("rollback", "--repo", repo)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "M /sw/t/1/bin/tool (content)", "A /sw/t/1/share/a", "D /sw/t/1/share/b",
        f"published revision 3 of {NAME} with the content of revision 1 (trunk-previous): "
        "1 added, 1 changed, 1 removed"]
    assert cli("cat", "/sw/t/1/bin/tool", "--repo", repo).out == "one\n"
    undone = json.loads(cli("rollback", "--repo", repo, "--json").out)  # undo the undo
    assert undone["revision"] == 4 and undone["restored"] == {"target": "trunk-previous",
                                                              "revision": 2}
    assert [(c["kind"], c["path"]) for c in undone["changes"]] == [
        ("changed", "/sw/t/1/bin/tool"), ("removed", "/sw/t/1/share/a"),
        ("added", "/sw/t/1/share/b")]
    assert cli("cat", "/sw/t/1/bin/tool", "--repo", repo).out == "two\n"


def test_rm_says_what_it_removed(cli, repo: str, tmp_path: Path) -> None:
    release = tree(tmp_path, "r", {"bin/tool": "tool\n", "lib/x.so": "xx\n"})
    (release / "lib" / "link").symlink_to("x.so")
    assert cli("publish", release, "--repo", repo, "--path", "/sw/p/0.9").code == 0
    result = cli("rm", "/sw/p/0.9/lib", "/sw/p/0.9/bin/tool", "--repo", repo)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:2] == ["removed /sw/p/0.9/lib: 1 files (3 B), 1 directories, 1 links and "
                         "special files", "removed /sw/p/0.9/bin/tool: 1 files (5 B), 0 "
                         "directories"]
    assert lines[2].startswith(f"published revision 2 of {NAME} in ")
    assert cli("publish", release, "--repo", repo, "--path", "/sw/p/1.0").code == 0
    data = json.loads(cli("rm", "/sw/p/1.0", "--repo", repo, "--json").out)
    assert data["removed"] == [{"path": "/sw/p/1.0", "files": 3, "directories": 3, "other": 1,
                                "bytes": 8}]  # with the release's .cvmfscatalog marker


# -- 4. quiet, honest output --------------------------------------------------------------------


def test_diff_hides_what_every_change_drags_along(cli, repo: str, tmp_path: Path) -> None:
    v1 = tree(tmp_path, "v1", {"bin/tool": "one\n"})
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/t/1", "-t", "one").code == 0
    time.sleep(1.1)  # mtimes are seconds: the parent's must be able to change
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/t/2", "-t", "two").code == 0
    assert cli("rm", "/sw/t/1/bin/tool", "--repo", repo, "-t", "three").code == 0
    assert cli("diff", "one", "two", "--repo", repo).out == "A /sw/t/2\n"
    assert cli("diff", "one", "two", "--repo", repo, "--all").out.splitlines() == [
        "M /sw/t (mtime)", "A /sw/t/2"]
    assert cli("diff", "two", "three", "--repo", repo).out == "D /sw/t/1/bin/tool\n"
    assert [c["path"] for c in json.loads(cli("diff", "two", "three", "--repo", repo,
                                              "--all", "--json").out)] == [
        "/sw/t/1/bin", "/sw/t/1/bin/tool"]


def test_shown_changes() -> None:
    """The rule itself: markers' and parents' mtimes go, a lone directory's mtime stays."""
    changes = [Change("changed", "/a", ("mtime",), "dir"),
               Change("changed", "/a/.cvmfscatalog", ("mtime",), "file"),
               Change("changed", "/b", ("mtime",), "dir"),
               Change("changed", "/c", ("mtime", "mode"), "dir"),
               Change("changed", "/c/f", ("mtime",), "file"),
               Change("added", "/c/g", (), "file")]
    assert shown(changes) == [changes[2], changes[3], changes[4], changes[5]]


def test_gc_json_says_why_each_revision_is_kept(cli, repo: str, tmp_path: Path) -> None:
    v1 = tree(tmp_path, "v1", {"f": "1\n"})
    v2 = tree(tmp_path, "v2", {"f": "2\n"})
    for source, tag in ((v1, "r1"), (v2, None), (v1, "r3"), (v2, None)):
        assert cli("publish", source, "--repo", repo, "--path", "/x",
                   *(("-t", tag) if tag else ())).code == 0
    result = cli("gc", "--repo", repo, "--keep-revisions", "2", "--keep-days", "0", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert sorted(plan) == ["dropped_tags", "dry_run", "garbage", "garbage_bytes", "kept",
                            "kept_revisions", "output", "reachable"]
    assert [(k["revision"], k["reasons"]) for k in plan["kept"]] == [
        (4, ["current", "one of the latest 2", "tag trunk"]),
        (3, ["one of the latest 2", "tag r3", "tag trunk-previous"]),
        (1, ["tag r1"])]
    assert all(sorted(k) == ["reasons", "revision", "root_hash", "timestamp"]
               for k in plan["kept"])
    assert plan["kept_revisions"] == [3, 4] and len(plan["dropped_tags"]) == 1
    assert plan["garbage"] and not plan["dry_run"]
    text = cli("gc", "--repo", repo, "--keep-days", "1", "--dry-run").out.splitlines()
    assert "keeping revision 4: current; published since " in "\n".join(text)
    assert cli("verify", "--repo", repo).code == 0


class ChattyLibraries(StorageWrapper):
    """A storage whose reads make libraries talk the way urllib3 and python-gnupg do."""

    def open(self, key: str) -> ObjectStream:
        logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=2)) ...")
        logging.getLogger("gnupg").error("gpg returned a non-zero error code: 2")  # its
        # level is ERROR (releases/trust.py): an error, which only -vv shows
        warnings.warn("Unverified HTTPS request is being made", UserWarning, stacklevel=1)
        return super().open(key)


def test_library_warnings_stay_out_of_our_output(cli, repo: str) -> None:
    with wrapped_by(ChattyLibraries):
        quiet = cli("tags", "--repo", repo)
        loud = cli("-vv", "tags", "--repo", repo)
    assert (quiet.code, quiet.err) == (0, "")
    assert "WARNING: Retrying (Retry(total=2)) ..." in loud.err  # they did speak
    assert "gpg returned a non-zero error code" in loud.err
    assert "Unverified HTTPS request" in loud.err


def test_an_unreachable_url_is_one_line(cli, repo: str, isolated_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    url = f"http://127.0.0.1:{port}/cvmfs/{NAME}"
    key = isolated_home / "config" / "cvmfs-publisher" / "keys" / f"{NAME}.pub"
    for command in ("verify", "ls", "tags"):
        result = cli(command, "--repo", url, "--key", key)
        assert result.code == 1 and result.out == ""
        assert result.err.count("\n") == 1, result.err
        assert result.err.startswith(f"error: cannot reach {url}: ")
        assert "Retrying" not in result.err and "WARNING" not in result.err


def test_progress_bars_on_a_terminal(repo: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """verify, gc and publish draw a progress bar on a real terminal once the run is long enough."""
    monkeypatch.setattr(WorkProgress, "DELAY", 0.0)
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    terminal = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("COLUMNS", "160")

    def drawn_by(*args: str) -> str:
        assert main(list(args)) == 0
        terminal.flush()
        text = b""
        while True:
            try:
                text += os.read(master, 65536)
            except BlockingIOError:
                return text.decode(errors="replace")

    try:
        assert drawn_by("verify", "--repo", repo, "--no-progress") == ""
        assert "verifying" in drawn_by("verify", "--repo", repo)
        assert "objects read" in drawn_by("gc", "--repo", repo, "--keep-days", "0")
        monkeypatch.setattr(WorkProgress, "DELAY", 60.0)  # a quick run draws nothing
        assert drawn_by("verify", "--repo", repo) == ""
        src = tmp_path / "three"
        for name in ("a", "b", "d/c"):
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(name)
        assert "3/3 files" in drawn_by("publish", str(src), "--repo", repo, "--path", "/p")
        assert drawn_by("publish", str(src), "--repo", repo, "--path", "/q",
                        "--no-progress") == ""
    finally:
        terminal.close()
        os.close(master)


# -- 6. set-up: shell completion ---------------------------------------------------------------


def complete(words: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "cvmfs_publisher.cli"], capture_output=True, text=True,
        env={**os.environ, **env, "_CVMFS_PUBLISHER_COMPLETE": "bash_complete",
             "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion(repo: str, tmp_path: Path) -> None:
    script = subprocess.run([sys.executable, "-m", "cvmfs_publisher.cli"], capture_output=True,
                            text=True, env={**os.environ,
                                            "_CVMFS_PUBLISHER_COMPLETE": "bash_source"})
    assert "_cvmfs_publisher_completion()" in script.stdout
    assert "complete -o nosort -F _cvmfs_publisher_completion cvmfs-publisher" in script.stdout
    assert complete("cvmfs-publisher pub", {}) == ["plain,publish"]
    assert complete("cvmfs-publisher ls --repo sw.ex", {}) == [f"plain,{NAME}"]
