"""What a repository holds, read through the in-process CLI (the ``cli`` fixture)."""

from __future__ import annotations

import json


def tags(cli, repo: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Name -> ``tags --json`` row."""
    result = cli("tags", "--repo", repo, "--json")
    assert result.code == 0, result.err
    return {t["name"]: t for t in json.loads(result.out)}


def revision(cli, repo: str) -> int:  # type: ignore[no-untyped-def]
    """The newest tagged revision (``trunk`` is the current one), 0 for none."""
    return max((t["revision"] for t in tags(cli, repo).values()), default=0)


def content(cli, repo: str, path: str) -> str:  # type: ignore[no-untyped-def]
    result = cli("cat", "--repo", repo, path)
    assert result.code == 0, result.err
    return result.out
