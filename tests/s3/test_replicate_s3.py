"""Replicas in a bucket of the real S3 server: the upstream fixture and a repository of ours.

The replica is read back the way clients read it, through the bucket's anonymous HTTP URL:
full ``verify`` with the source's master key, the same ``ls -R --json --hash``, upstream's
headers; then an incremental snapshot, ``replica-gc`` in the bucket, and a replica of the
bucket replica.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import requests
from fixturedata import FIXTURE_NAME, FIXTURE_VALID_AT
from test_replicate import data_keys, listing, make_source, make_tree, publish, verified

from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

from .s3kit import BUCKET, FQRN

AS_OF = FIXTURE_VALID_AT.isoformat()



def to_bucket(cli, seaweed, source: str | Path, prefix: str, key: Path, *extra) -> dict:  # type: ignore[no-untyped-def]
    result = cli("replicate", source, "--key", key, "--to", f"s3://{BUCKET}/{prefix}",
                 "--endpoint", seaweed.endpoint, "--region", "us-east-1", "--json", *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def bucket_keys(seaweed, prefix: str, fqrn: str) -> set[str]:  # type: ignore[no-untyped-def]
    settings = S3Settings.from_url_and_mapping(f"s3://{BUCKET}/{prefix}",
                                               {"endpoint": seaweed.endpoint,
                                                "region": "us-east-1"})
    return set(S3Storage(settings, fqrn).list("data/"))


def test_fixture_replica_in_a_bucket(cli, seaweed, s3_env, fixture_dir: Path) -> None:
    source, pub = fixture_dir / "storage", fixture_dir / "keys" / f"{FIXTURE_NAME}.pub"
    prefix = f"s1-{uuid.uuid4().hex[:8]}"
    args = ("--fqrn", FIXTURE_NAME, "--as-of", AS_OF)
    first = to_bucket(cli, seaweed, source, prefix, pub, *args)
    assert first["revision"] == 5 and first["switched"]
    assert first["objects_copied"] == len(bucket_keys(seaweed, prefix, FIXTURE_NAME)) > 20
    assert first["replica"] == f"s3://{BUCKET}/{prefix}/{FIXTURE_NAME}"

    public = f"{seaweed.endpoint}/{BUCKET}/{prefix}/{FIXTURE_NAME}"
    assert verified(cli, public, pub, FIXTURE_NAME, "--as-of", AS_OF) == 5
    assert listing(cli, public, pub, FIXTURE_NAME, "--as-of", AS_OF) == \
        listing(cli, source, pub, FIXTURE_NAME, "--as-of", AS_OF)
    for name in (".cvmfspublished", ".cvmfswhitelist", ".cvmfs_last_snapshot",
                 ".cvmfs_master_replica"):
        head = requests.head(f"{public}/{name}", timeout=10)
        assert head.status_code == 200, name
        assert (head.headers["Content-Type"], head.headers["Cache-Control"]) == \
            ("application/x-cvmfs", "max-age=61"), name
    assert requests.head(f"{public}/.cvmfs_is_snapshotting", timeout=10).status_code == 404
    some_object = sorted(bucket_keys(seaweed, prefix, FIXTURE_NAME))[0]
    head = requests.head(f"{public}/{some_object}", timeout=10)
    assert (head.headers["Content-Type"], head.headers["Cache-Control"]) == \
        ("application/octet-stream", "max-age=259200")
    assert requests.get(f"{public}/.cvmfspublished", timeout=10).content == \
        (source / ".cvmfspublished").read_bytes()

    again = to_bucket(cli, seaweed, source, prefix, pub, *args)
    assert (again["objects_copied"], again["switched"]) == (0, False)


def test_native_replica_in_a_bucket(cli, seaweed, s3_env, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path, big=True)
    prefix = f"s1-{uuid.uuid4().hex[:8]}"
    public = f"{seaweed.endpoint}/{BUCKET}/{prefix}/{FQRN}"
    full = to_bucket(cli, seaweed, stratum0, prefix, pub)
    assert full["objects_copied"] == len(bucket_keys(seaweed, prefix, FQRN))
    assert any(key.endswith("P") for key in bucket_keys(seaweed, prefix, FQRN))  # chunks
    assert verified(cli, public, pub, FQRN) == 1
    assert listing(cli, public, pub, FQRN) == listing(cli, FQRN, pub, FQRN)

    before = data_keys(stratum0)
    publish(cli, make_tree(tmp_path, "v2"), "/sw/app/1.0/nested/v2", "v2")
    incremental = to_bucket(cli, seaweed, stratum0, prefix, pub)
    assert incremental["objects_copied"] == len(data_keys(stratum0) - before) > 0
    assert verified(cli, public, pub, FQRN) == 2
    assert listing(cli, public, pub, FQRN) == listing(cli, FQRN, pub, FQRN)

    # a replica (in a directory) of the bucket replica, through its anonymous URL
    chained = cli("replicate", public, "--key", pub, "--to", tmp_path / "second", "--json")
    assert chained.code == 0, chained.err
    assert verified(cli, tmp_path / "second" / FQRN, pub, FQRN) == 2

    # the source drops revision 1; gc in the bucket deletes what the source's gc deleted
    assert cli("tag", "rm", "v1", "--repo", FQRN).code == 0
    assert cli("rm", "/sw/app/1.0/link", "--repo", FQRN).code == 0
    assert cli("gc", "--repo", FQRN, "--keep-revisions", "1", "--keep-days", "0").code == 0
    to_bucket(cli, seaweed, stratum0, prefix, pub)
    expected = bucket_keys(seaweed, prefix, FQRN) - data_keys(stratum0)
    gc = cli("replica-gc", f"s3://{BUCKET}/{prefix}", "--fqrn", FQRN, "--key", pub,
             "--endpoint", seaweed.endpoint, "--region", "us-east-1", "--json")
    assert gc.code == 0, gc.err
    assert set(json.loads(gc.out)["garbage"]) == expected and expected
    assert bucket_keys(seaweed, prefix, FQRN) <= data_keys(stratum0)
    assert verified(cli, public, pub, FQRN) == 3
