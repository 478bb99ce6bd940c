"""The command line against a bucket: init, publish, tags, verify (with keys and anonymous)."""

from __future__ import annotations

import uuid

from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

from .s3kit import BUCKET, FQRN, sample_files, write_tree


def test_cli_round_trip(cli, seaweed, s3_env, tmp_path, isolated_home, monkeypatch):
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    result = cli("init", FQRN, "--storage", f"s3://{BUCKET}/{prefix}",
                 "--endpoint", seaweed.endpoint, "--region", "us-east-1")
    assert result.code == 0, result.err
    assert f"s3://{BUCKET}/{prefix}/{FQRN}" in result.out

    src = write_tree(tmp_path / "src", sample_files("cli"))
    result = cli("publish", src, "--repo", FQRN, "--path", "/sw/tool/1.0", "--tag", "tool-1.0",
                 "--no-progress")
    assert result.code == 0, result.err
    assert "published revision 1" in result.out

    result = cli("tags", "--repo", FQRN)
    assert result.code == 0 and "tool-1.0" in result.out

    result = cli("verify", "--repo", FQRN)
    assert result.code == 0 and result.out.startswith("OK: "), result.out + result.err

    public = f"{seaweed.endpoint}/{BUCKET}/{prefix}/{FQRN}"
    pub = isolated_home / "config" / "cvmfs-publisher" / "keys" / f"{FQRN}.pub"
    result = cli("verify", "--repo", public, "--key", pub, "--fqrn", FQRN)
    assert result.code == 0 and result.out.startswith("OK: "), result.out + result.err

    result = cli("client-config", "--repo", FQRN)
    assert f"CVMFS_SERVER_URL={seaweed.endpoint}/{BUCKET}/{prefix}/@fqrn@" in result.out

    result = cli("unlock", "--repo", FQRN, "--force")
    assert result.code == 0 and "not locked" in result.out

    # Another publisher holds the lease: busy (exit 75) with who and since when.
    settings = S3Settings.from_url_and_mapping(f"s3://{BUCKET}/{prefix}",
                                               {"endpoint": seaweed.endpoint})
    with S3Storage(settings, FQRN).lock("carol publishing"):
        result = cli("publish", src, "--repo", FQRN, "--path", "/sw/x", "--no-progress")
        assert result.code == 75
        assert "busy: carol publishing" in result.err
    result = cli("unlock", "--repo", FQRN, "--force")
    assert "not locked" in result.out

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    result = cli("publish", src, "--repo", FQRN, "--path", "/sw/x", "--no-progress")
    assert result.code == 1
    assert "rejected the credentials (SignatureDoesNotMatch)" in result.err
    assert "wrong-secret" not in result.err + result.out
