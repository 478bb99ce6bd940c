"""The registry client against real registries: anonymous, Basic (htpasswd), Bearer tokens."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from imagekit import PASSWORD, USER

from unpacker.errors import AuthError, RegistryError
from unpacker.reference import parse_reference
from unpacker.registry import CredentialStore, RegistryClient
from unpacker.sync import FAILED


def _config_json(home, user: str = USER, password: str = PASSWORD, host: str = "") -> None:
    docker = home / ".docker"
    docker.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_basic_auth_from_docker_config(registries, images, isolated_home, make_repo, caplog):
    from unpacker.runs import run_unpack
    ref = f"{registries.basic}/test/small:v0"
    no_creds = run_unpack(make_repo(), None, [ref])
    assert no_creds.outcomes[0].status == FAILED
    assert "Basic credentials" in no_creds.outcomes[0].detail
    _config_json(isolated_home, password="wrong", host=f"http://{registries.basic}")
    wrong = run_unpack(make_repo(), None, [ref])
    assert wrong.outcomes[0].status == FAILED and "401" in wrong.outcomes[0].detail
    _config_json(isolated_home, host=registries.basic)
    caplog.set_level(logging.DEBUG)
    good = run_unpack(make_repo(), None, [ref])
    assert good.ok and good.outcomes[0].status == "unpacked"
    assert "/v2/test/small/manifests/v0" in caplog.text  # logs were captured: the check has teeth
    assert PASSWORD not in caplog.text and "wrong" not in str(wrong.outcomes)


def _token_lines(registries) -> list[str]:
    """What the token server saw, one line per answer: issued (``token``) or ``refused``."""
    return [line for line in registries.token_log.read_text().splitlines()
            if line.startswith(("token ", "refused "))]


class _Clock:
    """Stands in for the ``time`` module of ``unpacker.registry``: the test moves
    ``monotonic``, so token lifetimes pass without waiting; ``sleep`` stays real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_bearer_token_anonymous_cached_and_refreshed(registries, images, monkeypatch):
    import unpacker.registry
    clock = _Clock()
    monkeypatch.setattr(unpacker.registry, "time", clock)
    client = RegistryClient(CredentialStore())
    ref = parse_reference(f"{registries.token}/test/small:v0")
    issued = "token user=- scopes=['repository:test/small:pull']"
    before = len(_token_lines(registries))
    client.get_manifest(ref)
    client.head_manifest(ref)
    client.get_manifest(ref)
    assert _token_lines(registries)[before:] == [issued]  # cached per registry and scope
    # The registry accepts the token for its whole lifetime (the server's JWTs expire
    # with expires_in), so a new token can only come from the client's refresh at 80 %.
    refresh_after = registries.token_lifetime * 0.8
    clock.now += refresh_after - 1
    client.get_manifest(ref)
    assert _token_lines(registries)[before:] == [issued]  # still cached just before 80 %
    clock.now += 2
    body, _type, _digest = client.get_manifest(ref)
    assert json.loads(body)["schemaVersion"] == 2
    assert _token_lines(registries)[before:] == [issued, issued]  # refreshed past 80 %


def test_bearer_token_with_ducc_style_environment(registries, images, make_repo):
    env = {"DUCC_AUTH_REGISTRIES": "one", "DUCC_one_IDENT": registries.token,
           "DUCC_one_USER": USER, "DUCC_one_PASS": PASSWORD}
    client = RegistryClient(CredentialStore.from_environment(env))
    ref = parse_reference(f"{registries.token}/test/img:1.0")
    body, _type, digest = client.get_manifest(ref)
    assert digest.startswith("sha256:") and body
    assert f"user={USER}" in registries.token_log.read_text().splitlines()[-1]
    with client.open_blob(ref, json.loads(body)["config"]["digest"], None) as blob:
        assert json.loads(blob.read())["architecture"] == "amd64"


def test_wrong_token_credentials_fall_back_to_anonymous(registries, images, caplog):
    env = {"DUCC_AUTH_REGISTRIES": "x", "DUCC_x_IDENT": "127.0.0.1", "DUCC_x_USER": USER,
           "DUCC_x_PASS": "nope"}
    client = RegistryClient(CredentialStore.from_environment(env))
    before = len(_token_lines(registries))
    body, _type, digest = client.get_manifest(parse_reference(f"{registries.token}/test/small:v1"))
    # The token server saw our (wrong) credentials first, then an anonymous request.
    assert _token_lines(registries)[before:] == [
        f"refused user={USER}", "token user=- scopes=['repository:test/small:pull']"]
    assert "refused our credentials; trying anonymously" in caplog.text
    assert "nope" not in caplog.text
    # and what came back is the image's manifest, as the plain registry serves it
    plain = RegistryClient(CredentialStore()).get_manifest(
        parse_reference(f"{registries.plain}/test/small:v1"))
    assert (body, digest) == (plain[0], plain[2])


def test_plain_http_only_for_loopback_or_insecure():
    client = RegistryClient(CredentialStore(), insecure=["registry.internal:5000"])
    with pytest.raises(RegistryError, match="plain HTTP"):
        client.base_url(parse_reference("http://registry.example.org/a/b:1"))
    assert client.base_url(parse_reference("registry.example.org/a/b:1")) == \
        "https://registry.example.org"
    assert client.base_url(parse_reference("registry.internal:5000/a/b:1")) == \
        "http://registry.internal:5000"
    assert client.base_url(parse_reference("127.0.0.1:5000/a/b:1")) == "http://127.0.0.1:5000"
    assert client.base_url(parse_reference("localhost:5000/a:1")) == "http://localhost:5000"


def test_unknown_registry_is_an_error(registries):
    client = RegistryClient(CredentialStore())
    with pytest.raises(RegistryError, match=r"test/nothing:1: manifest request answered 404"):
        client.get_manifest(parse_reference(f"{registries.plain}/test/nothing:1"))


def test_credentials_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "auth.json"
    bad.write_text(json.dumps({"auths": {"x.org": {"auth": "!!!notbase64"}}}))
    with pytest.raises(AuthError, match=r"auth\.json"):
        CredentialStore.from_environment({}, auth_file=bad)


@pytest.fixture
def mischief(registries, tmp_path):
    """Start the misbehaving proxy in a mode; stopped by PID at the end of the test."""
    import sys

    from regkit import HERE, _start, free_port

    started = []

    def start(mode: str) -> tuple[str, object]:
        port = free_port()
        server = _start(f"mischief-{mode}", [sys.executable, str(HERE / "mischief.py"),
                                             str(port), f"http://{registries.plain}", mode],
                        tmp_path, f"http://127.0.0.1:{port}/v2/")
        started.append(server)
        return f"127.0.0.1:{port}", server

    yield start
    for server in started:
        server.stop()


def test_429_is_retried_after_retry_after(mischief, images):
    host, server = mischief("429")
    client = RegistryClient(CredentialStore())
    started = time.monotonic()
    body, _type, _digest = client.get_manifest(parse_reference(f"{host}/test/small:v0"))
    assert body and time.monotonic() - started >= 0.9  # waited for Retry-After: 1
    assert server.log.read_text().count("/manifests/v0") == 2


def test_corrupted_blob_is_refused(mischief, images, make_repo):
    from unpacker.runs import run_unpack
    host, _server = mischief("corrupt")
    report = run_unpack(make_repo(), None, [f"{host}/test/small:v0"])
    assert report.outcomes[0].status == FAILED
    assert "hashes to" in report.outcomes[0].detail


def test_broken_blob_download_resumes_with_range(mischief, images, make_repo):
    from unpacker.runs import run_unpack
    host, server = mischief("cut")
    report = run_unpack(make_repo(), None, [f"{host}/test/img:1.0"])
    assert report.ok, [o.detail for o in report.failed]
    log = server.log.read_text()
    assert "range=bytes=" in log
