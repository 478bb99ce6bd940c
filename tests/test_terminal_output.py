"""What a repository holds reaches the terminal literally: no markup, no control codes.

File names, symlink targets and tag messages are chosen by whoever publishes; a reader
running ``ls`` or ``tags`` must see them as they are, with control characters escaped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ESC, BEL, RLO = "\x1b", "\x07", "\u202e"
MARKUP = "[red]alarm"  # names cannot hold "/", targets and messages can
BROKEN_MARKUP = "[/oops]"
COLOUR = f"{ESC}[31mred{ESC}[0m"
TITLE = f"{ESC}]0;pwned{BEL}"


@pytest.fixture
def hostile(cli, repo, tmp_path: Path) -> str:
    src = tmp_path / "src"
    src.mkdir()
    (src / "plain").write_text("x")
    assert cli("publish", src, "--repo", repo, "--path", "/h", "--tag", "t0").code == 0
    for name in (MARKUP, COLOUR, "new\nline", f"txt.{RLO}exe"):
        (src / name).write_text("x")
    (src / "link").symlink_to(f"{BROKEN_MARKUP}{TITLE}")
    result = cli("publish", src, "--repo", repo, "--path", "/h", "--tag", "t1",
                 "-m", f"{BROKEN_MARKUP} {TITLE} [red]{MARKUP}[/red]")
    assert result.code == 0, result.err
    return repo


def assert_literal(text: str) -> None:
    assert ESC not in text and BEL not in text and RLO not in text
    assert "\\x1b" in text


@pytest.mark.parametrize("args", [("ls", "/h"), ("ls", "-R", "/"), ("tags",),
                                  ("diff", "t0", "t1")])
def test_listing_prints_names_literally(cli, hostile: str, args: tuple[str, ...]) -> None:
    result = cli(*args, "--repo", hostile)
    assert result.code == 0, result.err
    if args[0] != "diff":  # the symlink target, or the tag message
        assert BROKEN_MARKUP in result.out
    if args[0] != "tags":
        assert MARKUP in result.out
        assert "new\\nline" in result.out and "new\nline" not in result.out
        assert "\\u202e" in result.out
    assert_literal(result.out)


def test_errors_quote_paths_literally(cli, hostile: str) -> None:
    result = cli("cat", f"/h/{COLOUR}-missing", "--repo", hostile)
    assert result.code != 0
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert_literal(result.err)


def test_json_stays_exact(cli, hostile: str) -> None:
    result = cli("ls", "/h", "--repo", hostile, "--json")
    assert result.code == 0
    assert "\\u001b[31mred" in result.out and ESC not in result.out
