"""``cvmfs-publisher bootstrap``: answers in, inventory and secrets out, playbook run.

The end-to-end test runs it non-interactively against localhost into a prefix and then
publishes with the toolkit the playbook installed there. Like tests/test_stratum0_playbooks.py
it installs nothing: ansible-core comes from .tools/ansible-venv (scripts/deps/ansible.sh),
and the prefix venv reuses the dependencies of .venv (see that module's docstring).
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from s3.s3kit import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer

from cvmfs_publisher.cli import cli

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools" / "ansible-venv" / "bin"
WHEELS = ROOT / ".tools" / "wheels"
REPO = "sw.example.org"


def inventory_vars(workdir: Path) -> dict:
    data = yaml.safe_load((workdir / "inventory.yml").read_text())
    (group,) = data["all"]["children"].values()
    return group["vars"]


def test_no_run_keeps_secrets_in_a_private_file(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    result = CliRunner().invoke(cli, [
        "bootstrap", "--yes", "--no-run", "--host", "s0.example.org", "--ssh-user", "admin",
        "--repo", REPO, "--s3-endpoint", "https://s3.example.org", "--bucket", "cvmfs-sw",
        "--workdir", str(workdir), "--ansible-playbook", "ansible-playbook"],
        env={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    assert result.exit_code == 0, result.output
    assert "s3cr3t-value" not in result.output
    secrets = workdir / "secrets.yml"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert yaml.safe_load(secrets.read_text()) == {
        "cvmfs_publisher_host_s3_access_key": "AKIAEXAMPLE",
        "cvmfs_publisher_host_s3_secret_key": "s3cr3t-value"}
    inventory = (workdir / "inventory.yml").read_text()
    assert "s3cr3t" not in inventory
    command = shlex.split(result.output.split("apply it with: ", 1)[1].splitlines()[0])
    assert command[-2:] == ["-e", f"@{secrets}"] and "s3cr3t-value" not in command
    hosts = yaml.safe_load(inventory)["all"]["children"]["cvmfs_publishers"]["hosts"]
    assert hosts == {"s0.example.org": {"ansible_user": "admin"}}
    assert inventory_vars(workdir) == {
        "cvmfs_become": True, "cvmfs_publisher_host_repository": REPO,
        "cvmfs_publisher_host_storage": "s3://cvmfs-sw",
        "cvmfs_publisher_host_s3": {"endpoint": "https://s3.example.org"}}


def test_questions_for_a_classic_stratum0(tmp_path: Path) -> None:
    """Answers typed at the prompts; credentials from an upstream s3.conf."""
    s3_conf = tmp_path / "s3.conf"
    s3_conf.write_text("CVMFS_S3_ACCESS_KEY=AKIAFILE\nCVMFS_S3_SECRET_KEY=file-secret\n")
    workdir = tmp_path / "work"
    result = CliRunner().invoke(cli, [
        "bootstrap", "--no-run", "--workdir", str(workdir), "--s3-credentials-file",
        str(s3_conf), "--ansible-playbook", "ansible-playbook"],
        input="s0.example.org\nsw.example.org\nhttp://minio.example.org:9000\ncvmfs-sw\ny\n",
        env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert result.exit_code == 0, result.output
    assert "classic-stratum0.yml" in result.output
    assert inventory_vars(workdir) == {
        "cvmfs_become": True, "cvmfs_stratum0_repository": REPO,
        "cvmfs_stratum0_storage": "s3",
        "cvmfs_stratum0_s3_config": {"CVMFS_S3_HOST": "minio.example.org",
                                     "CVMFS_S3_PORT": 9000, "CVMFS_S3_USE_HTTPS": False,
                                     "CVMFS_S3_BUCKET": "cvmfs-sw"}}
    assert yaml.safe_load((workdir / "secrets.yml").read_text())[
        "cvmfs_stratum0_s3_secret_key"] == "file-secret"


@pytest.mark.parametrize("args,message", [
    ([], "give --repo NAME"),
    (["--repo", "Not A Name"], "Not A Name"),
    (["--repo", REPO, "--bucket", "b"], "give both --s3-endpoint and --bucket"),
    (["--repo", REPO, "--classic", "--s3-endpoint", "https://s3.example.org", "--bucket",
      "b"], "--classic needs S3 credentials"),
    (["--repo", REPO, "--set", "no value"], "is not VAR=VALUE"),
    (["--repo", REPO, "--classic", "--storage", "/data"], "keeps local repositories in"),
])
def test_refuses_what_the_roles_would_fail_on(args: list[str], message: str,
                                             tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bootstrap", "--yes", "--no-run", "--workdir",
                                      str(tmp_path), *args],
                                env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert result.exit_code != 0
    assert message in str(result.exception) + result.output


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path / "seaweedfs")
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_bootstrap_makes_a_working_native_publisher_host(tmp_path: Path,
                                                         seaweed: SeaweedServer) -> None:
    """Non-interactive, localhost, into a prefix, with the repository in a real S3 bucket
    (SeaweedFS). The credentials reach the host only through secrets.yml and the 0600
    credentials file the role writes: the environment has none."""
    if not (TOOLS / "ansible-playbook").is_file() or not list(WHEELS.glob("setuptools-*")):
        pytest.fail(f"ansible-playbook or the setuptools wheel missing in {TOOLS.parent}/: "
                    "run scripts/deps/ansible.sh")
    checkout = tmp_path / "checkout"  # pip builds in the source tree: build a copy
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    for name in ("cvmfs_publisher", "unpacker"):
        shutil.copytree(ROOT / name, checkout / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                           f"aws_secret_access_key = {SECRET_KEY}\n")
    prefix, workdir, home = tmp_path / "prefix", tmp_path / "work", tmp_path / "ansible-home"
    aws = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_SESSION_TOKEN")
    base = {k: v for k, v in os.environ.items() if k not in aws}
    env = {**base, "AWS_EC2_METADATA_DISABLED": "true",
           "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(home), "ANSIBLE_HOME": str(home / ".ansible"),
           "ANSIBLE_LOCAL_TEMP": str(home / ".ansible/tmp"),
           "ANSIBLE_REMOTE_TEMP": str(home / ".ansible/rtmp"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_PIPELINING": "1"}
    shared = sysconfig.get_path("purelib")
    result = subprocess.run([
        sys.executable, "-m", "cvmfs_publisher.cli", "bootstrap", "--yes", "--host",
        "localhost", "--repo", REPO, "--s3-endpoint", seaweed.endpoint, "--bucket",
        f"{BUCKET}/boot", "--s3-region", "us-east-1", "--s3-credentials-file",
        str(credentials), "--prefix", str(prefix), "--workdir", str(workdir),
        "--package", str(checkout),
        "--set", f"cvmfs_publisher_host_python={sys.executable}",
        "--set", f"cvmfs_publisher_host_venv_shared_site_packages=[{shared}]",
        "--set", f"cvmfs_publisher_host_pip_extra_args=--no-deps --no-index --find-links "
                 f"{WHEELS}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    out = result.stdout
    assert SECRET_KEY not in out and SECRET_KEY not in (workdir / "inventory.yml").read_text()
    keys = prefix / "etc/cvmfs-publisher/keys"
    url = f"{seaweed.endpoint}/{BUCKET}/boot/{REPO}"
    assert f"{REPO} is served at {url}\n" in out
    assert f"clients: copy {keys}/{REPO}.pub to /etc/cvmfs/keys/{REPO}.pub" in out
    assert f"  CVMFS_SERVER_URL={seaweed.endpoint}/{BUCKET}/boot/@fqrn@\n" in out
    assert f"master key: {keys}/{REPO}.masterkey" in out and "offline copy" in out
    assert "failed=0" in (workdir / "ansible.log").read_text()
    assert stat.S_IMODE((keys / f"{REPO}.masterkey").stat().st_mode) == 0o600
    assert stat.S_IMODE((prefix / "etc/cvmfs-publisher/s3-credentials").stat().st_mode) == 0o600

    toolkit = prefix / "opt/cvmfs-publisher/venv/bin/cvmfs-publisher"
    run_env = {**base, "AWS_EC2_METADATA_DISABLED": "true",
               "CVMFS_PUBLISHER_CONFIG": str(prefix / "etc/cvmfs-publisher/config.yaml"),
               "XDG_CACHE_HOME": str(prefix / "var/lib/cvmfs-publisher/cache")}
    content = tmp_path / "content"
    content.mkdir()
    (content / "README").write_text("hello\n")
    for args in (["publish", str(content), "--repo", REPO, "--path", "/sw/demo/1.0"],
                 ["verify", "--repo", REPO],
                 ["verify", "--repo", url, "--key", str(keys / f"{REPO}.pub")],  # as clients
                 ["check-whitelist", "--repo", REPO, "--within", "7d"]):
        step = subprocess.run([str(toolkit), *args], env=run_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert step.returncode == 0, (args, step.stdout, step.stderr)
