"""Our reader and verifier on the repository upstream ``cvmfs_server`` 2.12 wrote.

``client-view.json`` is what the upstream CVMFS client showed when it mounted the fixture;
our reader must show exactly that (every field of all 43 entries), locally and over HTTP.
Verification uses ``--as-of`` a moment inside the whitelist's validity, or a copy whose
whitelist was re-signed with the included master key, so the tests pass on any date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixturedata import FIXTURE_VALID_AT
from tamper import FQRN, Resigner, key_file, open_repository

from cvmfs_publisher.cli import main
from cvmfs_publisher.cvmfs.manifest import parse_manifest
from cvmfs_publisher.cvmfs.whitelist import parse_whitelist
from cvmfs_publisher.engine.views import client_view
from cvmfs_publisher.http_server import make_server
from cvmfs_publisher.storage.http import HttpStorage
from cvmfs_publisher.storage.local import LocalStorage

AS_OF = FIXTURE_VALID_AT.strftime("%Y-%m-%dT%H:%M")
ROOT_CATALOG = "96ac540074f81c0dfa4e89ccddaded6d766ebcaa"

# The fixture's history (README: auto tags for every revision, pkg-1.0 on 4, links-1 on 5).
TAGS = [
    ("generic-2026-11-24T17:15:53Z", 1, ""),
    ("generic-2026-11-24T17:15:54Z", 2, ""),
    ("generic-2026-11-24T17:16:15Z", 3, ""),
    ("pkg-1.0", 4, "release 1.0 of pkg"),
    ("trunk-previous", 4, "default undo target"),
    ("generic-2026-11-24T17:36:53Z", 5, ""),
    ("links-1", 5, "hard links and special files via ingest"),
    ("trunk", 5, "current HEAD"),
]


@pytest.fixture(scope="module")
def expected(fixture_dir: Path) -> list[dict]:
    view = json.loads((fixture_dir / "client-view.json").read_text(encoding="utf-8"))
    assert len(view) == 43
    return view


def by_path(view: list[dict]) -> dict[str, dict]:
    result = {item["path"]: item for item in view}
    assert len(result) == len(view), "duplicate paths"
    return result


def assert_same_view(actual: list[dict], expected: list[dict]) -> None:
    """Every field of every entry; a per-path diff first so a failure says where."""
    got, want = by_path(actual), by_path(expected)
    assert sorted(got) == sorted(want)
    for path, item in want.items():
        assert got[path] == item, path
    assert actual == expected  # and in the same order (depth first, names sorted)


def read_args(copy: Path, *extra: str) -> list[str | Path]:
    return ["--repo", copy / "storage", "--key", key_file(copy, "pub"), "--fqrn", FQRN,
            *extra]


# -- the client view -----------------------------------------------------------------------------


def test_engine_client_view_matches_upstream_client(fixture_copy: Path, tmp_path: Path,
                                                    expected: list[dict]) -> None:
    repo = open_repository(fixture_copy / "storage", tmp_path / "cache",
                           public_keys=[key_file(fixture_copy, "pub")])
    reader = repo.reader(FIXTURE_VALID_AT)
    try:
        assert_same_view(list(client_view(reader)), expected)
    finally:
        reader.close()


def test_view_covers_every_kind_of_entry(expected: list[dict]) -> None:
    """Guard: the comparison above exercises what the fixture README promises."""
    items = by_path(expected)
    assert {i["type"] for i in expected} == {"dir", "file", "symlink", "fifo", "chardev",
                                             "blockdev"}
    null, loop0 = items["links/special/null"], items["links/special/loop0"]
    assert (null["type"], null["major"], null["minor"]) == ("chardev", 1, 3)
    assert (loop0["type"], loop0["major"], loop0["minor"]) == ("blockdev", 7, 0)
    assert items["nested/rand_20M.bin"]["size"] == 20_000_000
    assert items["a/hello.txt"]["mtime"] == 981173106  # 2001-02-03T04:05:06Z
    assert items["empty_dir"]["nlink"] == 2
    assert "dir with space/Grüße ü.txt" in items


def test_cli_ls_recursive_json_matches_upstream_client(fixture_copy: Path, cli,
                                                       expected: list[dict]) -> None:
    result = cli("ls", "-R", "--json", "--hash", *read_args(fixture_copy, "--as-of", AS_OF))
    assert result.code == 0, result.err
    assert_same_view(json.loads(result.out), expected)


def test_cli_ls_one_directory(fixture_copy: Path, cli, expected: list[dict]) -> None:
    result = cli("ls", "--json", "/links/special", *read_args(fixture_copy, "--as-of", AS_OF))
    assert result.code == 0, result.err
    want = [{**item, "path": item["path"].rsplit("/", 1)[1]} for item in expected
            if item["path"].startswith("links/special/")]
    assert json.loads(result.out) == want
    assert [i["type"] for i in want] == ["fifo", "blockdev", "chardev"]


def test_tags(fixture_copy: Path, cli) -> None:
    result = cli("tags", "--json", *read_args(fixture_copy, "--as-of", AS_OF))
    assert result.code == 0, result.err
    tags = json.loads(result.out)
    assert [(t["name"], t["revision"], t["description"]) for t in tags] == TAGS
    by_name = {t["name"]: t for t in tags}
    assert by_name["trunk"]["hash"] == ROOT_CATALOG
    assert by_name["links-1"]["hash"] == ROOT_CATALOG
    assert by_name["pkg-1.0"]["hash"] == by_name["trunk-previous"]["hash"]
    assert {t["size"] for t in tags} == {57344}


# -- cat: bytes through the CLI ------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "a/hello.txt",
    "a/empty",
    "dir with space/Grüße ü.txt",
    "a/b/compressible_1M.txt",
    "sw/pkg/1.0/lib/data.txt",
    "nested/rand_20M.bin",  # two chunks (P objects)
])
def test_cat(fixture_copy: Path, capsysbinary: pytest.CaptureFixture[bytes],
             expected: list[dict], path: str) -> None:
    capsysbinary.readouterr()
    code = main(["cat", f"/{path}", *map(str, read_args(fixture_copy, "--as-of", AS_OF))])
    out = capsysbinary.readouterr().out
    assert code == 0
    item = by_path(expected)[path]
    assert len(out) == item["size"]
    assert hashlib.sha256(out).hexdigest() == item["sha256"]


def test_cat_of_a_symlink_is_refused(fixture_copy: Path, cli) -> None:
    result = cli("cat", "/a/rel_link", *read_args(fixture_copy, "--as-of", AS_OF))
    assert result.code == 1
    assert "not a regular file" in result.err


# -- verify ------------------------------------------------------------------------------------


def test_verify_as_of_inside_whitelist_validity(fixture_copy: Path, cli) -> None:
    result = cli("verify", *read_args(fixture_copy, "--as-of", AS_OF))
    assert result.code == 0, result.out
    assert result.out.startswith("OK: ref.local.repo revision 5: 3 catalogs, 46 entries, "
                                 "19 objects")


def test_verify_as_of_after_expiry_names_the_whitelist(fixture_copy: Path, cli) -> None:
    result = cli("verify", *read_args(fixture_copy, "--as-of", "2027-01-01"))
    assert result.code == 1
    assert "problem: whitelist expired on 2026-12-24 17:15:53 UTC" in result.out
    assert "FAILED: 1 problem(s)" in result.out
    # and a reader refuses the expired repository too
    result = cli("ls", "/", *read_args(fixture_copy, "--as-of", "2027-01-01"))
    assert result.code == 1
    assert "whitelist expired" in result.err


def test_verify_after_resign_with_the_master_key(fixture_copy: Path, tmp_path: Path,
                                                 fixture_dir: Path, cli) -> None:
    repo = open_repository(fixture_copy / "storage", tmp_path / "cache",
                           keys_dir=fixture_copy / "keys")
    whitelist = repo.resign()
    assert whitelist.expires > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    # Re-signing touches the whitelist only; the manifest stays upstream's, byte for byte.
    manifest = fixture_copy / "storage" / ".cvmfspublished"
    assert manifest.read_bytes() == (fixture_dir / "storage" / ".cvmfspublished").read_bytes()
    result = cli("verify", *read_args(fixture_copy))  # as of now
    assert result.code == 0, result.out
    assert result.out.startswith("OK: ref.local.repo revision 5")


def test_cli_resign_of_an_unconfigured_directory(fixture_copy: Path, cli) -> None:
    result = cli("resign", "--repo", fixture_copy / "storage", "--keys", fixture_copy / "keys",
                 "--fqrn", FQRN, "--days", "7")
    assert result.code == 0, result.err
    whitelist, _ = parse_whitelist((fixture_copy / "storage" / ".cvmfswhitelist").read_bytes())
    assert whitelist.expires - whitelist.created == dt.timedelta(days=7)
    assert [fp.fingerprint() for fp in whitelist.fingerprints] == [
        "CB:83:19:03:42:5D:21:2C:A0:20:A3:7E:49:03:9B:F5:69:3B:3A:92"]
    assert cli("verify", *read_args(fixture_copy)).code == 0


def test_verify_without_as_of_is_strict(fixture_copy: Path, tmp_path: Path, cli) -> None:
    """No --as-of means now (never weakened), whatever day the test runs: the copy's
    whitelist is re-signed with the master key to have expired 10 days ago, then afresh."""
    resigner = Resigner(fixture_copy, tmp_path / "resign")
    now = dt.datetime.now(dt.UTC)
    resigner.sign_whitelist(now=now - dt.timedelta(days=40), days=30)
    whitelist, _ = parse_whitelist((fixture_copy / "storage" / ".cvmfswhitelist").read_bytes())
    assert whitelist.expires < now - dt.timedelta(days=9)
    result = cli("verify", *read_args(fixture_copy))
    assert result.code == 1
    assert f"problem: whitelist expired on {whitelist.expires:%Y-%m-%d %H:%M:%S} UTC" \
        in result.out
    assert "FAILED: 1 problem(s)" in result.out
    # Only the date decided: as of a moment inside that whitelist's window it verifies.
    inside = (whitelist.created + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    result = cli("verify", *read_args(fixture_copy, "--as-of", inside))
    assert result.code == 0, result.out
    resigner.sign_whitelist(now=now)
    result = cli("verify", *read_args(fixture_copy))
    assert result.code == 0, result.out
    assert result.out.startswith("OK: ref.local.repo revision 5")


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def served(fixture_copy: Path) -> Iterator[str]:
    server = make_server({FQRN: LocalStorage(fixture_copy / "storage", read_only=True)},
                         "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cvmfs/{FQRN}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_http_client_view_and_verify(served: str, fixture_copy: Path, tmp_path: Path,
                                     expected: list[dict]) -> None:
    pub = key_file(fixture_copy, "pub")
    remote = open_repository(fixture_copy / "storage", tmp_path / "remote-cache",
                             public_keys=[pub])
    remote.storage = HttpStorage(served)
    reader = remote.reader(FIXTURE_VALID_AT)
    try:
        assert_same_view(list(client_view(reader)), expected)
    finally:
        reader.close()
    local = open_repository(fixture_copy / "storage", tmp_path / "local-cache",
                            public_keys=[pub])
    over_http, on_disk = remote.verify(FIXTURE_VALID_AT), local.verify(FIXTURE_VALID_AT)
    assert over_http.ok, over_http.problems
    assert over_http == on_disk


def test_http_cli(served: str, fixture_copy: Path, cli, expected: list[dict]) -> None:
    pub = key_file(fixture_copy, "pub")
    # The name comes from the URL (/cvmfs/<fqrn>) when --fqrn is not given.
    result = cli("ls", "-R", "--json", "--hash", "--repo", served, "--key", pub,
                 "--as-of", AS_OF)
    assert result.code == 0, result.err
    assert_same_view(json.loads(result.out), expected)
    result = cli("verify", "--json", "--repo", served, "--key", pub, "--as-of", AS_OF)
    local = cli("verify", "--json", *read_args(fixture_copy, "--as-of", AS_OF))
    assert (result.code, local.code) == (0, 0)
    assert json.loads(result.out) == json.loads(local.out)
    result = cli("verify", "--repo", served, "--key", pub, "--as-of", "2027-01-01")
    assert result.code == 1
    assert "whitelist expired" in result.out


def test_reading_does_not_change_the_copy(fixture_copy: Path, fixture_dir: Path, cli) -> None:
    # Both must really read the whole copy, or "unchanged" would prove nothing.
    listed = cli("ls", "-R", "--json", "--hash", *read_args(fixture_copy, "--as-of", AS_OF))
    assert listed.code == 0, listed.err
    assert len(json.loads(listed.out)) == 43
    verified = cli("verify", *read_args(fixture_copy, "--as-of", AS_OF))
    assert verified.code == 0 and verified.out.startswith("OK: ref.local.repo revision 5: "
                                                          "3 catalogs, 46 entries"), verified.out
    before = {p.relative_to(fixture_dir): p.read_bytes()
              for p in (fixture_dir / "storage").rglob("*") if p.is_file()}
    after = {p.relative_to(fixture_copy): p.read_bytes()
             for p in (fixture_copy / "storage").rglob("*") if p.is_file()}
    assert after == before
    manifest, _ = parse_manifest(before[Path("storage/.cvmfspublished")])
    assert str(manifest.root_catalog) == ROOT_CATALOG
