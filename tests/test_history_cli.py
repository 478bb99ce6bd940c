"""The history commands as a user types them: tag add/rm, rollback, diff, gc."""

from __future__ import annotations

import json
from pathlib import Path


def release(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_tag_rollback_diff_gc(cli, repo: str, tmp_path: Path) -> None:
    v1 = release(tmp_path, "v1", {"bin/tool": "one\n", "share/a": "a\n"})
    v2 = release(tmp_path, "v2", {"bin/tool": "two\n", "share/b": "b\n"})
    assert cli("publish", v1, "--repo", repo, "--path", "/sw/tool/1", "--tag", "r1").code == 0
    assert cli("publish", v2, "--repo", repo, "--path", "/sw/tool/1", "--tag", "r2").code == 0

    changes = json.loads(cli("diff", "r1", "r2", "--repo", repo, "--json").out)
    assert {(c["kind"], c["path"]) for c in changes} == {
        ("changed", "/sw/tool/1/bin/tool"), ("removed", "/sw/tool/1/share/a"),
        ("added", "/sw/tool/1/share/b")}
    text = cli("diff", "r1", "--repo", repo).out.splitlines()
    assert "M /sw/tool/1/bin/tool (content)" in text

    added = cli("tag", "add", "stable", "--revision", "1", "-m", "known good", "--repo", repo)
    assert added.code == 0 and "revision 1" in added.out
    assert cli("tag", "add", "stable", "--repo", repo).code == 1  # names are not reused
    assert cli("tag", "rm", "trunk", "--repo", repo).code == 1  # reserved

    rolled = cli("rollback", "--to", "stable", "--repo", repo, "--json")
    assert rolled.code == 0 and json.loads(rolled.out)["revision"] == 3
    assert cli("cat", "/sw/tool/1/bin/tool", "--repo", repo).out == "one\n"
    assert cli("diff", "stable", "--repo", repo).out == ""
    assert cli("rollback", "--to", "stable", "--repo", repo).code == 1  # already current

    assert cli("tag", "rm", "r2", "--repo", repo).code == 0
    tags = {t["name"] for t in json.loads(cli("tags", "--repo", repo, "--json").out)}
    assert "r2" not in tags and {"r1", "stable", "trunk"} <= tags

    dry = json.loads(cli("gc", "--repo", repo, "--keep-days", "0", "--dry-run", "--json").out)
    assert dry["dry_run"] and dry["garbage"]
    assert all(Path(tmp_path / "stratum0" / repo / key).exists() for key in dry["garbage"])
    done = cli("gc", "--repo", repo, "--keep-days", "0")
    assert done.code == 0 and f"deleted {len(dry['garbage'])} objects" in done.out
    assert not any(Path(tmp_path / "stratum0" / repo / key).exists() for key in dry["garbage"])
    assert cli("verify", "--repo", repo).code == 0
    assert cli("cat", "/sw/tool/1/bin/tool", "--repo", repo).out == "one\n"


def test_unknown_tag(cli, repo: str) -> None:
    result = cli("diff", "nope", "--repo", repo)
    assert result.code == 1 and "no tag or revision 'nope'" in result.err
