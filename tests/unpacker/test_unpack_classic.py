"""The unpacker publishes through any Publisher: a classic cvmfs_server repository too.

The same image unpacked into a native repository and into a repository of the
``cvmfs_server`` stand-in gives the same tag link and the same flat tree; a re-run
changes nothing, and ``unpack-gc`` works the same way.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from publishers import FakeServer, make_classic, tree_of

from unpacker.runs import run_gc, run_unpack

NAME = "unpacked.example.org"


@pytest.fixture
def classic(tmp_path: Path, fake_server: FakeServer):
    fake = fake_server
    yield make_classic(tmp_path / "classic", NAME, fake), fake
    assert fake.violations() == []
    assert not fake.in_transaction(NAME)


def test_unpack_into_cvmfs_server_equals_native(images, make_repo, classic) -> None:
    publisher, fake = classic
    native = make_repo(NAME)
    ref = images.refs["oci"]
    for target in (native, publisher):
        report = run_unpack(target, None, [ref])
        assert report.ok, [o.detail for o in report.failed]
        assert [o.status for o in report.outcomes] == ["unpacked"]
    with publisher.view() as view:
        link = view.lookup(f"/{ref}")
    assert link is not None and link.is_symlink and ".flat/" in link.target
    flat = "/" + link.target.split("../")[-1]
    def without_links(tree: dict[str, tuple]) -> dict[str, tuple]:
        return {path: row[:-1] for path, row in tree.items()}  # cvmfs_server splits them

    ours = tree_of(publisher, flat)
    assert without_links(ours) == without_links(tree_of(native, flat))
    assert len(ours) >= 38
    transactions = fake.subcommands().count("transaction")
    assert [o.status for o in run_unpack(publisher, None, [ref]).outcomes] == ["unchanged"]
    assert fake.subcommands().count("transaction") == transactions


def test_unpack_gc_on_cvmfs_server(images, classic, tmp_path: Path) -> None:
    publisher, _ = classic
    wishlist = tmp_path / "wishlist.yaml"
    wishlist.write_text(f"version: 1\ncvmfs_repo: {NAME}\ninput:\n"
                        f"  - {images.refs['oci']}\n")
    assert run_unpack(publisher, wishlist, []).ok
    wishlist.write_text(f"version: 1\ncvmfs_repo: {NAME}\ninput: []\n")
    assert run_unpack(publisher, wishlist, []).ok  # marks the image unwished
    report = run_gc(publisher, dt.timedelta(0), dry_run=False,
                    now=dt.datetime.now(dt.UTC).timestamp() + 10)
    assert report.removed_images == [images.refs["oci"]]
    with publisher.view() as view:
        assert view.lookup(f"/{images.refs['oci']}") is None
        assert [n.name for n in view.listdir("/.flat")] == [".cvmfscatalog"]
