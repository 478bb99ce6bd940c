"""Catalogs of older schema revisions read like the client reads them.

``cvmfs_server`` 2.11 writes catalog schema 2.5 revision 6, which has no ``mtimens``
column (revision 7 added it in 2.12); a classic Stratum 0 of that version is read through
its storage, so every reader must select the columns the revision has.
"""

from __future__ import annotations

import json
from pathlib import Path

from fixturedata import FIXTURE_NAME, FIXTURE_VALID_AT
from tamper import Resigner, key_file

from cvmfs_publisher.cvmfs.catalog import Catalog

CATALOGS = ("", "/nested", "/sw/pkg/1.0")


def downgrade_to_revision_6(copy: Path, work: Path) -> None:
    resigner = Resigner(copy, work)

    def downgrade(catalog: Catalog) -> None:
        catalog.conn.execute("ALTER TABLE catalog DROP COLUMN mtimens")
        catalog.conn.execute("UPDATE properties SET value = '6' WHERE key = 'schema_revision'")

    for mountpoint in reversed(CATALOGS):  # children first: parents record their new hashes
        resigner.edit_catalog(mountpoint, downgrade)
    resigner.commit(now=FIXTURE_VALID_AT)
    for mountpoint in CATALOGS:
        catalog = resigner.open_catalog(resigner.catalog_chain(mountpoint)[-1][1])
        assert "NULL AS mtimens" in catalog.columns
        catalog.conn.close()


def test_revision_6_catalogs_read_and_verify(cli, fixture_copy: Path, fixture_dir: Path,
                                             tmp_path: Path) -> None:
    downgrade_to_revision_6(fixture_copy, tmp_path / "work")
    args = ["--repo", fixture_copy / "storage", "--key", key_file(fixture_copy, "pub"),
            "--fqrn", FIXTURE_NAME, "--as-of", FIXTURE_VALID_AT.isoformat()]
    listed = cli("ls", "-R", "--json", "--hash", "/", *args)
    assert listed.code == 0, listed.err
    expected = json.loads((fixture_dir / "client-view.json").read_text(encoding="utf-8"))
    assert json.loads(listed.out) == expected
    checked = cli("verify", "--json", *args)
    report = json.loads(checked.out)
    assert (checked.code, report["problems"]) == (0, [])
    assert (report["catalogs"], report["entries"]) == (3, 46)
