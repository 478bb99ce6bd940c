"""Our writer reproduces what upstream ``cvmfs_server`` 2.12 wrote, row for row.

The fixture's tree is read with our reader and published with our writer into a fresh
repository (same key set). Then every column of every catalog row, the chunk rows, the
nested catalog references, all 24 statistics counters, the properties and the schemas
(catalog, history, reflog) are compared with the fixture's current revision. The only
differences allowed are the ones listed where they are excluded, each with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixturedata import FIXTURE_VALID_AT
from tamper import FQRN, key_file

from cvmfs_publisher.config import Config, RepositoryConfig, default_config_path
from cvmfs_publisher.cvmfs import sqlitedb
from cvmfs_publisher.cvmfs.catalog import Catalog
from cvmfs_publisher.cvmfs.counters import NAMES as COUNTER_NAMES
from cvmfs_publisher.cvmfs.hashes import ContentHash, Suffix, path_key
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.reader import RepositoryReader
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.engine.views import client_view, repository_entries
from cvmfs_publisher.entries import Kind, Owner
from cvmfs_publisher.storage.local import LocalStorage

MOUNTPOINTS = ("", "/nested", "/sw/pkg/1.0")
PKG = "/sw/pkg/1.0"
# What the fixture's current revision holds, so no loop below can pass by being empty:
# catalog rows (34 + 5 + 7 = the 46 entries verify counts), chunk rows (the 20 MB file's
# two chunks) and nested catalog references, per catalog.
CATALOG_ROWS = {"": 34, "/nested": 5, PKG: 7}
CHUNK_ROWS = {"": 0, "/nested": 2, PKG: 0}
NESTED = {"": ["/nested", PKG], "/nested": [], PKG: []}
# Properties whose values legitimately differ: ``last_modified`` is the time of the
# publish; ``revision`` counts the publishes of that catalog (upstream needed five to
# build the fixture, we need one); ``previous_revision`` names the catalog this one
# succeeds, i.e. an object of a different history. All three keys must still exist.
VOLATILE_PROPERTIES = ("last_modified", "revision", "previous_revision")


@dataclass
class Published:
    fixture: Path  # writable copy of the upstream repository (storage/, keys/)
    stratum0: Path  # our repository lives in stratum0/ref.local.repo
    keys: Path
    cache: Path

    @property
    def storage(self) -> Path:
        return self.stratum0 / FQRN

    def ours(self, cache: Path | None = None) -> NativeRepository:
        return NativeRepository(LocalStorage(self.storage), FQRN, keys_dir=self.keys,
                                options=options(cache or self.cache / "ours"))

    def upstream(self) -> NativeRepository:
        return NativeRepository(LocalStorage(self.fixture / "storage", read_only=True), FQRN,
                                public_keys=[key_file(self.fixture, "pub")],
                                options=options(self.cache / "upstream"))


def options(cache: Path) -> EngineOptions:
    # The fixture was published by root: its root entry belongs to 0:0. Our root entry is
    # made at init with the default owner, so pin it instead of depending on who runs this.
    # The zlib preset makes upstream's bytes, so object names can be compared.
    return EngineOptions(cache_dir=cache, default_owner=Owner(0, 0), compression="zlib")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Published:
    """The fixture's tree, extracted with our reader and published with our writer."""
    base = tmp_path_factory.mktemp("write")
    fixture = base / "fixture"
    shutil.copytree(fixture_dir, fixture)
    for path in fixture.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    keys = base / "keys"
    shutil.copytree(fixture / "keys", keys)
    for private in keys.glob("*key"):  # the fixture's are 0444: private keys must be 0600
        private.chmod(0o600)
    result = Published(fixture, base / "stratum0", keys, base / "cache")
    reader = result.upstream().reader(FIXTURE_VALID_AT)
    ours = result.ours()
    try:
        ours.create()
        with ours.transaction() as txn:
            txn.replace("/", repository_entries(reader))
            commit = txn.commit()
    finally:
        reader.close()
    assert commit.revision == 1
    assert commit.catalogs_written == ["/", "/nested", "/sw/pkg/1.0"]
    return result


@pytest.fixture(scope="module")
def readers(published: Published) -> Iterator[tuple[RepositoryReader, RepositoryReader]]:
    """(upstream, ours) readers; ours is verified as of now (its whitelist is fresh)."""
    upstream = published.upstream().reader(FIXTURE_VALID_AT)
    ours = published.ours().reader()
    yield upstream, ours
    upstream.close()
    ours.close()


def catalogs(reader: RepositoryReader) -> dict[str, Catalog]:
    """Every catalog of the current revision by mountpoint."""
    found, todo = {}, [reader.root_catalog()]
    while todo:
        catalog = todo.pop()
        found[catalog.mountpoint] = catalog
        todo.extend(reader.catalog(ref.content_hash) for ref in catalog.nested())
    return found


def column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    return [name for name, _, _ in sqlitedb.table_columns(conn, table)]


def rows_by_key(catalog: Catalog) -> dict[tuple[int, int], dict[str, object]]:
    columns = column_names(catalog.conn, "catalog")
    result = {}
    for row in catalog.conn.execute(f"SELECT {', '.join(columns)} FROM catalog"):
        item = dict(zip(columns, row, strict=True))
        result[(item["md5path_1"], item["md5path_2"])] = item
    return result


def schema(conn: sqlite3.Connection) -> dict[str, dict]:
    """Tables as (column, declared type, pk position), their indexes and foreign keys."""
    tables = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    result = {}
    for table in tables:
        indexes = []
        for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            columns = [info[2] for info in conn.execute(f"PRAGMA index_info({name})")]
            indexes.append((name, unique, origin, partial, columns))
        foreign = [row[2:5] for row in conn.execute(f"PRAGMA foreign_key_list({table})")]
        result[table] = {"columns": sqlitedb.table_columns(conn, table),
                         "indexes": sorted(indexes), "foreign_keys": sorted(foreign)}
    return result


def header(file: Path) -> bytes:
    """SQLite header fields that matter to the client: page size and journal mode."""
    data = file.read_bytes()[:100]
    return data[16:20]  # page size (2 bytes), write/read version (1 = rollback journal)


# -- catalogs, row for row ------------------------------------------------------------------------


def test_same_catalogs(readers) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = readers
    assert sorted(catalogs(upstream)) == sorted(catalogs(ours)) == sorted(MOUNTPOINTS)


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_every_column_of_every_catalog_row(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (catalogs(r)[mountpoint] for r in readers)
    want, got = rows_by_key(upstream), rows_by_key(ours)
    assert column_names(ours.conn, "catalog") == column_names(upstream.conn, "catalog")
    assert len(want) == CATALOG_ROWS[mountpoint]
    assert sorted(got) == sorted(want)
    if mountpoint == "":
        # The root entry's mtime is set when the repository is created (upstream: at mkfs,
        # 1795540553, and never touched by the four publishes after it); ours was created
        # just now. It is a creation timestamp, not content, so it is the one exclusion.
        root = path_key("")
        assert isinstance(got[root].pop("mtime"), int)
        want[root].pop("mtime")
    # ``hash`` BLOBs name the zlib-compressed objects: they match because Python's zlib
    # (1.2.13 here) deflates level 6 exactly like the zlib cvmfs_server used. A deflate
    # that differs (zlib-ng, a future zlib) would change every file hash, not the format.
    for key, row in want.items():
        assert got[key] == row, f"row {row['name']!r} differs"


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_chunk_rows(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    """Same cut points as upstream's Xor32 chunker, same compressed chunk objects."""
    upstream, ours = (catalogs(r)[mountpoint] for r in readers)
    query = "SELECT * FROM chunks ORDER BY md5path_1, md5path_2, offset"
    want = upstream.conn.execute(query).fetchall()
    assert len(want) == CHUNK_ROWS[mountpoint]
    assert ours.conn.execute(query).fetchall() == want
    assert column_names(ours.conn, "chunks") == column_names(upstream.conn, "chunks")
    if mountpoint == "/nested":
        assert [(offset, size) for _, _, offset, size, _ in want] == [
            (0, 13228572), (13228572, 6771428)]


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_nested_catalog_rows(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    upstream_reader, our_reader = readers
    upstream, ours = catalogs(upstream_reader)[mountpoint], catalogs(our_reader)[mountpoint]
    query = "SELECT path, sha1, size FROM nested_catalogs ORDER BY path"
    want, got = upstream.conn.execute(query).fetchall(), ours.conn.execute(query).fetchall()
    # Path and (uncompressed) size agree. The hash differs legitimately: a catalog's bytes
    # include its properties (last_modified, revision, previous_revision) and, for the root
    # catalog, the root entry's mtime, so the same content gets a different object name.
    assert [p for p, _, _ in want] == NESTED[mountpoint]
    assert [(p, s) for p, _, s in got] == [(p, s) for p, _, s in want]
    for path, sha1, size in got:
        child = catalogs(our_reader)[path]
        assert child.file.stat().st_size == size
        assert our_reader.storage.exists(ContentHash.parse(sha1).object_key(Suffix.CATALOG))
    assert upstream.conn.execute("SELECT count(*) FROM bind_mountpoints").fetchone() == (0,)
    assert ours.conn.execute("SELECT count(*) FROM bind_mountpoints").fetchone() == (0,)


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_all_24_statistics_counters(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (catalogs(r)[mountpoint] for r in readers)
    query = "SELECT counter, value FROM statistics"
    want = dict(upstream.conn.execute(query).fetchall())
    assert len(COUNTER_NAMES) == 24
    assert sorted(want) == sorted(COUNTER_NAMES)
    assert dict(ours.conn.execute(query).fetchall()) == want


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_catalog_properties(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (catalogs(r)[mountpoint] for r in readers)
    want, got = dict(upstream.properties), dict(ours.properties)
    assert sorted(got) == sorted(want)
    for key in VOLATILE_PROPERTIES:
        want.pop(key), got.pop(key)
    assert got == want
    if mountpoint:
        # A brand-new nested catalog succeeds nothing: all zeros, in both.
        assert ours.properties["previous_revision"] == "0" * 40
        assert upstream.properties["previous_revision"] == "0" * 40


@pytest.mark.parametrize("mountpoint", MOUNTPOINTS)
def test_catalog_schema(readers, mountpoint: str) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (catalogs(r)[mountpoint] for r in readers)
    assert schema(ours.conn) == schema(upstream.conn)
    assert header(ours.file) == header(upstream.file)  # 4096-byte pages, not WAL


def test_history_schema_and_properties(readers) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (r.history() for r in readers)
    assert upstream is not None and ours is not None
    try:
        assert schema(ours.conn) == schema(upstream.conn)
        assert header(ours.file) == header(upstream.file)
        want, got = dict(upstream.properties), dict(ours.properties)
        assert sorted(got) == sorted(want)
        # previous_revision: the history object this one succeeds (ours has none: zeros).
        want.pop("previous_revision"), got.pop("previous_revision")
        assert got == want
        assert ours.branches() == upstream.branches() == [("", None, 0)]
    finally:
        upstream.conn.close()
        ours.conn.close()


def test_reflog_schema_and_properties(published: Published, tmp_path: Path) -> None:
    files = {}
    for name, storage in (("upstream", published.fixture / "storage"),
                          ("ours", published.storage)):
        files[name] = tmp_path / f"{name}.db"
        shutil.copyfile(storage / ".cvmfsreflog", files[name])
    conns = {name: sqlite3.connect(file) for name, file in files.items()}
    try:
        assert schema(conns["ours"]) == schema(conns["upstream"])
        assert header(files["ours"]) == header(files["upstream"])
        props = {name: sqlitedb.get_properties(conn) for name, conn in conns.items()}
        assert props["ours"] == props["upstream"] == {
            "schema": "1.0", "schema_revision": "0", "fqrn": FQRN}
    finally:
        for conn in conns.values():
            conn.close()


def test_manifest_fields(readers) -> None:  # type: ignore[no-untyped-def]
    upstream, ours = (r.manifest for r in readers)
    # Same key set and certificate PEM, compressed alike: the X object is upstream's.
    assert ours.certificate == upstream.certificate
    assert (ours.catalog_size, ours.ttl, ours.fqrn, ours.root_path_hash,
            ours.garbage_collectable, ours.alt_catalog_path) == (
        upstream.catalog_size, upstream.ttl, upstream.fqrn, upstream.root_path_hash,
        upstream.garbage_collectable, upstream.alt_catalog_path)
    assert ours.revision == 1  # upstream is at 5: four publishes and an ingest


# -- what a client sees ---------------------------------------------------------------------------


def test_client_view_of_our_copy_equals_upstream_client(readers, fixture_dir: Path) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads((fixture_dir / "client-view.json").read_text(encoding="utf-8"))
    _, ours = readers
    # No exclusions: the root entry (the only differing timestamp) is not in the view.
    assert list(client_view(ours)) == expected


def test_our_copy_verifies(published: Published, cli) -> None:
    result = cli("verify", "--repo", published.storage, "--key", published.keys / f"{FQRN}.pub",
                 "--fqrn", FQRN)
    assert result.code == 0, result.out
    assert result.out.startswith("OK: ref.local.repo revision 1: 3 catalogs, 46 entries")


# -- a second publish below a nested catalog ------------------------------------------------------


def materialize(reader: RepositoryReader, top: str, target: Path) -> None:
    """Write a repository subtree to disk with modes and mtimes (directories last)."""
    directories = []
    for entry in repository_entries(reader, top):
        path = target / entry.path if entry.path else target
        if entry.kind is Kind.DIR:
            path.mkdir(exist_ok=True)
            directories.append((path, entry))
            continue
        if entry.kind is Kind.SYMLINK:
            path.symlink_to(entry.target)
            os.utime(path, (entry.mtime, entry.mtime), follow_symlinks=False)
            continue
        assert entry.kind is Kind.FILE and entry.content is not None
        with entry.content.open() as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.chmod(entry.mode)
        os.utime(path, (entry.mtime, entry.mtime))
    for path, entry in reversed(directories):
        path.chmod(entry.mode)
        os.utime(path, (entry.mtime, entry.mtime))


def snapshot(reader: RepositoryReader) -> dict[str, dict]:
    cats = catalogs(reader)
    return {
        "rows": {m: rows_by_key(c) for m, c in cats.items()},
        "nested": {m: c.conn.execute("SELECT path, sha1, size FROM nested_catalogs "
                                     "ORDER BY path").fetchall() for m, c in cats.items()},
        "stats": {m: dict(c.conn.execute("SELECT counter, value FROM statistics"))
                  for m, c in cats.items()},
        "props": {m: dict(c.properties) for m, c in cats.items()},
    }


def test_second_publish_changes_only_the_replaced_subtree(published: Published,
                                                          tmp_path: Path, cli) -> None:
    stratum0 = tmp_path / "stratum0"
    shutil.copytree(published.stratum0, stratum0)
    config = Config(default_config_path(), {FQRN: RepositoryConfig(
        FQRN, str(stratum0), published.keys, {"owner": "0:0"})})
    config.save()
    storage = stratum0 / FQRN

    def repo() -> NativeRepository:
        return NativeRepository(LocalStorage(storage), FQRN, keys_dir=published.keys,
                                options=options(tmp_path / "cache"))

    reader = repo().reader()
    before = snapshot(reader)  # 46 entries
    old_pkg_hash = dict((p, h) for p, h, _ in before["nested"][""])[PKG]
    source = tmp_path / "pkg"
    source.mkdir()
    materialize(reader, PKG, source)
    reader.close()
    # The modification: new content, a new executable, a new directory with a file.
    data = source / "lib" / "data.txt"
    data.chmod(0o644)
    data.write_bytes(data.read_bytes() + b"one more line\n")
    os.utime(data, (1795600000, 1795600000))
    tool = source / "bin" / "new-tool"
    tool.write_bytes(b"#!/bin/sh\necho new\n")
    tool.chmod(0o755)
    (source / "share" / "doc").mkdir(parents=True)
    (source / "share" / "doc" / "README").write_text("docs\n")
    for path in (tool.parent, source / "share" / "doc", source / "share", source):
        os.utime(path, (1795540729, 1795540729))

    result = cli("publish", source, "--path", PKG, "--repo", FQRN, "--no-progress", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["catalogs_written"] == ["/", PKG]

    verified = cli("verify", "--repo", storage, "--key", published.keys / f"{FQRN}.pub",
                   "--fqrn", FQRN)
    assert verified.code == 0, verified.out
    assert verified.out.startswith("OK: ref.local.repo revision 2: 3 catalogs, 50 entries")

    reader = repo().reader()
    after = snapshot(reader)
    try:
        mount = path_key(PKG)
        new_pkg_root = rows_by_key(catalogs(reader)[PKG])[mount]
        # Outside the subtree: every row of the root catalog is identical, except the
        # mountpoint row of the replaced catalog, which mirrors the new nested root.
        root_before, root_after = before["rows"][""], after["rows"][""]
        assert len(root_before) == CATALOG_ROWS[""]
        assert sorted(root_after) == sorted(root_before)
        for key, row in root_before.items():
            if key != mount:
                assert root_after[key] == row, row["name"]
        expected_mount = {**new_pkg_root, "flags": 3}
        assert root_after[mount] == expected_mount
        assert root_after[mount]["hardlinks"] == 5  # 2 + bin, lib, share
        assert root_before[mount]["hardlinks"] == 4
        # /nested was not rewritten at all: same object, same rows.
        assert after["nested"][""][0] == before["nested"][""][0]
        assert after["rows"]["/nested"] == before["rows"]["/nested"]
        assert after["stats"]["/nested"] == before["stats"]["/nested"]
        assert after["props"]["/nested"] == before["props"]["/nested"]
        # The root's own counters are unchanged; its subtree grew by what was added.
        stats_before, stats_after = before["stats"][""], after["stats"][""]
        delta = {k: stats_after[k] - stats_before[k] for k in COUNTER_NAMES
                 if stats_after[k] != stats_before[k]}
        assert delta == {"subtree_regular": 2, "subtree_dir": 2,
                         "subtree_file_size": len(b"one more line\n")
                         + len(b"#!/bin/sh\necho new\n") + len(b"docs\n")}
        # The new nested catalog succeeds the old one.
        props = after["props"][PKG]
        assert props["previous_revision"] == str(old_pkg_hash)
        assert (props["revision"], props["root_prefix"]) == ("2", PKG)
        # Inside: the modified tree, as a client sees it.
        view = {i["path"]: i for i in client_view(reader, PKG)}
        assert view["lib/data.txt"]["size"] == 108894 + len(b"one more line\n")
        assert view["bin/new-tool"]["mode"] == "0o755"
        assert view["share/doc/README"]["size"] == 5
        assert view["bin/data-link"]["target"] == "../lib/data.txt"
    finally:
        reader.close()
    tags = json.loads(cli("tags", "--json", "--repo", storage, "--key",
                          published.keys / f"{FQRN}.pub", "--fqrn", FQRN).out)
    assert [(t["name"], t["revision"]) for t in tags if t["name"].startswith("trunk")] == [
        ("trunk-previous", 1), ("trunk", 2)]


def test_materialized_source_is_faithful(published: Published, tmp_path: Path) -> None:
    """Guard for the second-publish test: the on-disk copy holds what the repository holds."""
    reader = published.ours(tmp_path / "cache").reader()
    try:
        materialize(reader, PKG, tmp_path / "pkg")
        walked = list(reader.walk(PKG))
        assert len(walked) == CATALOG_ROWS[PKG]
        for path, entry in walked:
            local = tmp_path / "pkg" / path[len(PKG) + 1:]
            st = local.lstat()
            assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(entry.mode), path
            assert int(st.st_mtime) == entry.mtime, path
    finally:
        reader.close()
