"""Init, publish, verify and tags against a real S3 server; anonymous reads; credentials."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import requests

from cvmfs_publisher.cvmfs.hashes import Algorithm, ContentHash, Suffix
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.errors import ConfigError, ObjectNotFound, StorageError, TagError
from cvmfs_publisher.storage import Capabilities
from cvmfs_publisher.storage.base import MANIFEST
from cvmfs_publisher.storage.http import HttpStorage
from cvmfs_publisher.storage.s3 import S3Settings, S3Storage

from .s3kit import (
    ACCESS_KEY,
    BUCKET,
    FQRN,
    SECRET_KEY,
    published_files,
    sample_files,
)
from .wiretap import Seen, Wiretap, slow_down

MiB = 1 << 20


def test_publish_verify_and_read_back(s3_repo, s3_storage, publish, seaweed):
    """Everything a client needs is in the bucket, under <prefix>/<fqrn>/ as upstream has it."""
    files = sample_files("one", big=17 * MiB)  # > 16 MiB max chunk: P objects
    result = publish(s3_repo, "/sw/a", files)
    assert result.revision == 1
    assert published_files(s3_repo, "/sw/a") == files
    report = s3_repo.verify()
    assert report.ok, report.problems
    assert report.revision == 1
    keys = set(s3_storage.list())
    assert {".cvmfspublished", ".cvmfswhitelist", ".cvmfsreflog",
            ".cvmfs_master_replica"} <= keys
    assert any(k.endswith("P") for k in keys), "the 17 MiB file should be chunked"
    prefix = s3_storage.settings.prefix
    raw = s3_storage.client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    assert all(o["Key"].startswith(f"{prefix}/{FQRN}/") for o in raw["Contents"])
    assert f"{prefix}/{FQRN}/.cvmfspublished" in {o["Key"] for o in raw["Contents"]}


def test_second_publish_keeps_first_and_uploads_no_object_twice(tapped_settings, wiretap,
                                                                new_repo, publish):
    s3_storage = S3Storage(tapped_settings, FQRN)
    s3_repo = new_repo(s3_storage)
    s3_repo.create()
    first = sample_files("a")
    publish(s3_repo, "/sw/a", first)
    before = set(s3_storage.list("data/"))
    start = wiretap.mark()
    second = {**sample_files("a"), "new.txt": b"new\n"}
    result = publish(s3_repo, "/sw/b", second)
    assert result.revision == 2
    put_keys = {seen.path.split(f"/{FQRN}/", 1)[1] for seen in wiretap.seen[start:]
                if seen.method == "PUT"}
    assert any(key.startswith("data/") for key in put_keys)  # the new file's object
    assert put_keys & before == set()  # content addressing: existing objects are not re-sent
    assert ".cvmfspublished" in put_keys
    assert published_files(s3_repo, "/sw/a") == first
    assert published_files(s3_repo, "/sw/b") == second
    assert s3_repo.verify().ok


def test_tags_over_s3(s3_repo, s3_storage, publish):
    publish(s3_repo, "/sw/pkg", {"v": b"1\n"}, tag="pkg-1")
    publish(s3_repo, "/sw/pkg", {"v": b"2\n"}, tag="pkg-2")
    reader = s3_repo.reader()
    history = reader.history()
    assert history is not None
    tags = {t.name: t for t in history.tags()}
    history.conn.close()
    assert tags["pkg-1"].revision == 1 and tags["pkg-2"].revision == 2
    old_root = reader.catalog(tags["pkg-1"].root_hash)  # the tagged revision stays readable
    entry = old_root.lookup("/sw/pkg/v")
    assert entry is not None and entry.content_hash is not None
    assert b"".join(reader._object(entry.content_hash, Suffix.NONE, entry.compression,
                                   entry.size, "/sw/pkg/v")) == b"1\n"
    reader.close()
    with pytest.raises(TagError, match="already exists"):
        publish(s3_repo, "/sw/pkg", {"v": b"3\n"}, tag="pkg-1")
    assert s3_repo.head().manifest.revision == 2
    assert s3_repo.verify().ok


def test_anonymous_http_read_of_the_bucket_url(s3_repo, s3_storage, publish, tmp_path, seaweed):
    """The bucket's public URL is a CVMFS_SERVER_URL: HttpStorage + the public key verify it."""
    files = sample_files("anon", big=5 * MiB)
    publish(s3_repo, "/sw/x", files)
    url = s3_storage.public_url()
    assert url == f"{seaweed.endpoint}/{BUCKET}/{s3_storage.settings.prefix}/{FQRN}"
    http = NativeRepository(HttpStorage(url), FQRN,
                            public_keys=[tmp_path / "keys" / f"{FQRN}.pub"],
                            options=EngineOptions(cache_dir=tmp_path / "anon-cache"))
    assert published_files(http, "/sw/x") == files
    report = http.verify()
    assert report.ok, report.problems
    assert not http.storage.exists("data/00/" + "0" * 38)
    # the server does enforce auth: anonymous writes are refused
    denied = requests.put(f"{url}/data/00/{'1' * 38}", data=b"x", timeout=10)
    assert denied.status_code == 403


def test_headers_and_acl_as_upstream(s3_repo, s3_storage, publish):
    publish(s3_repo, "/sw/h", {"f": b"headers\n"})
    url = s3_storage.public_url()
    manifest = requests.head(f"{url}/.cvmfspublished", timeout=10)
    assert manifest.status_code == 200
    assert manifest.headers["Content-Type"] == "application/x-cvmfs"
    assert manifest.headers["Cache-Control"] == "max-age=61"
    data_key = next(k for k in s3_storage.list("data/") if k.endswith("C"))
    obj = requests.head(f"{url}/{data_key}", timeout=10)
    assert obj.status_code == 200
    assert obj.headers["Content-Type"] == "application/octet-stream"
    assert obj.headers["Cache-Control"] == "max-age=259200"


@pytest.mark.parametrize("acl", ["public-read", None])
def test_canned_acl_or_bucket_policy(tapped_settings, wiretap, new_repo, publish, acl):
    """Default: every repository file carries x-amz-acl public-read (the lease never does);
    ``acl: none`` sends no ACL, for buckets whose policy grants anonymous reads."""
    settings = dataclasses.replace(tapped_settings, acl=acl)
    storage = S3Storage(settings, FQRN)
    repo = new_repo(storage)
    repo.create()
    publish(repo, "/sw/acl", {"f": b"acl\n"})
    acls = {seen.path.rsplit("/", 1)[-1]: seen.headers.get("x-amz-acl")
            for seen in wiretap.seen if seen.method == "PUT"}
    lease = acls.pop(".cvmfs_publish_lease")
    assert lease is None
    assert {".cvmfspublished", ".cvmfswhitelist"} <= set(acls) and len(acls) >= 6
    assert set(acls.values()) == {acl}
    assert requests.get(f"{storage.public_url()}/.cvmfspublished", timeout=10).ok


def test_multipart_for_large_objects(s3_settings):
    settings = dataclasses.replace(s3_settings, multipart_threshold=5 * MiB,
                                   multipart_chunksize=5 * MiB)
    storage = S3Storage(settings, FQRN)
    data = os.urandom(11 * MiB)
    key = ContentHash.of(data, Algorithm.SHA1).object_key(Suffix.NONE)
    storage.put(key, data)
    head = storage.client.head_object(Bucket=BUCKET, Key=storage.object_key(key))
    assert re.search(r"-3\"?$", head["ETag"]), head["ETag"]  # three parts
    assert head["ContentType"] == "application/octet-stream"
    assert storage.get(key) == data
    anonymous = requests.get(f"{storage.public_url()}/{key}", timeout=30)
    assert anonymous.status_code == 200 and anonymous.content == data


def test_open_streams_the_body_with_its_size(s3_storage):
    data = os.urandom(3 * MiB + 5)
    key = ContentHash.of(data, Algorithm.SHA1).object_key(Suffix.NONE)
    s3_storage.put(key, data)
    with s3_storage.open(key) as stream:
        assert stream.size == len(data)
        stream.skip(MiB)
        assert stream.read(5) == data[MiB:MiB + 5]
        assert b"".join(stream) == data[MiB + 5:]
    with pytest.raises(ObjectNotFound):
        s3_storage.open("data/00/" + "0" * 38)


def test_capabilities_and_locking_check(s3_settings):
    storage = S3Storage(s3_settings, FQRN)
    assert storage.capabilities() == Capabilities(parallelism=8, conditional_writes=True,
                                                  lock="lease", listable=True)
    assert storage.check_locking() is None  # SeaweedFS honours If-None-Match and If-Match
    assert S3Storage(s3_settings, FQRN, read_only=True).capabilities().lock == "none"
    emulated = S3Storage(dataclasses.replace(s3_settings, conditional_writes=False), FQRN)
    assert not emulated.capabilities().conditional_writes
    assert "run a single publisher" in (emulated.check_locking() or "")


def test_read_only_storage_refuses_writes(s3_repo, s3_settings, publish, new_repo):
    publish(s3_repo, "/sw/r", {"f": b"r\n"})
    storage = S3Storage(s3_settings, FQRN, read_only=True)
    with pytest.raises(StorageError, match="read-only"):
        storage.put(MANIFEST, b"x")
    with pytest.raises(StorageError, match="read-only"):
        storage.put_manifest(b"x", storage.get(MANIFEST))
    with pytest.raises(StorageError, match="read-only"), storage.lock("me"):
        pass
    assert new_repo(storage).verify().ok


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(("access", "secret", "code"), [
    (ACCESS_KEY, "not-the-secret", "SignatureDoesNotMatch"),
    ("AKNOSUCHKEY", SECRET_KEY, "InvalidAccessKeyId"),
])
def test_wrong_credentials_clear_error_nothing_written(
        s3_settings, new_repo, seaweed, monkeypatch, access, secret, code, caplog):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage = S3Storage(s3_settings, FQRN)
    expected = (rf"^S3 endpoint {re.escape(seaweed.endpoint)} \(bucket {BUCKET}\) rejected "
                rf"the credentials \({code}\)$")
    with pytest.raises(StorageError, match=expected) as info:
        new_repo(storage).create()
    assert "not-the-secret" not in str(info.value) and "not-the-secret" not in caplog.text
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    good = S3Storage(s3_settings, FQRN)
    listed = good.client.list_objects_v2(Bucket=BUCKET, Prefix=s3_settings.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_no_credentials_anywhere(s3_settings, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3Storage(s3_settings, FQRN)
    with pytest.raises(StorageError, match=r"^no S3 credentials for S3 endpoint .*: set "):
        storage.exists(MANIFEST)


def test_credentials_from_aws_file_and_profile(s3_settings, monkeypatch, tmp_path, s3_repo):
    """A profile named in the config wins over the environment, as in the AWS tools."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stale-secret-in-env")
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n"
                     f"[cvmfs]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    creds.chmod(0o600)
    settings = dataclasses.replace(s3_settings, credentials_file=creds, profile="cvmfs")
    storage = S3Storage(settings, FQRN)
    assert storage.exists(MANIFEST)
    storage.put("data/ab/" + "f" * 38, b"profile")  # the direct path signs with them too
    default = dataclasses.replace(s3_settings, credentials_file=creds)
    with pytest.raises(StorageError, match="rejected the credentials"):
        S3Storage(default, FQRN).get(MANIFEST)
    with pytest.raises(ConfigError, match="profile 'nope' not found"):
        S3Storage(dataclasses.replace(settings, profile="nope"), FQRN)


def test_credentials_from_upstream_s3_conf(tapped_settings, wiretap, monkeypatch, tmp_path,
                                           s3_repo):
    """The same s3.conf a classic cvmfs_server uses works as a credentials file."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    conf = tmp_path / "s3.conf"
    conf.write_text(f"CVMFS_S3_HOST=127.0.0.1\nCVMFS_S3_BUCKET={BUCKET}\n"
                    f"CVMFS_S3_ACCESS_KEY={ACCESS_KEY}\nCVMFS_S3_SECRET_KEY={SECRET_KEY}\n")
    conf.chmod(0o600)
    settings = dataclasses.replace(tapped_settings, credentials_file=conf)
    storage = S3Storage(settings, FQRN)
    assert storage.exists(MANIFEST)
    key = "data/ab/" + "e" * 38
    storage.put(key, b"signed with the s3.conf keys")
    assert storage.get(key) == b"signed with the s3.conf keys"
    put = next(seen for seen in wiretap.seen if seen.method == "PUT")
    assert put.headers["user-agent"].startswith("cvmfs-publisher/")  # signed the direct way


def test_missing_bucket(seaweed, s3_env):
    settings = S3Settings.from_mapping({"url": "s3://no-such-bucket/x",
                                        "endpoint": seaweed.endpoint, "max_attempts": 1})
    storage = S3Storage(settings, FQRN)
    with pytest.raises(StorageError, match=r"^bucket no-such-bucket does not exist at S3 endpoint"):
        storage.get(MANIFEST)


def test_unreachable_endpoint_message(s3_env):
    settings = S3Settings.from_mapping({"url": "s3://cvmfs", "endpoint": "http://127.0.0.1:9",
                                        "max_attempts": 2})
    storage = S3Storage(settings, FQRN)
    for ask in (lambda: storage.exists(MANIFEST), lambda: storage.put("data/ab/" + "c" * 38,
                                                                      b"x")):
        with pytest.raises(StorageError) as info:
            ask()
        assert str(info.value) == ("cannot reach S3 endpoint http://127.0.0.1:9 (bucket "
                                   "cvmfs): connection refused")


def test_keys_are_checked(s3_storage):
    with pytest.raises(Exception, match="not a repository storage key"):
        s3_storage.get("../other.repo/.cvmfspublished")
    assert Path(s3_storage.object_key("data/ab/" + "c" * 38)).parts[-3:] == (
        "data", "ab", "c" * 38)


def _slow_down_first(wiretap: Wiretap, times: int) -> list[str]:
    """The first ``times`` PUTs get 503 SlowDown from the tap, never reaching the server;
    the user agent of every PUT is listed."""
    agents: list[str] = []

    def answer(seen: Seen) -> tuple[int, bytes] | None:
        if seen.method != "PUT":
            return None
        agents.append(seen.headers.get("user-agent", ""))
        return slow_down(seen) if len(agents) <= times else None

    wiretap.answer = answer
    return agents


def test_what_the_direct_put_cannot_take_goes_through_boto3(tapped_settings, wiretap):
    """A server that refuses the direct PUT (here: its checksum header, as some S3 servers
    do) but takes boto3's gets that PUT again from boto3, and every later one too."""
    refused: list[str] = []

    def answer(seen: Seen) -> tuple[int, bytes] | None:
        if seen.method == "PUT" and seen.headers["user-agent"].startswith("cvmfs-publisher/"):
            refused.append(seen.path)
            return 400, b"<Error><Code>InvalidArgument</Code><Message>no</Message></Error>"
        return None

    wiretap.answer = answer
    storage = S3Storage(tapped_settings, FQRN)
    keys = [f"data/ab/{n:038d}" for n in range(3)]
    start = wiretap.mark()
    for n, key in enumerate(keys):
        storage.put(key, b"fallback %d" % n)
    assert [storage.get(key) for key in keys] == [b"fallback %d" % n for n in range(3)]
    puts = [seen for seen in wiretap.seen[start:] if seen.method == "PUT"]
    assert len(refused) == 1 and len(puts) == 4  # one refused, then boto3 for all three
    assert all(seen.headers["user-agent"].startswith("Boto3/") for seen in puts[1:])


def test_wrong_secret_on_the_direct_put(s3_settings, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError) as info:
        S3Storage(s3_settings, FQRN).put("data/ab/" + "d" * 38, b"x")
    assert str(info.value) == (f"S3 endpoint {s3_settings.endpoint} (bucket {BUCKET}) "
                               "rejected the credentials (SignatureDoesNotMatch)")


@pytest.mark.parametrize("conditional", [False, True], ids=["direct", "boto3"])
def test_throttling_is_retried(tapped_settings, wiretap, conditional):
    """Objects go the direct way (``direct_put``), conditional PUTs through boto3: both
    retry a 503 up to ``max_attempts`` and then say how often they tried."""
    key = "data/ab/" + "c" * 38

    def put(storage: S3Storage, data: bytes) -> None:
        if conditional:
            storage.conditional_put(key, data, {}, acl=False, if_none_match=True)
        else:
            storage.put(key, data)

    patient = S3Storage(dataclasses.replace(tapped_settings, max_attempts=3), FQRN)
    agents = _slow_down_first(wiretap, 2)
    put(patient, b"made it")
    assert len(agents) == 3 and patient.get(key) == b"made it"
    assert all(a.startswith("Boto3/") == conditional for a in agents), agents
    hasty = S3Storage(dataclasses.replace(tapped_settings, max_attempts=2), FQRN)
    _slow_down_first(wiretap, 5)
    with pytest.raises(StorageError) as info:
        put(hasty, b"x")
    assert str(info.value) == (
        f"S3 endpoint {wiretap.endpoint} (bucket {BUCKET}) failed PUT {key} after 2 "
        "attempt(s): SlowDown (HTTP 503) Please reduce your request rate.")


def test_garbage_collection_over_s3(s3_repo, s3_storage, publish):
    publish(s3_repo, "/sw/a", {"old.txt": b"old content\n"})
    before = dict(s3_storage.list_with_sizes("data/"))
    assert before and all(size > 0 for size in before.values())
    publish(s3_repo, "/sw/a", {"new.txt": b"new content\n"})
    plan = s3_repo.gc(keep_revisions=1)
    assert plan.garbage
    after = set(s3_storage.list("data/"))
    assert not set(plan.garbage) & after
    assert published_files(s3_repo, "/sw/a") == {"new.txt": b"new content\n"}
    report = s3_repo.verify()
    assert report.ok, report.problems


def test_https_with_the_configured_ca_bundle(s3_settings, seaweed, monkeypatch):
    """Over TLS the direct PUTs check the server's certificate against the CA bundle boto3
    uses (``AWS_CA_BUNDLE``); without it this test CA is unknown and nothing is stored."""
    settings = dataclasses.replace(s3_settings, endpoint_url=seaweed.https_endpoint)
    key = "data/ab/" + "1" * 38
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with pytest.raises(StorageError) as info:
        S3Storage(settings, FQRN).put(key, b"over TLS")
    assert "certificate verify failed" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(seaweed.ca_file))
    storage = S3Storage(settings, FQRN)
    storage.put(key, b"over TLS")
    direct = storage._direct_put()
    assert direct is not None and direct.pool.ca_certs == str(seaweed.ca_file)
    assert storage.get(key) == b"over TLS"
