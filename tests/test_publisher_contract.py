"""The Publisher interface, behaving the same on both backends.

Every test runs against the native engine and against a classic repository served by the
``cvmfs_server`` stand-in. The oracle is the source tree itself (what a client must see
after the publish), not either backend's output. The classic runs also check that the
stand-in saw no breach of cvmfs_server's contract and that no transaction stayed open.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
from pathlib import Path

import pytest
from publishers import BACKENDS, FakeServer, make_classic, make_native, tree_of

from cvmfs_publisher.cli import Terminated, install_signal_handlers
from cvmfs_publisher.entries import BytesContent, Entry, Kind
from cvmfs_publisher.errors import PathNotFound, TagError, UsageError
from cvmfs_publisher.publisher import Publisher, publish
from cvmfs_publisher.sources import open_source

NAME = "sw.example.org"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, fake_server: FakeServer):
    """(publisher, fake-or-None); after the test: no contract breach, no open transaction."""
    if request.param == "native":
        yield make_native(tmp_path, NAME), None
        return
    yield make_classic(tmp_path, NAME, fake_server), fake_server
    assert fake_server.violations() == []
    assert not fake_server.in_transaction(NAME)


def source_tree(root: Path) -> Path:
    """Files with odd modes and fixed mtimes, a symlink, an empty dir, a hard-link pair."""
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "empty").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho tool\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "suid").write_text("s")
    (root / "bin" / "suid").chmod(0o4711)
    (root / "lib" / "data").write_bytes(os.urandom(5000))
    (root / "lib" / "data").chmod(0o600)
    os.link(root / "lib" / "data", root / "lib" / "data-link")
    (root / "lib" / "empty-file").write_bytes(b"")
    (root / "current").symlink_to("lib/data")
    for n, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n), follow_symlinks=False)
    os.utime(root, (1_699_000_000, 1_699_000_000))
    return root


EMPTY = hashlib.sha256(b"").hexdigest()


def expected(root: Path, release: bool = True, links: bool = True) -> dict[str, tuple]:
    """The client's view of a source tree, in ``tree_of``'s terms.

    ``release``: published at /sw/<pkg>/<version>, which gets a nested catalog marker.
    ``links``: hard links are kept (cvmfs_server on overlayfs breaks them up, and says so).
    """
    result = {}
    if release:
        result["/.cvmfscatalog"] = ("file", "0o644", os.geteuid(), os.getegid(),
                                    int(root.stat().st_mtime), EMPTY, 1)
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = "/" + str(path.relative_to(root)) if path != root else "/"
        if path.is_symlink():
            kind, what = "symlink", os.readlink(path)
        elif path.is_dir():
            kind, what = "dir", ""
        else:
            kind, what = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        nlink = (st.st_nlink if links else 1) if kind == "file" else 0
        result[rel] = (kind, oct(st.st_mode & 0o7777), st.st_uid, st.st_gid,
                       int(st.st_mtime), what, nlink)
    return result


def publish_dir(publisher: Publisher, src: Path, path: str, **kwargs) -> int:
    entries, _ = open_source(src)
    return publish(publisher, [(path, entries)], **kwargs).revision


def revision(publisher: Publisher) -> int:
    """The current revision (0 for a native repository before its first publish)."""
    return next((t.revision for t in publisher.tags() if t.name == "trunk"), 0)


def test_published_tree_is_the_source(backend, tmp_path: Path) -> None:
    publisher, fake = backend
    src = source_tree(tmp_path / "src")
    entries, _ = open_source(src)
    result = publish(publisher, [("/sw/pkg/1.0", entries)], tag="pkg-1.0", message="first")
    assert tree_of(publisher, "/sw/pkg/1.0") == expected(src, links=fake is None)
    if fake is not None:  # what cvmfs_server could not keep is reported, not hidden
        assert len(result.warnings) == 2
        assert all("We will break up these hardlinks" in w for w in result.warnings)
    names = {t.name: t for t in publisher.tags()}
    assert names["pkg-1.0"].revision == names["trunk"].revision
    assert names["pkg-1.0"].description == "first"


def test_republish_replaces_only_its_path(backend, tmp_path: Path) -> None:
    publisher, _ = backend
    first = source_tree(tmp_path / "one")
    publish_dir(publisher, first, "/sw/a/1")
    publish_dir(publisher, first, "/sw/b/1")
    second = tmp_path / "two"
    (second / "only").mkdir(parents=True)
    (second / "only" / "new.txt").write_text("new\n")
    publish_dir(publisher, second, "/sw/a/1")
    assert tree_of(publisher, "/sw/a/1") == expected(second)
    assert tree_of(publisher, "/sw/b/1") == expected(first, links=backend[1] is None)


def test_remove_and_missing_path(backend, tmp_path: Path) -> None:
    publisher, _ = backend
    publish_dir(publisher, source_tree(tmp_path / "src"), "/sw/pkg/1.0")
    before = revision(publisher)
    with pytest.raises(PathNotFound):
        publish(publisher, [("/sw/nothing", None)])
    assert revision(publisher) == before
    publish(publisher, [("/sw/pkg/1.0/lib", None)])
    tree = tree_of(publisher, "/sw/pkg/1.0")
    assert "/lib" not in tree and "/bin/tool" in tree
    assert revision(publisher) == before + 1


def test_tags_add_remove_and_refusals(backend, tmp_path: Path) -> None:
    publisher, _ = backend
    src = source_tree(tmp_path / "src")
    first = publish_dir(publisher, src, "/sw/pkg/1.0", tag="v1")
    publish_dir(publisher, src, "/sw/pkg/2.0", tag="v2")
    with publisher.session() as session:
        added = session.add_tag("stable", "v1", "known good")
        session.commit()
    assert added.revision == first
    tags = {t.name: t for t in publisher.tags()}
    assert (tags["stable"].revision, tags["stable"].description) == (first, "known good")
    with publisher.session() as session:
        session.remove_tag("v2")
        session.commit()
    assert "v2" not in {t.name for t in publisher.tags()}
    with publisher.session() as session:
        for refused in (lambda: session.add_tag("trunk"), lambda: session.add_tag("v1"),
                        lambda: session.remove_tag("trunk-previous"),
                        lambda: session.remove_tag("absent")):
            with pytest.raises(TagError):
                refused()
        with pytest.raises(UsageError):
            session.commit()


def test_rollback_restores_content_as_a_new_revision(backend, tmp_path: Path) -> None:
    publisher, _ = backend
    one = source_tree(tmp_path / "one")
    two = tmp_path / "two"
    two.mkdir()
    (two / "v2.txt").write_text("2\n")
    publish_dir(publisher, one, "/opt/pkg", tag="v1")
    latest = publish_dir(publisher, two, "/opt/pkg", tag="v2")
    with publisher.session() as session:
        session.rollback("v1")
        session.replace("/x", iter([Entry("", Kind.DIR)]))
        with pytest.raises(UsageError):  # a rollback is a revision of its own
            session.commit()
    with publisher.session() as session:
        target = session.rollback("v1")
        result = session.commit("back-to-v1", "rollback")
    assert result.revision == latest + 1
    assert tree_of(publisher, "/opt/pkg") == expected(one, release=False,
                                                      links=backend[1] is None)
    assert {t.name: t.revision for t in publisher.tags()}["back-to-v1"] == result.revision
    assert target.name == "v1"


def test_exception_in_session_publishes_nothing(backend, tmp_path: Path) -> None:
    publisher, fake = backend
    src = source_tree(tmp_path / "src")
    publish_dir(publisher, src, "/sw/pkg/1.0")
    before, tree = revision(publisher), tree_of(publisher)
    with pytest.raises(RuntimeError), publisher.session() as session:
        session.replace("/sw/pkg/2.0", open_source(src)[0])
        session.remove("/sw/pkg/1.0")
        raise RuntimeError("the producer failed")
    assert (revision(publisher), tree_of(publisher)) == (before, tree)
    if fake is not None:
        assert fake.subcommands().count("transaction") == 1  # the first publish only


def test_signal_in_session_publishes_nothing(backend, tmp_path: Path) -> None:
    publisher, _ = backend
    before, tree = revision(publisher), tree_of(publisher)
    previous = install_signal_handlers()
    try:
        with pytest.raises(Terminated), publisher.session() as session:
            session.replace("/sw/x", open_source(source_tree(tmp_path / "src"))[0])
            signal.raise_signal(signal.SIGTERM)
            session.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]
    assert (revision(publisher), tree_of(publisher)) == (before, tree)


def test_failing_stream_stages_nothing(backend, tmp_path: Path) -> None:
    publisher, _ = backend

    def stream():
        yield Entry("", Kind.DIR, 0o755)
        yield Entry("a.txt", Kind.FILE, content=BytesContent(b"a"), size=1)
        raise OSError("disk went away")

    with publisher.session() as session:
        with pytest.raises(OSError):
            session.replace("/sw/broken", stream())
        session.replace("/sw/ok", iter([Entry("", Kind.DIR, 0o755, mtime=5)]))
        session.commit()
    tree = tree_of(publisher, "/sw")
    assert "/ok" in tree and "/broken" not in tree


def test_view_shows_the_published_revision_only(backend) -> None:
    publisher, _ = backend
    with publisher.session() as session:
        session.replace("/sw/new", iter([Entry("", Kind.DIR, 0o755)]))
        assert session.view().lookup("/sw/new") is None
        session.commit()
    with publisher.view() as view:
        found = view.lookup("/sw/new")
    assert found is not None and found.is_directory


def test_stored_content_is_shared_by_several_paths(backend) -> None:
    publisher, _ = backend
    data = os.urandom(70_000)
    with publisher.session() as session:
        stored = session.store(io.BytesIO(data), len(data))
        for path in ("/a/blob", "/b/blob"):
            session.replace(path, iter([Entry("", Kind.FILE, 0o644, mtime=7, size=len(data),
                                              stored=stored)]))
        session.commit()
    with publisher.view() as view:
        for path in ("/a/blob", "/b/blob"):
            assert b"".join(view.read(path)) == data


def test_hostile_stream_is_refused_by_both(backend) -> None:
    publisher, _ = backend
    before = revision(publisher)
    streams = [
        [Entry("", Kind.DIR), Entry("h", Kind.HARDLINK, target="missing")],
        [Entry("", Kind.DIR), Entry("f", Kind.FILE, content=BytesContent(b"")),
         Entry("f/below", Kind.FILE, content=BytesContent(b""))],
        [Entry("", Kind.HARDLINK, target="x")],
    ]
    for stream in streams:
        with pytest.raises(UsageError), publisher.session() as session:
            session.replace("/sw/evil", iter(stream))
            session.commit()
    assert revision(publisher) == before


def test_a_thousand_levels_deep(backend, tmp_path: Path) -> None:
    """Neither backend recurses per directory level (nor does the stand-in)."""
    publisher, fake = backend
    try:
        _publish_and_remove_deep(publisher, tmp_path)
    finally:  # pytest's own clean-up of old temp directories recurses per level
        subprocess.run(["rm", "-rf", str(tmp_path / "deep"),
                        *([str(fake.home / "revisions")] if fake else [])], check=True)


def _publish_and_remove_deep(publisher: Publisher, tmp_path: Path) -> None:
    deepest = tmp_path / "deep"
    deepest.mkdir()
    for _ in range(1000):  # Path.mkdir(parents=True) itself recurses per level
        deepest = deepest / "d"
        deepest.mkdir()
    (deepest / "leaf").write_text("bottom\n")
    publish_dir(publisher, tmp_path / "deep", "/deep")
    with publisher.view() as view:
        leaf = "/deep/" + "d/" * 1000 + "leaf"
        assert b"".join(view.read(leaf)) == b"bottom\n"
    publish(publisher, [("/deep", None)])
    with publisher.view() as view:
        assert view.lookup("/deep") is None
