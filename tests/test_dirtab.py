"""``.cvmfsdirtab`` matching: upstream's glob semantics, in time linear in the path.

A dirtab is published content; whoever can publish could otherwise hang every later
publish with a pattern a backtracking matcher needs exponential time for.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from cvmfs_publisher.cvmfs.dirtab import Dirtab, Pattern

PATHOLOGICAL = "/" + "*a" * 30 + "b"


def regex_oracle(pattern: str, relaxed: bool) -> re.Pattern[str]:
    """The old matcher: right on small inputs, exponential on hostile ones."""
    star, one = (".*", ".") if relaxed else ("[^/]*", "[^/]")
    body = "".join(star if c == "*" else one if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}/?$")


def test_same_answers_as_the_glob_semantics() -> None:
    rnd = random.Random(7)
    for _ in range(20_000):
        pattern = "".join(rnd.choice("ab/*?") for _ in range(rnd.randint(0, 7)))
        path = "".join(rnd.choice("ab/") for _ in range(rnd.randint(0, 9)))
        for relaxed in (False, True):
            want = bool(regex_oracle(pattern, relaxed).match(path))
            assert Pattern(pattern, relaxed).match(path) == want, (pattern, path, relaxed)


def test_rules_of_a_real_dirtab() -> None:
    dirtab = Dirtab.parse("# per platform\n/apps/*/*\n! /apps/*/test\n/sw/*/?.*\n")
    assert dirtab.matches("/apps/x/y") and dirtab.matches("/sw/pkg/1.0")
    assert not dirtab.matches("/apps/x/test")  # excluded
    assert not dirtab.matches("/apps/x") and not dirtab.matches("/apps/x/y/z")
    assert not dirtab.matches("/sw/pkg/10.0") and not dirtab.matches("")


def test_pathological_pattern_is_fast() -> None:
    dirtab = Dirtab.parse(PATHOLOGICAL)
    started = time.perf_counter()
    assert not dirtab.matches("/" + "a" * 400)
    assert time.perf_counter() - started < 1.0


def test_pathological_dirtab_publishes_in_under_a_second(cli, repo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = src / ("a" * 60) / ("a" * 60)
    deep.mkdir(parents=True)
    (src / ".cvmfsdirtab").write_text(PATHOLOGICAL + "\n")
    (deep / "f").write_text("x")
    assert cli("publish", src, "--repo", repo, "--path", "/", "--force").code == 0
    (deep / "g").write_text("y")
    started = time.perf_counter()
    result = cli("publish", src, "--repo", repo, "--path", "/", "--force")
    assert result.code == 0, result.err
    assert time.perf_counter() - started < 1.0
