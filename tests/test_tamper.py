"""Semantic tampering with the upstream fixture: one broken rule per case, caught by verify.

Every case starts from a writable copy of the reference repository, breaks exactly one rule
of format spec section 10 (or one byte of one object), and re-signs everything else the way
a publisher would (``tamper.Resigner``): new catalog hashes propagated up through the
parents' ``nested_catalogs`` rows, history and reflog updated, manifest signed with the
repository key, whitelist signed afresh with the master key. So the signature chain is
valid and fresh, and verify (run as of now, no ``--as-of``) must find precisely the
intended problem, and nothing else. The controls prove that the re-signing itself breaks
nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tamper import FQRN, Resigner, flip_byte, key_file, object_path

from cvmfs_publisher.cvmfs.catalog import Catalog
from cvmfs_publisher.cvmfs.hashes import ContentHash, Suffix, path_key
from cvmfs_publisher.cvmfs.key_material import generate_private_key, load_private_key, public_pem
from cvmfs_publisher.cvmfs.reflog import Reflog, RefType

# Objects of the fixture named in the cases (hashes of the stored, compressed bytes).
HELLO_TXT = ContentHash.parse("5798f7f4ca7585d850eea64610a1f73d8f8de7a3")  # /a/hello.txt
FIRST_CHUNK = ContentHash.parse("1d8d456b4f810ef9bdd05033f58ce5f450d3223a")  # rand_20M.bin
PKG_CATALOG = ContentHash.parse("9a2dbb0ecb66a78c690e6531b71fb8d7864544f8")  # /sw/pkg/1.0
OTHER_NAME = "other.local.repo"


def verify(cli, copy: Path, *extra: str | Path, key: Path | None = None,
           fqrn: str = FQRN) -> tuple[int, dict]:
    """``cvmfs-publisher verify --json`` as of now; returns (exit code, report)."""
    result = cli("verify", "--json", "--repo", copy / "storage", "--key",
                 key or key_file(copy, "pub"), "--fqrn", fqrn, *extra)
    return result.code, json.loads(result.out)


def bump(sql: str, *args: object) -> Callable[[Catalog], None]:
    def edit(catalog: Catalog) -> None:
        assert catalog.conn.execute(sql, args).rowcount == 1, sql

    return edit


# -- the cases ---------------------------------------------------------------------------------


def bumped_counter(r: Resigner) -> None:
    r.execute("/nested", "UPDATE statistics SET value = value + 1 "
              "WHERE counter = 'self_regular'")
    r.commit()


def wrong_directory_linkcount(r: Resigner) -> None:
    # /a has one subdirectory (b): 2 + 1 = 3 is right, 4 is not.
    r.execute("", "UPDATE catalog SET hardlinks = 4 WHERE md5path_1 = ? AND md5path_2 = ?",
              path_key("/a"))
    r.commit()


def zero_link_count(r: Resigner) -> None:
    # Spec 0.1 #5: hardlinks is never 0 (upstream's MakeHardlinks asserts linkcount > 0).
    r.execute("", "UPDATE catalog SET hardlinks = 0 WHERE md5path_1 = ? AND md5path_2 = ?",
              path_key("/a/hello.txt"))
    r.commit()


def wrong_parent_key(r: Resigner) -> None:
    # /a/hello.txt now claims a parent that does not exist: the row dangles.
    r.execute("", "UPDATE catalog SET parent_1 = ?, parent_2 = ? "
              "WHERE md5path_1 = ? AND md5path_2 = ?",
              (*path_key("/a/nonexistent"), *path_key("/a/hello.txt")))
    r.commit()


def missing_root_prefix(r: Resigner) -> None:
    r.execute("/nested", "DELETE FROM properties WHERE key = 'root_prefix'")
    r.commit()


def wrong_nested_catalog_size(r: Resigner) -> None:
    r.execute("", "UPDATE nested_catalogs SET size = size + 4096 WHERE path = '/nested'")
    r.commit()


def root_catalog_deleted_from_reflog(r: Resigner) -> None:
    current = str(r.manifest.root_catalog)
    r.edit_reflog(lambda conn: conn.execute("DELETE FROM refs WHERE hash = ? AND type = 0",
                                            (current,)))
    r.commit()


def new_root_catalog_not_in_reflog(r: Resigner) -> None:
    # A harmless edit gives a new root catalog; the reflog learns the new history, not C.
    r.execute("/sw/pkg/1.0", "UPDATE properties SET value = value + 1 "
              "WHERE key = 'last_modified'")
    r.commit(record_root_in_reflog=False)


def expired_whitelist(r: Resigner) -> None:
    r.commit(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=40), whitelist_days=30)


def whitelist_for_another_repository(r: Resigner) -> None:
    r.commit(whitelist_fqrn=OTHER_NAME)


def manifest_for_another_repository(r: Resigner) -> None:
    # The whole repository (manifest, history, reflog) renamed consistently; only the name
    # the client asks for (and the whitelist) say ref.local.repo.
    rename = ("UPDATE properties SET value = ? WHERE key = 'fqrn'", (OTHER_NAME,))
    r.edit_history(lambda conn: conn.execute(*rename))
    r.edit_reflog(lambda conn: conn.execute(*rename))
    r.manifest = r.manifest.evolve(fqrn=OTHER_NAME)
    r.commit()


def nested_catalog_without_statistics_row(r: Resigner) -> None:
    r.execute("/nested", "DELETE FROM statistics WHERE counter = 'subtree_xattr'")
    r.commit()


def nested_root_differs_from_mountpoint(r: Resigner) -> None:
    r.execute("/sw/pkg/1.0", "UPDATE catalog SET mtime = mtime + 1 "
              "WHERE md5path_1 = ? AND md5path_2 = ?", path_key("/sw/pkg/1.0"))
    r.commit()


def nested_catalog_without_marker(r: Resigner) -> None:
    def edit(catalog: Catalog) -> None:
        # Remove the empty .cvmfscatalog file and keep the counters right about it.
        bump("DELETE FROM catalog WHERE md5path_1 = ? AND md5path_2 = ?",
             *path_key("/nested/.cvmfscatalog"))(catalog)
        bump("UPDATE statistics SET value = value - 1 WHERE counter = 'self_regular'")(catalog)

    r.edit_catalog("/nested", edit)
    r.execute("", "UPDATE statistics SET value = value - 1 WHERE counter = 'subtree_regular'")
    r.commit()


def compression_flag_flipped(r: Resigner) -> None:
    # /a/hello.txt claims to be stored uncompressed (2048) while its object is a zlib
    # stream: a client would hand out the 14 stored bytes as the file's content.
    r.execute("", "UPDATE catalog SET flags = flags | 2048 "
              "WHERE md5path_1 = ? AND md5path_2 = ?", path_key("/a/hello.txt"))
    r.commit()


def unknown_compression_bits(r: Resigner) -> None:
    r.execute("", "UPDATE catalog SET flags = flags | (5 << 11) "
              "WHERE md5path_1 = ? AND md5path_2 = ?", path_key("/a/hello.txt"))
    r.commit()


def unknown_hash_algorithm_bits(r: Resigner) -> None:
    r.execute("", "UPDATE catalog SET flags = flags | (7 << 8) "
              "WHERE md5path_1 = ? AND md5path_2 = ?", path_key("/a/hello.txt"))
    r.commit()


def null_symlink_column(r: Resigner) -> None:
    # Spec 13: a NULL symlink column crashes the upstream reader; ours must report it.
    r.execute("", "UPDATE catalog SET symlink = NULL WHERE md5path_1 = ? AND md5path_2 = ?",
              path_key("/a/hello.txt"))
    r.commit()


def chunk_without_hash(r: Resigner) -> None:
    r.execute("/nested", "UPDATE chunks SET hash = NULL WHERE offset = 0")
    r.commit()


def statistics_value_null(r: Resigner) -> None:
    r.execute("/nested", "UPDATE statistics SET value = NULL WHERE counter = 'self_dir'")
    r.commit()


def hardlinks_not_an_integer(r: Resigner) -> None:
    r.execute("", "UPDATE catalog SET hardlinks = 'x' WHERE md5path_1 = ? AND md5path_2 = ?",
              path_key("/a/hello.txt"))
    r.commit()


def null_mode(r: Resigner) -> None:
    r.execute("", "UPDATE catalog SET mode = NULL WHERE md5path_1 = ? AND md5path_2 = ?",
              path_key("/a/hello.txt"))
    r.commit()


def chunk_size_null(r: Resigner) -> None:
    r.execute("/nested", "UPDATE chunks SET size = NULL WHERE offset = 0")
    r.commit()


def tag_with_a_bad_hash(r: Resigner) -> None:
    r.edit_history(lambda conn: conn.execute("UPDATE tags SET hash = 'xyz' "
                                             "WHERE name = 'pkg-1.0'"))
    r.commit()


def tag_without_revision(r: Resigner) -> None:
    r.edit_history(lambda conn: conn.execute("UPDATE tags SET revision = NULL "
                                             "WHERE name = 'pkg-1.0'"))
    r.commit()


def flipped_file_object(r: Resigner) -> None:
    r.commit()
    flip_byte(object_path(r.storage_dir, HELLO_TXT), 5)


def flipped_chunk_object(r: Resigner) -> None:
    r.commit()
    flip_byte(object_path(r.storage_dir, FIRST_CHUNK, Suffix.PARTIAL), 1000)


def flipped_catalog_object(r: Resigner) -> None:
    r.commit()
    flip_byte(object_path(r.storage_dir, PKG_CATALOG, Suffix.CATALOG), 100)


def flipped_certificate_object(r: Resigner) -> None:
    r.commit()
    assert r.manifest.certificate is not None
    flip_byte(object_path(r.storage_dir, r.manifest.certificate, Suffix.CERTIFICATE), 50)


def flipped_manifest_letter(r: Resigner) -> None:
    r.commit()
    manifest = r.storage_dir / ".cvmfspublished"
    # The last digit of the T line: T1795541813 -> T1795541812, still a valid manifest.
    flip_byte(manifest, manifest.read_bytes().index(b"\nM") - 1)


def flipped_manifest_signature(r: Resigner) -> None:
    r.commit()
    flip_byte(r.storage_dir / ".cvmfspublished", -1)


def flipped_whitelist_letter(r: Resigner) -> None:
    r.commit()
    whitelist = r.storage_dir / ".cvmfswhitelist"
    flip_byte(whitelist, whitelist.read_bytes().index(b"\nCB:") + 1)  # CB:83 -> BB:83


def flipped_whitelist_signature(r: Resigner) -> None:
    r.commit()
    flip_byte(r.storage_dir / ".cvmfswhitelist", -1)


@dataclass(frozen=True)
class Case:
    tamper: Callable[[Resigner], None]
    expect: str  # a substring of the one problem verify must report

    @property
    def id(self) -> str:
        return self.tamper.__name__


CASES = [
    # Spec section 10, repository level and per catalog.
    Case(bumped_counter, "catalog /nested: statistics counter mismatch: self_regular is 4, "
                         "recomputed 3"),
    Case(wrong_directory_linkcount, "catalog /: wrong linkcount for /a: 4, expected 3"),
    Case(zero_link_count, "catalog /: /a/hello.txt: link count 0"),
    Case(wrong_parent_key, "1 row(s) not reachable from the catalog root (wrong parent key?): "
                           "'hello.txt'"),
    Case(missing_root_prefix, "catalog /nested: root prefix mismatch: expected '/nested', "
                              "found 'none'"),
    Case(wrong_nested_catalog_size, "catalog /nested: nested catalog size in the parent is "
                                    "61440, the catalog has 57344 bytes"),
    Case(root_catalog_deleted_from_reflog, "failed to find catalog root hash "
                                           "96ac540074f81c0dfa4e89ccddaded6d766ebcaa in "
                                           ".cvmfsreflog"),
    Case(new_root_catalog_not_in_reflog, "failed to find catalog root hash"),
    Case(expired_whitelist, "whitelist expired"),
    Case(whitelist_for_another_repository, "repository name mismatch: whitelist is for "
                                           "'other.local.repo', expected 'ref.local.repo'"),
    Case(manifest_for_another_repository, "repository name mismatch: manifest is for "
                                          "'other.local.repo', expected 'ref.local.repo'"),
    # Spec section 13 / 0.1 extras.
    Case(nested_catalog_without_statistics_row, "catalog /nested: failed to open catalog"),
    Case(nested_root_differs_from_mountpoint, "catalog /sw/pkg/1.0: nested root differs from "
                                              "its mountpoint in the parent: ['mtime']"),
    Case(nested_catalog_without_marker, "catalog /nested: nested catalog without marker"),
    # Malformed rows and flags: reported as problems, never a crash of the verifier.
    Case(compression_flag_flipped, "catalog /: /a/hello.txt: content is 14 bytes, the catalog "
                                   "says 6"),
    Case(unknown_compression_bits, "catalog /: /a/hello.txt: unknown compression 5"),
    Case(unknown_hash_algorithm_bits, "catalog /: malformed catalog (catalog row 'hello.txt' "
                                      "has unknown hash algorithm bits"),
    Case(null_symlink_column, "catalog /: malformed catalog (catalog row 'hello.txt' has NULL "
                              "hardlinks, name or symlink)"),
    Case(chunk_without_hash, "catalog /nested: malformed catalog (chunk at 0 of "
                             "/nested/rand_20M.bin has no hash)"),
    Case(statistics_value_null, "catalog /nested: failed to open catalog (statistics counter "
                                "self_dir is not an integer: None)"),
    Case(hardlinks_not_an_integer, "catalog /: malformed catalog (catalog row 'hello.txt' has "
                                   "mistyped columns: hardlinks)"),
    Case(null_mode, "catalog /: malformed catalog (catalog row 'hello.txt' has mistyped "
                    "columns: mode)"),
    Case(chunk_size_null, "catalog /nested: malformed catalog (chunk at 0 of "
                          "/nested/rand_20M.bin has a non-integer offset or size)"),
    Case(tag_with_a_bad_hash, "not a content hash string: 'xyz'"),
    Case(tag_without_revision, "tag 'pkg-1.0' is malformed"),
    # Byte flips: the hash covers the stored bytes; signatures cover letters.
    Case(flipped_file_object, "/a/hello.txt: object data/57/98f7f4ca7585d850eea64610a1f73d8f8de7a3"
                              " is corrupt"),
    Case(flipped_chunk_object, "/nested/rand_20M.bin chunk at 0: object data/1d/"
                               "8d456b4f810ef9bdd05033f58ce5f450d3223aP is corrupt"),
    Case(flipped_catalog_object, "catalog /sw/pkg/1.0 (9a2dbb0ecb66a78c690e6531b71fb8d7864544f8)"
                                 ": object content hash is"),
    Case(flipped_certificate_object, "is corrupt: object content hash is"),
    Case(flipped_manifest_letter, "manifest signature does not verify"),
    Case(flipped_manifest_signature, "manifest signature does not verify"),
    Case(flipped_whitelist_letter, "bad whitelist"),
    Case(flipped_whitelist_signature, "bad whitelist"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tampered_copy_fails_verify_with_that_problem(case: Case, fixture_copy: Path,
                                                      tmp_path: Path, cli) -> None:
    case.tamper(Resigner(fixture_copy, tmp_path / "work"))
    code, report = verify(cli, fixture_copy)
    assert code == 1
    assert not report["ok"]
    assert len(report["problems"]) == 1, report["problems"]
    assert case.expect in report["problems"][0]


# -- controls: re-signing alone breaks nothing -----------------------------------------------


def test_resigned_copy_passes(fixture_copy: Path, tmp_path: Path, cli) -> None:
    """Same content, fresh signatures: verify as of now (no --as-of) is clean."""
    Resigner(fixture_copy, tmp_path / "work").commit()
    result = cli("verify", "--repo", fixture_copy / "storage", "--key",
                 key_file(fixture_copy, "pub"), "--fqrn", FQRN)
    assert result.code == 0, result.out
    assert result.out.startswith("OK: ref.local.repo revision 5: 3 catalogs, 46 entries")


def test_resigned_edit_of_deepest_catalog_passes(fixture_copy: Path, tmp_path: Path,
                                                 cli) -> None:
    """A harmless catalog edit goes through the whole re-signing chain and stays valid."""
    r = Resigner(fixture_copy, tmp_path / "work")
    old_root = r.manifest.root_catalog
    r.execute("/sw/pkg/1.0", "UPDATE properties SET value = value + 1 "
              "WHERE key = 'last_modified'")
    manifest = r.commit()
    assert manifest.root_catalog != old_root
    new_pkg = r.catalog_chain("/sw/pkg/1.0")[-1][1]
    assert new_pkg != PKG_CATALOG
    assert object_path(r.storage_dir, new_pkg, Suffix.CATALOG).is_file()
    code, report = verify(cli, fixture_copy)
    assert (code, report["problems"], report["warnings"]) == (0, [], [])
    assert (report["catalogs"], report["entries"]) == (3, 46)


def test_uncompressed_file_object_is_valid(fixture_copy: Path, tmp_path: Path, cli) -> None:
    """Spec 2.7: flag 2048 means the object holds the plain bytes, hashed as they are.

    Valid for clients (``cvmfs_server mkfs -Z none`` writes such entries), so verify must
    accept it and the reader must return the content without inflating it.
    """
    r = Resigner(fixture_copy, tmp_path / "work")
    content = r.read_object(HELLO_TXT, Suffix.NONE)
    plain = ContentHash.of(content)
    r.storage.put(plain.object_key(), content)
    r.execute("", "UPDATE catalog SET flags = flags | 2048, hash = ? "
              "WHERE md5path_1 = ? AND md5path_2 = ?", (plain.digest, *path_key("/a/hello.txt")))
    r.commit()
    code, report = verify(cli, fixture_copy)
    assert (code, report["problems"]) == (0, [])
    result = cli("cat", "/a/hello.txt", "--repo", fixture_copy / "storage", "--key",
                 key_file(fixture_copy, "pub"), "--fqrn", FQRN)
    assert (result.code, result.out.encode()) == (0, content)


def test_every_catalog_can_be_tampered_in_isolation(fixture_copy: Path, tmp_path: Path,
                                                    cli) -> None:
    """The same counter bump in each catalog is reported for that catalog only."""
    r = Resigner(fixture_copy, tmp_path / "work")
    for mountpoint in ("", "/nested", "/sw/pkg/1.0"):
        r.execute(mountpoint, "UPDATE statistics SET value = value + 7 "
                  "WHERE counter = 'self_dir'")
    r.commit()
    code, report = verify(cli, fixture_copy)
    assert code == 1
    assert sorted(p.split(":")[0] for p in report["problems"]) == [
        "catalog /", "catalog /nested", "catalog /sw/pkg/1.0"]
    assert all("statistics counter mismatch: self_dir" in p for p in report["problems"])


def test_tampered_reflog_keeps_other_refs(fixture_copy: Path, tmp_path: Path) -> None:
    """The reflog case removes only C: certificate, history and meta-info stay listed."""
    r = Resigner(fixture_copy, tmp_path / "work")
    root_catalog_deleted_from_reflog(r)
    kept = {(str(h), t) for h, t in _reflog_refs(r)}
    assert (str(r.manifest.root_catalog), RefType.CATALOG) not in kept
    for content_hash, ref_type in ((r.manifest.certificate, RefType.CERTIFICATE),
                                   (r.manifest.history, RefType.HISTORY),
                                   (r.manifest.metainfo, RefType.METAINFO)):
        assert (str(content_hash), ref_type) in kept


def _reflog_refs(r: Resigner) -> list[tuple[ContentHash, RefType]]:
    file = r.work / "check-reflog.db"
    file.write_bytes((r.storage_dir / ".cvmfsreflog").read_bytes())
    reflog = Reflog(file, writable=False)
    try:
        return [(h, t) for h, t, _ in reflog.entries()]
    finally:
        reflog.conn.close()


# -- wrong keys and names at verify time -------------------------------------------------------


def test_wrong_master_public_key(fixture_copy: Path, tmp_path: Path, cli) -> None:
    Resigner(fixture_copy, tmp_path / "work").commit()
    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(generate_private_key().public_key()))
    code, report = verify(cli, fixture_copy, key=other)
    assert code == 1
    assert len(report["problems"]) == 1
    assert "bad whitelist" in report["problems"][0]


def test_repository_certificate_is_not_a_master_key(fixture_copy: Path, tmp_path: Path,
                                                    cli) -> None:
    """Trusting the repository key pair instead of the master key must fail too."""
    Resigner(fixture_copy, tmp_path / "work").commit()
    signer = load_private_key(key_file(fixture_copy, "key").read_bytes(), "key")
    wrong = tmp_path / "signing.pub"
    wrong.write_bytes(public_pem(signer.public_key()))
    code, report = verify(cli, fixture_copy, key=wrong)
    assert code == 1
    assert "bad whitelist" in report["problems"][0]


def test_verify_under_another_name(fixture_copy: Path, tmp_path: Path, cli) -> None:
    Resigner(fixture_copy, tmp_path / "work").commit()
    code, report = verify(cli, fixture_copy, fqrn=OTHER_NAME)
    assert code == 1
    assert report["problems"] == [
        "repository name mismatch: manifest is for 'ref.local.repo', expected "
        "'other.local.repo'"]


def test_text_output_names_the_problem(fixture_copy: Path, tmp_path: Path, cli) -> None:
    wrong_directory_linkcount(Resigner(fixture_copy, tmp_path / "work"))
    result = cli("verify", "--repo", fixture_copy / "storage", "--key",
                 key_file(fixture_copy, "pub"), "--fqrn", FQRN)
    assert result.code == 1
    assert "problem: catalog /: wrong linkcount for /a: 4, expected 3" in result.out
    assert "FAILED: 1 problem(s)" in result.out


def test_cases_edit_the_catalogs_they_name(fixture_copy: Path, tmp_path: Path) -> None:
    """Guard for the machinery: a nested edit changes that catalog and its parents only."""
    r = Resigner(fixture_copy, tmp_path / "work")
    before = dict(r.catalog_chain("/nested"))
    untouched = r.catalog_chain("/sw/pkg/1.0")[-1][1]
    bumped_counter(r)
    after = dict(r.catalog_chain("/nested"))
    assert all(before[m] != after[m] for m in before)
    assert r.catalog_chain("/sw/pkg/1.0")[-1][1] == untouched
