"""A re-publish takes back, whole, every nested catalog whose staged subtree is unchanged.

The content index records, for each nested catalog a publish writes, a print of the staged
subtree it was written from (``catalog_tree.subtree_print``); when a later publish stages a
subtree with the same print where that catalog is mounted, the catalog is mounted again by
hash instead of being rebuilt. The oracle in every test is a second repository that publishes
the same source with an empty cache (nothing taken back): a client must see the same tree,
and ``verify`` (link counts, counters, nested hashes, every object) must pass.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from publishers import engine_repository, publish_source, tree_of

from cvmfs_publisher.backends.native import NativePublisher
from cvmfs_publisher.engine import content_index
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.publisher import CommitResult
from cvmfs_publisher.sources import open_source

NAME = "reuse.example.org"
RELEASES = ("a", "b", "c")
MTIME = 1_700_000_000


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh files count as unchanged at once, so the stat shortcut would skip them."""
    monkeypatch.setattr(content_index, "RACY_SECONDS", 0.0)


def make_src(root: Path) -> Path:
    for release in RELEASES:
        top = root / release
        (top / "bin").mkdir(parents=True)
        (top / ".cvmfscatalog").write_bytes(b"")
        (top / "bin" / "tool").write_text(f"tool of {release}\n")
        (top / "README").write_text(f"release {release}\n")
        (top / "link").symlink_to("bin/tool")
    (root / "top.txt").write_text("top\n")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    return root


def make_repo(base: Path, **options: object) -> NativeRepository:
    return engine_repository(base, NAME, **options)


def nested(repo: NativeRepository) -> dict[str, str]:
    reader = repo.reader()
    try:
        return {ref.path: str(ref.content_hash) for ref in reader.root_catalog().nested()}
    finally:
        reader.close()


def same_as_from_scratch(repo: NativeRepository, src: Path, scratch: Path,
                         **options: object) -> None:
    """The repository shows what one published from ``src`` with no cache shows."""
    oracle = make_repo(scratch, **options)
    publish_source(oracle, src)
    assert seen(repo) == seen(oracle)
    assert repo.verify().problems == []


def seen(repo: NativeRepository) -> dict[str, tuple]:
    """What a client sees below /src; markers an autocatalog split added carry the time
    of the publish that split, so their mtime is left out."""
    tree = tree_of(NativePublisher(repo), "/src")
    split = {path.rsplit("/", 1)[0] for path in tree if path.endswith("/.cvmfsautocatalog")}
    markers = {f"{d}/{m}" for d in split for m in (".cvmfscatalog", ".cvmfsautocatalog")}
    return {path: (*value[:4], *value[5:]) if path in markers else value
            for path, value in tree.items()}


def test_unchanged_republish_keeps_every_nested_catalog(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    first = publish_source(repo, src)
    assert first.catalogs_written == ["/", "/src/a", "/src/b", "/src/c"]
    before = nested(repo)
    again = publish_source(repo, src)
    assert again.catalogs_written == ["/"]
    assert nested(repo) == before
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def rewrite_same_size_and_mtime(top: Path) -> None:
    """New bytes, same size, mtime put back: only the content (and ctime) differ."""
    tool = top / "bin" / "tool"
    tool.write_text(tool.read_text().upper())
    os.utime(tool, (MTIME, MTIME))


def chmod(top: Path) -> None:
    (top / "README").chmod(0o600)


def retarget(top: Path) -> None:
    (top / "link").unlink()
    (top / "link").symlink_to("README")
    os.utime(top, (MTIME, MTIME))


def add_file(top: Path) -> None:
    (top / "bin" / "more").write_text("more\n")


def retime_directory(top: Path) -> None:
    os.utime(top / "bin", (MTIME + 60, MTIME + 60))


@pytest.mark.parametrize("change", [rewrite_same_size_and_mtime, chmod, retarget, add_file,
                                    retime_directory])
def test_a_changed_release_is_written_again(tmp_path: Path,
                                            change: Callable[[Path], None]) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    before = nested(repo)
    change(src / "b")
    result = publish_source(repo, src)
    assert result.catalogs_written == ["/", "/src/b"]
    after = nested(repo)
    assert after["/src/a"] == before["/src/a"] and after["/src/c"] == before["/src/c"]
    assert after["/src/b"] != before["/src/b"]
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def test_hard_links_are_always_written_again(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    os.link(src / "a" / "README", src / "a" / "README.again")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    assert publish_source(repo, src).catalogs_written == ["/", "/src/a"]
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def test_without_the_cache_every_catalog_is_written_again(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    shutil.rmtree(tmp_path / "cache")
    assert publish_source(repo, src).catalogs_written == ["/", "/src/a", "/src/b", "/src/c"]
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def test_a_split_catalog_is_written_again_and_stays_right(tmp_path: Path) -> None:
    """Autocatalogs reshape a catalog after it was placed: no print is kept for it (nor
    for the catalogs above it); the other releases are still taken back."""
    src = make_src(tmp_path / "src")
    for n in range(60):
        lib = src / "c" / "lib" / f"d{n // 10}"
        lib.mkdir(parents=True, exist_ok=True)
        (lib / f"f{n:02d}").write_text(f"{n}\n")
    options = {"autocatalog_max": 40, "autocatalog_min": 5}
    repo = make_repo(tmp_path, **options)
    first = publish_source(repo, src)
    split = [c for c in first.catalogs_written if c.startswith("/src/c/lib/")]
    assert split  # autocatalogs below the release
    again = publish_source(repo, src)
    assert "/src/c" in again.catalogs_written and "/src/a" not in again.catalogs_written
    same_as_from_scratch(repo, src, tmp_path / "oracle", **options)


def test_a_release_published_by_its_own_path_is_taken_back(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    assert publish_source(repo, src / "b", "/src/b").catalogs_written == ["/"]
    same_as_from_scratch(repo, src, tmp_path / "oracle")


# -- subtrees the walk leaves out (``Subtree.skip``) ------------------------------------------

def publish_kept(repo: NativeRepository, src: Path, path: str = "/src",
                 more: tuple[tuple[str, Path], ...] = ()) -> tuple[set[str], CommitResult]:
    """``src`` at ``path``, then each (path, source) of ``more``, in one session: the
    stream paths ("" for its top) staged as kept before the commit, and the commit."""
    with repo.transaction() as txn:
        txn.replace(path, open_source(src)[0])
        tree = txn.ops[0].tree
        assert tree is not None
        kept = {rel for rel, node in tree.walk() if node.kept is not None}
        for other, source in more:
            txn.replace(other, open_source(source)[0])
        return kept, txn.commit()


def test_an_unchanged_release_is_not_even_staged(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    first = publish_source(repo, src)
    before = nested(repo)
    kept, again = publish_kept(repo, src)
    assert kept == set(RELEASES)
    with repo.transaction() as txn:  # the walk left the kept subtrees out
        txn.replace("/src", open_source(src)[0])
        tree = txn.ops[0].tree
        assert tree is not None and tree.find("a").children == {}
        assert tree.find("a/bin") is None and tree.find("top.txt") is not None
    assert again.catalogs_written == ["/"] and nested(repo) == before
    assert (again.files, again.bytes_in) == (first.files, first.bytes_in)
    same_as_from_scratch(repo, src, tmp_path / "oracle")


@pytest.mark.parametrize("change", [rewrite_same_size_and_mtime, chmod, retarget, add_file,
                                    retime_directory])
def test_a_changed_release_is_staged(tmp_path: Path, change: Callable[[Path], None]) -> None:
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    change(src / "b")
    assert publish_kept(repo, src)[0] == {"a", "c"}
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def test_a_second_change_in_the_session_stages_the_kept_releases(tmp_path: Path) -> None:
    """The catalogs were kept for a session of one replace: another one (here into a kept
    release, and a dirtab that changes the rules) makes the commit stage them after all."""
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    extra = tmp_path / "extra.txt"
    extra.write_text("extra\n")
    dirtab = tmp_path / "dirtab"
    dirtab.write_text("/src/*/bin\n")
    kept, result = publish_kept(repo, src, more=(("/src/b/bin/extra.txt", extra),
                                                  ("/.cvmfsdirtab", dirtab)))
    assert kept == set(RELEASES)
    assert "/src/b/bin" in result.catalogs_written
    oracle = make_repo(tmp_path / "oracle")
    with oracle.transaction() as txn:
        txn.replace("/src", open_source(src)[0])
        txn.replace("/src/b/bin/extra.txt", open_source(extra)[0])
        txn.replace("/.cvmfsdirtab", open_source(dirtab)[0])
        txn.commit()
    assert untimed(seen(repo), "/b/bin") == untimed(seen(oracle), "/b/bin")
    assert repo.verify().problems == []


def untimed(tree: dict[str, tuple], path: str) -> dict[str, tuple]:
    """``path`` got a file in its own publish: its mtime is the time of that publish."""
    return {p: (*v[:4], *v[5:]) if p == path else v for p, v in tree.items()}


def test_other_catalog_rules_stage_every_release(tmp_path: Path) -> None:
    src = make_src(tmp_path / "src")
    for marker in src.glob("*/.cvmfscatalog"):
        marker.unlink()
    rules = {"release_catalogs": ["/src/*"]}
    repo = make_repo(tmp_path, **rules)
    assert publish_source(repo, src).catalogs_written == ["/", "/src/a", "/src/b", "/src/c"]
    assert publish_kept(repo, src)[0] == set(RELEASES)
    repo = make_repo(tmp_path, release_catalogs=[])
    assert publish_kept(repo, src)[0] == set()
    assert nested(repo) == {}
    same_as_from_scratch(repo, src, tmp_path / "oracle", release_catalogs=[])


def test_a_release_written_within_the_racy_window_is_staged_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write in the clock tick of the walk's lstat leaves the signature as it was."""
    monkeypatch.setattr(content_index, "RACY_SECONDS", 3600.0)
    src = make_src(tmp_path / "src")
    (src / "b" / "README").write_text("written just now\n")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    assert publish_kept(repo, src)[0] == set()
    monkeypatch.setattr(content_index, "RACY_SECONDS", 0.0)
    publish_source(repo, src)
    assert publish_kept(repo, src)[0] == set(RELEASES)
    same_as_from_scratch(repo, src, tmp_path / "oracle")


def test_catalogs_inside_a_changed_release_are_kept(tmp_path: Path) -> None:
    """A catalog nested in a release is kept when only the release around it changed,
    whether the release is published by its own path or with its parent; not one nested
    two levels below a replaced mountpoint, which the removal drops without a record."""
    src = make_src(tmp_path / "src")
    sub = src / "b" / "bin" / "sub"
    sub.mkdir()
    (sub / "data").write_text("data\n")
    for catalog in (sub.parent, sub):
        (catalog / ".cvmfscatalog").write_bytes(b"")
        os.utime(catalog, (MTIME, MTIME))
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    assert publish_kept(repo, src / "b", "/src/b")[0] == {""}  # the whole release, by its path
    same_as_from_scratch(repo, src, tmp_path / "oracle1")
    chmod(src / "b")
    assert publish_kept(repo, src / "b", "/src/b")[0] == {"bin"}
    same_as_from_scratch(repo, src, tmp_path / "oracle2")
    (src / "b" / "README").chmod(0o644)
    assert publish_kept(repo, src, "/src")[0] == {"a", "b/bin", "c"}
    same_as_from_scratch(repo, src, tmp_path / "oracle3")
    (src / "b" / "bin" / "tool").write_text("a new tool\n")
    assert publish_kept(repo, src / "b", "/src/b")[0] == set()  # bin/sub: dropped unrecorded
    same_as_from_scratch(repo, src, tmp_path / "oracle4")


def index_prints(repo: NativeRepository) -> tuple[set[bytes], set[bytes]]:
    """(prints of the catalogs the index knows, prints its source rows lead to)."""
    file = content_index.ContentIndex.for_storage(repo.options.cache_dir,
                                                  repo.storage.location).file
    with closing(sqlite3.connect(file)) as conn:
        return ({row[0] for row in conn.execute("SELECT print FROM catalog_prints")},
                {row[0] for row in conn.execute("SELECT print FROM source_prints")})


def test_gc_forgets_the_source_rows_of_the_catalogs_it_collects(tmp_path: Path) -> None:
    """A source row is used only with a catalog row of the same print: once gc deletes a
    catalog, its source rows are dead weight and go too, the live ones stay."""
    src = make_src(tmp_path / "src")
    repo = make_repo(tmp_path)
    publish_source(repo, src)
    add_file(src / "b")  # revision 2 writes b's catalog again
    publish_source(repo, src)
    (src / "top.txt").write_text("top, again\n")  # revision 3: revision 1 becomes garbage
    publish_source(repo, src)
    catalogs, sources = index_prints(repo)
    assert len(sources) == 4 and sources <= catalogs  # a, c, and both prints of b
    plan = repo.gc(keep_revisions=1)
    assert any(key.endswith("C") for key in plan.garbage)  # b's first catalog
    catalogs, sources = index_prints(repo)
    assert len(sources) == 3 and sources <= catalogs
    assert publish_kept(repo, src)[0] == set(RELEASES)  # what is left still does its job
