"""Session fixtures: real registries (plain, Basic/htpasswd, Bearer token) and test images.

Every server is a real process on a free loopback port, stopped by its PID at the end.
The three registries share one storage directory, so an image pushed once is served by
all of them. A missing tool fails the tests (it does not skip them).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import imagekit as kit
import pytest
from imagekit import PASSWORD, USER
from regkit import HERE, Server, _registry, _start, free_port, require_tools

from cvmfs_publisher.backends.native import NativePublisher
from cvmfs_publisher.engine.options import EngineOptions
from cvmfs_publisher.engine.repository import NativeRepository
from cvmfs_publisher.storage.local import LocalStorage

FQRN = "unpacked.example.org"
# Long enough that no token expires at the registry during a run, however loaded the
# machine: the refresh at 80 % is tested with a controlled clock, not by waiting.
TOKEN_LIFETIME = 600


@dataclass
class Registries:
    plain: str
    basic: str
    token: str
    token_log: Path
    token_lifetime: int  # the token server's expires_in (s); its JWTs expire with it too
    servers: list[Server] = field(default_factory=list)


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory):
    require_tools("docker-registry", "skopeo", "umoci")
    work = tmp_path_factory.mktemp("registries")
    data = work / "data"
    servers: list[Server] = []
    try:
        plain, plain_host = _registry("plain", work, data, None)
        servers.append(plain)
        htpasswd = work / "htpasswd"
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
        htpasswd.write_text(f"{USER}:{hashed}\n")
        basic, basic_host = _registry("basic", work, data, {"htpasswd": {
            "realm": "basic-realm", "path": str(htpasswd)}})
        servers.append(basic)
        token_port, cert = free_port(), work / "token-cert.pem"
        token_server = _start("tokenserver", [
            sys.executable, str(HERE / "tokenserver.py"), str(token_port), str(cert),
            json.dumps({USER: PASSWORD}), str(TOKEN_LIFETIME)], work,
            f"http://127.0.0.1:{token_port}/token")
        servers.append(token_server)
        token, token_host = _registry("token", work, data, {"token": {
            "realm": f"http://127.0.0.1:{token_port}/token", "service": "test-registry",
            "issuer": "test-issuer", "rootcertbundle": str(cert)}})
        servers.append(token)
        yield Registries(plain_host, basic_host, token_host, token_server.log, TOKEN_LIFETIME,
                         servers)
    finally:
        for server in reversed(servers):
            server.stop()


@dataclass
class Images:
    layout: Path
    oracle: Path
    plain: str
    refs: dict[str, str]
    zstd_config_digest: str = ""


@pytest.fixture(scope="session")
def images(registries: Registries, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """Every test image, pushed to the shared registry storage once per session."""
    work = tmp_path_factory.mktemp("images")
    layout = kit.build_main_image(work)
    host = registries.plain
    kit.skopeo_push(layout, "1.0", f"{host}/test/img:1.0")
    kit.skopeo_push(layout, "1.0", f"{host}/test/img:1.0-docker", fmt="v2s2")
    kit.skopeo_push(layout, "1.0", f"{host}/test/img:1.1")
    kit.skopeo_push(layout, "multi", f"{host}/test/multi:1.0", all_images=True)
    kit.skopeo_push(layout, "multi", f"{host}/test/multi:1.0-docker", fmt="v2s2",
                    all_images=True)
    pusher = kit.Pusher(f"http://{host}")
    config, tars = kit.layout_layers(layout, "1.0")
    # zstd for the first two layers, a plain tar for the third; a config of its own so the
    # flat is unpacked from these blobs rather than linked to the gzip twin's flat.
    layers = [(kit.zst(tars[0]), kit.LAYER_ZSTD, tars[0]), (kit.zst(tars[1]), kit.LAYER_ZSTD,
              tars[1]), (tars[2], kit.LAYER_TAR, tars[2])]
    pusher.image("test/zstd", "1.0", layers,
                     config_extra={"author": "zstd variant", "config": config.get("config", {})})
    for tag, tar in kit.hostile_layers().items():
        pusher.image("test/hostile", tag, [(kit.gz(tar), kit.LAYER_GZIP, tar)])
    small = kit.tar_bytes([kit.member("f.txt", data=b"f\n")])
    pusher.image("test/bad", "diffid", [(kit.gz(small), kit.LAYER_GZIP, small)],
                 diff_ids=["sha256:" + "0" * 64])
    for i in range(3):
        tar = kit.tar_bytes([kit.member(f"small-{i}.txt", data=f"v{i}\n".encode())])
        pusher.image("test/small", f"v{i}", [(kit.gz(tar), kit.LAYER_GZIP, tar)],
                     config_extra={"author": f"small {i}"})
    oracle = kit.oracle(layout, "1.0", work / "oracle")
    refs = {"oci": f"{host}/test/img:1.0", "docker": f"{host}/test/img:1.0-docker",
            "zstd": f"{host}/test/zstd:1.0", "multi": f"{host}/test/multi:1.0",
            "multi-docker": f"{host}/test/multi:1.0-docker"}
    return Images(layout, oracle, host, refs)


@pytest.fixture
def make_repo(tmp_path: Path):
    """Fresh native repositories in this test's directory, as Publishers."""
    counter = iter(range(100))

    def make(name: str = FQRN) -> NativePublisher:
        base = tmp_path / f"repo{next(counter)}"
        repo = NativeRepository(LocalStorage(base / "storage"), name, keys_dir=base / "keys",
                                options=EngineOptions(cache_dir=base / "cache",
                                                      work_dir=None))
        repo.create()
        return NativePublisher(repo)

    return make
