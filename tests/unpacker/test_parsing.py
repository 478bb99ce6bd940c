"""References, wishlists and platforms: the inputs users type."""

from __future__ import annotations

import datetime as dt

import pytest

from cvmfs_publisher.values import parse_duration
from unpacker.errors import InvalidReference, ManifestError, WishlistError
from unpacker.manifests import Platform, parse_platform
from unpacker.reference import parse_reference
from unpacker.runs import parse_platforms
from unpacker.wishlist import parse_wishlist


@pytest.mark.parametrize("text, name, reference", [
    ("https://registry.hub.docker.com/library/fedora:latest",
     "registry.hub.docker.com/library/fedora:latest", "latest"),
    ("gitlab-registry.cern.ch/a/b-c/d_e", "gitlab-registry.cern.ch/a/b-c/d_e:latest", "latest"),
    ("127.0.0.1:5000/test/img:1.0", "127.0.0.1:5000/test/img:1.0", "1.0"),
    ("x.org/t@sha256:" + "a" * 64, "x.org/t:sha256:" + "a" * 64, "sha256:" + "a" * 64),
    ("x.org/t:1.0@sha256:" + "b" * 64, "x.org/t:1.0", "sha256:" + "b" * 64),
])
def test_references(text, name, reference):
    ref = parse_reference(text)
    assert ref.name == name and ref.reference == reference


@pytest.mark.parametrize("text", [
    "fedora", "x.org/../etc", "x.org/a/../b", "x.org/UPPER", "x.org/a:b:c", "ftp://x.org/a",
    "x.org/a@sha256:12", "x.org/a@b@c", "x.org//a", "x.org/a:/b", "x.org/a:..", "x.org/a:*@sha256:"
    + "c" * 64, "x.org/a\0b",
])
def test_bad_references(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_tag_globs_are_globs():
    wish = parse_reference("x.org/g/analysis:21.2.*")
    assert wish.is_pattern
    assert wish.covers("x.org/g/analysis:21.2.1")
    assert not wish.covers("x.org/g/analysis:2102.1")  # the dot is literal
    assert not wish.covers("x.org/g/other:21.2.1")
    assert parse_reference("x.org/a:*").covers("x.org/a:anything")


WISHLIST = """\
version: 1
cvmfs_repo: unpacked.example.org/images
user: pusher
output_format: '$(scheme)://registry.example.org/thin/$(image)'
input:
  - 'https://registry.hub.docker.com/library/fedora:latest'
  - 'registry.example.org/group/analysis:21.2.1*'
ignoreErrors:
  - 'https://registry.example.org/flaky/*:*'
"""


def test_wishlist():
    wishlist = parse_wishlist(WISHLIST, "recipe.yaml")
    assert wishlist.cvmfs_repo == "unpacked.example.org" and wishlist.prefix == "images"
    assert [w.name for w in wishlist.inputs] == [
        "registry.hub.docker.com/library/fedora:latest",
        "registry.example.org/group/analysis:21.2.1*"]
    assert wishlist.ignore_errors == ["https://registry.example.org/flaky/*:*"]


@pytest.mark.parametrize("text, line, words", [
    (WISHLIST.replace("version: 1", "version: 2"), 1, "version"),
    (WISHLIST.replace("  - 'registry.example.org/group/analysis:21.2.1*'",
                      "  - 'registry.example.org/Group/x'"), 7, "repository"),
    (WISHLIST + "colour: blue\n", 10, "unknown key"),
    (WISHLIST.replace("cvmfs_repo: unpacked.example.org/images", "cvmfs_repo: not a repo"),
     2, "repository name"),
    (WISHLIST.replace("cvmfs_repo: unpacked.example.org/images",
                      "cvmfs_repo: unpacked.example.org/../x"), 2, "sub-directory"),
    ("version: 1\ncvmfs_repo: a.b\ninput: x.org/a\n", 3, "list"),
    ("version: 1\ncvmfs_repo: a.b\ninput:\n  - [x]\n", 4, "single value"),
    ("version: 1\ncvmfs_repo: a.b\ninput:\n - x.org/a\n  bad: [\n", None, "YAML"),
    ("version: 1\ninput: []\n", None, "cvmfs_repo"),
    ("version: 1\nversion: 1\n", 2, "twice"),
])
def test_wishlist_errors_name_the_line(text, line, words):
    with pytest.raises(WishlistError) as err:
        parse_wishlist(text, "recipe.yaml")
    message = str(err.value)
    assert words in message
    if line is not None:
        assert message.startswith(f"recipe.yaml:{line}:"), message


@pytest.mark.parametrize("text, platform", [
    ("amd64", Platform("linux", "amd64")), ("x86_64", Platform("linux", "amd64")),
    ("aarch64", Platform("linux", "arm64", "v8")), ("linux/arm64/v8", Platform("linux", "arm64",
                                                                              "v8")),
    ("armhf", Platform("linux", "arm", "v7")), ("armel", Platform("linux", "arm", "v6")),
    ("arm:v6", Platform("linux", "arm", "v6")), ("i386", Platform("linux", "386")),
    ("linux/ppc64le", Platform("linux", "ppc64le")),
])
def test_platforms(text, platform):
    assert parse_platform(text) == platform


def test_platform_lists_and_durations():
    assert parse_platforms(None) == [Platform("linux", "amd64")]
    assert parse_platforms(["all"]) is None
    assert parse_platforms(["amd64,arm64"]) == [Platform("linux", "amd64"),
                                                 Platform("linux", "arm64", "v8")]
    with pytest.raises(ManifestError):
        parse_platform("a/b/c/d")
    assert parse_duration("7d") == dt.timedelta(days=7)
    assert parse_duration("12h") == dt.timedelta(hours=12)
    assert parse_duration("3") == dt.timedelta(days=3)
