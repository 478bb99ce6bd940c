"""S3 settings from the YAML mapping and the s3:// URL; no server needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.config import Config

from cvmfs_publisher.errors import ConfigError, UsageError
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage, make_client, parse_s3_url


def test_url_and_mapping():
    settings = S3Settings.from_url_and_mapping(
        "s3://cvmfs/stratum0/",
        {"endpoint": "http://127.0.0.1:8333/", "region": "eu-west-1", "parallelism": "32",
         "acl": "none", "lease_seconds": 30, "conditional_writes": "false"},
    )
    assert (settings.bucket, settings.prefix) == ("cvmfs", "stratum0")
    assert settings.endpoint_url == "http://127.0.0.1:8333"
    assert settings.parallelism == 32 and settings.acl is None
    assert settings.lease_seconds == 30 and settings.conditional_writes is False
    assert settings.repository_prefix("sw.example.org") == "stratum0/sw.example.org"
    assert (settings.repository_url("sw.example.org")
            == "http://127.0.0.1:8333/cvmfs/stratum0/sw.example.org")


def test_defaults_match_upstream():
    settings = S3Settings.from_url("s3://bucket")
    assert settings.prefix == "" and settings.acl == "public-read"
    assert settings.retry_mode == "standard" and settings.style == "virtual"
    assert settings.repository_url("a.b") == "https://bucket.s3.us-east-1.amazonaws.com/a.b"


@pytest.mark.parametrize(("mapping", "url"), [
    ({"endpoint": "https://s3.example.org", "addressing_style": "virtual"},
     "https://bkt.s3.example.org/p/sw.example.org"),
    ({"endpoint": "https://s3.example.org"}, "https://s3.example.org/bkt/p/sw.example.org"),
    ({"endpoint": "https://s3.example.org", "public_url": "https://cdn.example.org/"},
     "https://cdn.example.org/p/sw.example.org"),
    ({"region": "eu-central-1"}, "https://bkt.s3.eu-central-1.amazonaws.com/p/sw.example.org"),
])
def test_public_url(mapping, url):
    settings = S3Settings.from_url_and_mapping("s3://bkt/p", mapping)
    assert settings.repository_url("sw.example.org") == url


@pytest.mark.parametrize("key", ["secret_key", "aws_secret_access_key", "access_key",
                                 "AWS_SESSION_TOKEN"])
def test_secrets_are_refused_in_the_configuration(key):
    with pytest.raises(ConfigError, match="secrets are not accepted") as info:
        S3Settings.from_mapping({"bucket": "bkt", key: "verysecret"})
    assert "verysecret" not in str(info.value)


@pytest.mark.parametrize(("url", "error"), [
    ("http://bucket/x", "not an S3 storage URL"),
    ("s3:///x", "not an S3 storage URL"),
    ("s3://bkt/../x", "invalid S3 key prefix"),
    ("s3://bkt/a//b", "invalid S3 key prefix"),
    ("s3://-b-/x", "invalid S3 bucket name"),
    ("s3://ab/x", "invalid S3 bucket name"),
])
def test_bad_urls(url, error):
    with pytest.raises(UsageError, match=error):
        parse_s3_url(url)


@pytest.mark.parametrize(("mapping", "error"), [
    ({"bucket": "bkt", "colour": "red"}, "unknown s3 setting"),
    ({"prefix": "x"}, "need a bucket"),
    ({"bucket": "bkt", "addressing_style": "dns"}, "addressing_style must be one of"),
    ({"bucket": "bkt", "retry_mode": "forever"}, "retry_mode must be one of"),
    ({"bucket": "bkt", "parallelism": 0}, "parallelism must be at least 1"),
    ({"bucket": "bkt", "parallelism": "many"}, "parallelism must be an integer"),
    ({"bucket": "bkt", "parallelism": 2.5}, "parallelism must be an integer"),
    ({"bucket": "bkt", "read_timeout": "soon"}, "read_timeout must be a number"),
    ({"bucket": "bkt", "endpoint": "127.0.0.1:8333"}, "endpoint must be an http"),
    ({"bucket": "bkt", "conditional_writes": "maybe"}, "true or false"),
])
def test_bad_mappings(mapping, error):
    with pytest.raises(ConfigError, match=error):
        S3Settings.from_mapping(mapping)


def test_url_and_mapping_must_agree():
    with pytest.raises(ConfigError, match="contradicts the storage URL"):
        S3Settings.from_url_and_mapping("s3://bkt/p", {"bucket": "other"})
    agreed = S3Settings.from_url_and_mapping("s3://bkt/p", {"bucket": "bkt", "prefix": "/p/"})
    assert agreed.prefix == "p"


def test_client_configuration_follows_settings(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    settings = S3Settings.from_mapping({"bucket": "bkt", "endpoint": "http://127.0.0.1:1",
                                        "parallelism": 24, "retry_mode": "adaptive",
                                        "max_attempts": 7})
    config: Config = make_client(settings).meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert config.max_pool_connections >= 24
    assert config.s3["addressing_style"] == "path"
    storage = S3Storage(settings, "sw.example.org")
    assert storage.location == "s3://bkt/sw.example.org"
    assert storage.object_key(".cvmfspublished") == "sw.example.org/.cvmfspublished"


def test_credentials_file_problems(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    missing = S3Settings.from_mapping({"bucket": "bkt", "credentials_file": str(tmp_path / "no")})
    with pytest.raises(ConfigError, match="cannot read S3 credentials file"):
        make_client(missing)
    half = tmp_path / "s3.conf"
    half.write_text("CVMFS_S3_ACCESS_KEY=abc\n")
    with pytest.raises(ConfigError, match="no CVMFS_S3_SECRET_KEY"):
        make_client(S3Settings.from_mapping({"bucket": "bkt", "credentials_file": str(half)}))


@pytest.mark.parametrize(("mapping", "direct"), [
    ({}, True),
    ({"signature_version": "s3"}, False),  # SigV2: only botocore signs it
    ({"retry_mode": "adaptive"}, False),  # client-side rate limiting: only botocore has it
])
def test_where_objects_skip_boto3(monkeypatch, mapping, direct):
    """Object PUTs take the direct path (``direct_put``) only where it sends what boto3
    would: the same URL, region and TLS checks, no proxy to go through."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    settings = S3Settings.from_mapping({"bucket": "bkt", "region": "eu-west-1", **mapping})
    put = S3Storage(settings, "sw.example.org")._direct_put()
    assert (put is not None) == direct
    if put is not None:  # AWS itself: virtual-hosted, HTTPS with certificate checks
        assert put.bucket_url == "https://bkt.s3.eu-west-1.amazonaws.com"
        assert put.region == "eu-west-1" and put.pool.ca_certs
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    assert S3Storage(settings, "sw.example.org")._direct_put() is None
