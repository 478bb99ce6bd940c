"""The Ansible playbooks of stratum0_playbooks/, run for real and offline.

- syntax check and ``ansible-lint --offline`` (production profile) of every playbook and role;
- the native role (``cvmfs_publisher_host``) applied twice with ``connection: local`` into
  a prefix directory: the second run changes nothing, the toolkit it installed publishes to
  the repository it configured and ``verify`` passes, its units pass
  ``systemd-analyze verify`` and its re-sign unit's command works;
- the classic role (``cvmfs_stratum0``) in check mode against this machine (nothing is
  written); its file-rendering tasks (tag ``cvmfs_stratum0_files``: s3.conf, keys, server
  options, units) run for real into a prefix, twice, and compared byte for byte, together
  with its repository tasks against a recording ``cvmfs_server`` stub (mkfs once, import of
  local data left without configuration, never mkfs over a repository in the bucket);
- the commands the timers and monitoring use: ``resign --if-expiring-within`` and
  ``check-whitelist``.

Nothing is installed here: ``scripts/deps/ansible.sh`` provides ansible-core 2.19 and
ansible-lint in ``.tools/ansible-venv`` and a setuptools wheel in ``.tools/wheels``; a
missing one fails the test. The prefix venv is created from the toolkit's own interpreter,
sees the dependencies of ``.venv`` through a ``.pth`` file (role variable
``cvmfs_publisher_host_venv_shared_site_packages``) and gets the toolkit itself by
``pip install --no-deps --no-index`` of a copy of this checkout (a copy, because pip builds
in the source tree, which other runs and people use at the same time).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "stratum0_playbooks"
TOOLS = ROOT / ".tools" / "ansible-venv" / "bin"
WHEELS = ROOT / ".tools" / "wheels"
FAKE_SERVER = ROOT / "tests" / "fakes" / "cvmfs_server"
SITE_PACKAGES = sysconfig.get_path("purelib")  # .venv's: the prefix venv shares it
REPO = "sw.example.org"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   r"failed=(\d+)", re.MULTILINE)


# -- helpers ------------------------------------------------------------------------------

def ansible_env(work: Path) -> dict[str, str]:
    """The ansible venv first on PATH; every bit of Ansible state below ``work``."""
    missing = [tool for tool in ("ansible-playbook", "ansible-lint")
               if not (TOOLS / tool).is_file()]
    if missing or not list(WHEELS.glob("setuptools-*.whl")):
        pytest.fail(f"{', '.join(missing) or 'the setuptools wheel'} missing in {TOOLS.parent}"
                    f"/: run scripts/deps/ansible.sh")
    home = work / "ansible-home"
    env = {**os.environ, "HOME": str(home), "ANSIBLE_HOME": str(home / ".ansible"),
           "XDG_CACHE_HOME": str(home / ".cache"),
           "ANSIBLE_LOCAL_TEMP": str(home / ".ansible" / "tmp"),
           "ANSIBLE_REMOTE_TEMP": str(home / ".ansible" / "rtmp"),
           "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "ANSIBLE_LINT_SKIP_SCHEMA_UPDATE": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_PIPELINING": "1",
           "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CVMFS_PUBLISHER_CONFIG", None)
    return env


def inventory(work: Path, group: str, interpreter: str) -> Path:
    path = work / f"inventory-{group}.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": interpreter}}}}}}))
    return path


def play(env: dict[str, str], inventory_path: Path, playbook: str, variables: dict,
         *args: str) -> tuple[dict[str, int], str]:
    """Run a playbook with JSON extra vars (real booleans); its recap and its output."""
    extra = inventory_path.with_name(f"vars-{len(list(inventory_path.parent.glob('vars-*')))}"
                                     ".json")
    extra.write_text(json.dumps(variables))
    result = subprocess.run(
        [str(TOOLS / "ansible-playbook"), "-i", str(inventory_path), playbook,
         "-e", f"@{extra}", *args],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    _, ok, changed, unreachable, failed = RECAP.findall(output)[-1]
    counts = {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}
    return {key: int(value) for key, value in counts.items()}, output


def copy_checkout(target: Path) -> Path:
    """What pip needs to build this package, from this checkout."""
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for name in ("cvmfs_publisher", "unpacker"):
        shutil.copytree(ROOT / name, target / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def offline_install_vars(work: Path) -> dict:
    """Install the toolkit into the prefix without an index (see the module docstring)."""
    return {"cvmfs_publisher_host_package": str(copy_checkout(work / "checkout")),
            "cvmfs_publisher_host_python": sys.executable,
            "cvmfs_publisher_host_venv_shared_site_packages": [str(SITE_PACKAGES)],
            "cvmfs_publisher_host_pip_extra_args":
                f"--no-deps --no-index --find-links {WHEELS}"}


def verify_units(unit_dir: Path) -> list[str]:
    """``systemd-analyze verify`` on every unit: rc 0 and not a word of complaint."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing: run scripts/deps/ansible.sh")
    units = sorted(p.name for p in unit_dir.iterdir())
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], cwd=unit_dir,
                            env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr
    return units


def unit_command(unit: Path) -> tuple[list[str], dict[str, str]]:
    """A unit's ExecStart and Environment= settings, to run it as systemd would."""
    text = unit.read_text()
    command = shlex.split(re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)[1])
    env = dict(line.split("=", 1)
               for line in re.findall(r"^Environment=(.*)$", text, re.MULTILINE))
    return command, env


# -- syntax and lint ----------------------------------------------------------------------

@pytest.mark.parametrize("playbook", ["native-publisher.yml", "classic-stratum0.yml"])
def test_syntax_check(playbook: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TOOLS / "ansible-playbook"), "-i", "inventory.example.yml", "--syntax-check",
         playbook], cwd=PLAYBOOKS, env=ansible_env(tmp_path), capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"playbook: {playbook}" in result.stdout


def test_ansible_lint_production_profile_offline(tmp_path: Path) -> None:
    targets = ["native-publisher.yml", "classic-stratum0.yml", "inventory.example.yml",
               "roles/cvmfs_publisher_host", "roles/cvmfs_stratum0"]
    result = subprocess.run(
        [str(TOOLS / "ansible-lint"), "--offline", "--profile", "production", "-c",
         ".ansible-lint", "--nocolor", *targets], cwd=PLAYBOOKS, env=ansible_env(tmp_path),
        capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Profile 'production' was required, and it passed" in output
    processed = re.search(r"in (\d+) files processed", output)
    assert processed and int(processed[1]) >= 40, output  # both roles were really read


# -- the native role ----------------------------------------------------------------------

@dataclass
class NativeHost:
    prefix: Path
    work: Path
    runs: list[dict[str, int]]

    @property
    def toolkit(self) -> Path:
        return self.prefix / "opt/cvmfs-publisher/venv/bin/cvmfs-publisher"

    @property
    def units(self) -> Path:
        return self.prefix / "etc/systemd/system"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess:
        """The installed toolkit, in the environment its units give it."""
        command, env = unit_command(self.units / "cvmfs-publisher-resign.service")
        assert command[0] == str(self.toolkit)
        return subprocess.run([str(self.toolkit), *map(str, args)], cwd=self.work,
                              env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120)


@pytest.fixture(scope="module")
def native_host(tmp_path_factory: pytest.TempPathFactory) -> NativeHost:
    work = tmp_path_factory.mktemp("native")
    prefix = work / "prefix"
    env = ansible_env(work)
    hosts = inventory(work, "cvmfs_publishers", "/usr/bin/python3")
    variables = {
        "cvmfs_become": False, "cvmfs_publisher_host_repository": REPO,
        "cvmfs_publisher_host_prefix": str(prefix),
        "cvmfs_publisher_host_manage_user": False,
        "cvmfs_publisher_host_user": "root", "cvmfs_publisher_host_group": "root",
        "cvmfs_publisher_host_settings": {"whitelist_days": 30, "compression_level": 6},
        "cvmfs_publisher_host_watch_areas": [{"source": "/srv/drop/alice",
                                              "path": "/users/alice"}],
        "cvmfs_publisher_host_watch_options": {"quiet_period": "5s"},
        "cvmfs_publisher_host_unpack_wishlist": {
            "version": 1, "cvmfs_repo": REPO, "input": ["registry.example.org/group/app:1.2"]},
        "cvmfs_publisher_host_serve": True,
        **offline_install_vars(work),
    }
    runs = [play(env, hosts, "native-publisher.yml", variables)[0] for _ in range(2)]
    return NativeHost(prefix, work, runs)


def test_native_role_converges_then_changes_nothing(native_host: NativeHost) -> None:
    first, second = native_host.runs
    assert first["failed"] == 0 and first["changed"] >= 10
    assert (second["changed"], second["failed"], second["unreachable"]) == (0, 0, 0)


def test_native_role_writes_config_keys_and_areas(native_host: NativeHost) -> None:
    etc = native_host.prefix / "etc/cvmfs-publisher"
    config = yaml.safe_load((etc / "config.yaml").read_text())
    assert config == {"repositories": {REPO: {
        "storage": str(native_host.prefix / "srv/cvmfs"), "keys": str(etc / "keys"),
        "whitelist_days": 30, "compression_level": 6}}}
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (etc / "keys").iterdir()}
    assert modes == {f"{REPO}.masterkey": 0o600, f"{REPO}.key": 0o600,
                     f"{REPO}.crt": 0o644, f"{REPO}.pub": 0o644}
    assert stat.S_IMODE((etc / "keys").stat().st_mode) == 0o700
    assert yaml.safe_load((etc / "watch.yaml").read_text()) == {
        "quiet_period": "5s", "areas": [{"repo": REPO, "source": str(
            native_host.prefix / "srv/drop/alice"), "path": "/users/alice"}]}
    assert (native_host.prefix / "srv/drop/alice").is_dir()
    assert yaml.safe_load((etc / "wishlist.yaml").read_text())["cvmfs_repo"] == REPO
    assert not (native_host.prefix / "var/lib/cvmfs-publisher/init-config.yaml").exists()


def test_installed_toolkit_publishes_and_verifies(native_host: NativeHost) -> None:
    python = native_host.toolkit.parent / "python"
    where = subprocess.run([str(python), "-c", "import cvmfs_publisher; "
                            "print(cvmfs_publisher.__file__)"], cwd=native_host.work,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(native_host.prefix / "opt/cvmfs-publisher/venv/lib"))
    build = native_host.work / "build"
    (build / "bin").mkdir(parents=True)
    (build / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    published = native_host.run("publish", build, "--repo", REPO, "--path", "/sw/hello/1.0",
                                "--tag", "hello-1.0")
    assert published.returncode == 0, published.stderr
    verified = native_host.run("verify", "--repo", REPO)
    assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stdout
    shown = native_host.run("cat", "/sw/hello/1.0/bin/hello", "--repo", REPO)
    assert shown.stdout == "#!/bin/sh\necho hello\n"


def test_native_units_verify_and_the_resign_unit_runs(native_host: NativeHost) -> None:
    assert verify_units(native_host.units) == [
        "cvmfs-publisher-resign.service", "cvmfs-publisher-resign.timer",
        "cvmfs-publisher-serve.service", "cvmfs-publisher-unpack.service",
        "cvmfs-publisher-watch.service"]
    timer = (native_host.units / "cvmfs-publisher-resign.timer").read_text()
    assert "OnCalendar=daily\n" in timer and "Persistent=true\n" in timer
    command, env = unit_command(native_host.units / "cvmfs-publisher-resign.service")
    assert command[1:] == ["resign", "--repo", REPO, "--if-expiring-within", "14d"]
    result = subprocess.run(command, env={**os.environ, **env}, cwd=native_host.work,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "more than 14d left: not re-signed" in result.stdout
    watch, _ = unit_command(native_host.units / "cvmfs-publisher-watch.service")
    assert watch[1:] == ["watch", "--config",
                         str(native_host.prefix / "etc/cvmfs-publisher/watch.yaml")]
    unpack, _ = unit_command(native_host.units / "cvmfs-publisher-unpack.service")
    assert unpack[1:] == ["unpack", str(native_host.prefix / "etc/cvmfs-publisher/wishlist.yaml"),
                          "--repo", REPO, "--loop", "--interval", "5m"]


# -- the classic role ---------------------------------------------------------------------

CLASSIC_VARS = {
    "cvmfs_become": False, "cvmfs_stratum0_repository": REPO,
    "cvmfs_stratum0_s3_config": {"CVMFS_S3_HOST": "s3.example.org", "CVMFS_S3_PORT": 443,
                                 "CVMFS_S3_USE_HTTPS": True, "CVMFS_S3_BUCKET": "cvmfs-sw"},
    "cvmfs_stratum0_s3_access_key": "AKIAEXAMPLE", "cvmfs_stratum0_s3_secret_key": "s3cr3t",
    "cvmfs_stratum0_gc": True,
    "cvmfs_stratum0_server_options": {"CVMFS_AUTO_TAG_TIMESPAN": "2 weeks ago",
                                      "CVMFS_IGNORE_SPECIAL_FILES": True},
    # The CERN key URL is out of reach offline, and deb822_repository fetches it even in
    # check mode: any existing keyring file stands in for it.
    "cvmfs_stratum0_apt_key": "/usr/share/keyrings/debian-archive-keyring.gpg",
}


def test_classic_role_in_check_mode_changes_nothing(tmp_path: Path) -> None:
    if not Path(CLASSIC_VARS["cvmfs_stratum0_apt_key"]).is_file() or not Path(
            "/usr/bin/python3").is_file() or subprocess.run(
            ["/usr/bin/python3", "-c", "import apt, debian.deb822"],
            capture_output=True).returncode != 0:
        pytest.fail("the check-mode test needs Debian's /usr/bin/python3 with python3-apt and "
                    "python3-debian, and its archive keyring: run scripts/deps/ansible.sh")
    watched = (Path("/etc/cvmfs"), Path("/etc/apt/sources.list.d/cernvm.sources"),
               Path(f"/etc/systemd/system/cvmfs-resign-{REPO}.timer"))
    before = {p: p.exists() for p in watched}
    hosts = inventory(tmp_path, "cvmfs_stratum0", "/usr/bin/python3")
    recap, output = play(ansible_env(tmp_path), hosts, "classic-stratum0.yml", CLASSIC_VARS,
                         "--check")
    assert recap["failed"] == 0 and recap["changed"] >= 5
    tasks = dict(re.findall(r"^TASK \[cvmfs_stratum0 : (.+?)\] \**\n(\w+)", output, re.M))
    assert tasks["Add the CernVM-FS apt repository"] == "changed"
    assert tasks["Write s3.conf"] == "changed"
    assert tasks["Create the repository (cvmfs_server mkfs)"] == "changed"
    assert tasks["Write the re-sign and garbage collection units"] == "changed"
    assert {p: p.exists() for p in before} == before  # check mode wrote nothing


STUB = """#!/bin/sh
# records the call; mkfs and import write the server.conf the real ones would
echo "$*" >> {log}
case "$1" in mkfs|import)
  eval last=\\${{$#}}
  mkdir -p {prefix}/etc/cvmfs/repositories.d/$last
  printf 'CVMFS_REPOSITORY_NAME=%s\\nCVMFS_AUTO_TAG=true\\n' "$last" \\
    > {prefix}/etc/cvmfs/repositories.d/$last/server.conf;;
esac
"""


@contextlib.contextmanager
def bucket(root: Path) -> Iterator[str]:
    """An HTTP server standing in for the bucket's anonymous URL (HEAD .cvmfspublished)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cvmfs-sw"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class ClassicHost:
    work: Path
    prefix: Path
    stub: Path
    url: str
    runs: list[dict[str, int]]

    def calls(self) -> list[str]:
        return (self.work / "calls.log").read_text().splitlines()


def classic_stub(work: Path, prefix: Path) -> Path:
    stub = work / "cvmfs_server"
    stub.write_text(STUB.format(log=work / "calls.log", prefix=prefix))
    stub.chmod(0o755)
    return stub


@pytest.fixture(scope="module")
def classic_host(tmp_path_factory: pytest.TempPathFactory) -> ClassicHost:
    """The file-rendering and repository tasks, for real into a prefix, twice, with a
    cvmfs_server stub that records its calls and an empty bucket."""
    work = tmp_path_factory.mktemp("classic")
    prefix = work / "prefix"
    stub = classic_stub(work, prefix)
    env, hosts = ansible_env(work), inventory(work, "cvmfs_stratum0", "/usr/bin/python3")
    (work / "bucket").mkdir()
    with bucket(work / "bucket") as url:
        variables = {**CLASSIC_VARS, "cvmfs_stratum0_prefix": str(prefix),
                     "cvmfs_stratum0_server_command": str(stub), "cvmfs_stratum0_url": url,
                     "cvmfs_stratum0_keys": {"masterkey": "MASTER\n", "key": "KEY\n",
                                             "crt": "CRT\n", "pub": "PUB\n"}}
        runs = [play(env, hosts, "classic-stratum0.yml", variables, "--tags",
                     "cvmfs_stratum0_files,cvmfs_stratum0_repository")[0] for _ in range(2)]
    return ClassicHost(work, prefix, stub, url, runs)


def test_classic_role_is_idempotent_and_runs_mkfs_once(classic_host: ClassicHost) -> None:
    first, second = classic_host.runs
    assert first["changed"] >= 5 and second["changed"] == 0 and second["failed"] == 0
    assert classic_host.calls() == [
        f"mkfs -o root -s /etc/cvmfs/s3.conf -w {classic_host.url} -k /etc/cvmfs/keys -z -p "
        f"{REPO}"]


def test_classic_s3_conf_and_keys(classic_host: ClassicHost) -> None:
    etc = classic_host.prefix / "etc/cvmfs"
    assert (etc / "s3.conf").read_text() == (
        "# Ansible managed (role cvmfs_stratum0): S3 backend for cvmfs_server mkfs -s\n"
        "CVMFS_S3_ACCESS_KEY=AKIAEXAMPLE\n"
        "CVMFS_S3_BUCKET=cvmfs-sw\n"
        "CVMFS_S3_DNS_BUCKETS=false\n"
        "CVMFS_S3_HOST=s3.example.org\n"
        "CVMFS_S3_PORT=443\n"
        "CVMFS_S3_SECRET_KEY=s3cr3t\n"
        "CVMFS_S3_USE_HTTPS=true\n")
    s3 = (etc / "s3.conf").stat()
    assert stat.S_IMODE(s3.st_mode) == 0o640 and (s3.st_uid, s3.st_gid) == (0, 0)
    keys = {p.name: (p.read_text(), stat.S_IMODE(p.stat().st_mode))
            for p in (etc / "keys").iterdir()}
    assert keys == {f"{REPO}.masterkey": ("MASTER\n", 0o400), f"{REPO}.key": ("KEY\n", 0o400),
                    f"{REPO}.crt": ("CRT\n", 0o444), f"{REPO}.pub": ("PUB\n", 0o444)}


def test_classic_repository_options(classic_host: ClassicHost) -> None:
    """A managed block after what mkfs wrote to server.conf."""
    server_conf = classic_host.prefix / f"etc/cvmfs/repositories.d/{REPO}/server.conf"
    assert server_conf.read_text() == (
        f"CVMFS_REPOSITORY_NAME={REPO}\nCVMFS_AUTO_TAG=true\n"
        "# BEGIN cvmfs_stratum0 role options\n"
        "CVMFS_AUTO_TAG_TIMESPAN='2 weeks ago'\n"
        "CVMFS_IGNORE_SPECIAL_FILES=true\n"
        "# END cvmfs_stratum0 role options\n")


def test_classic_units(classic_host: ClassicHost) -> None:
    units = classic_host.prefix / "etc/systemd/system"
    stub = classic_host.stub
    assert verify_units(units) == [f"cvmfs-gc-{REPO}.service", f"cvmfs-gc-{REPO}.timer",
                                   f"cvmfs-resign-{REPO}.service", f"cvmfs-resign-{REPO}.timer"]
    assert (units / f"cvmfs-resign-{REPO}.service").read_text() == (
        "# Ansible managed (role cvmfs_stratum0)\n"
        "[Unit]\n"
        f"Description=CernVM-FS: re-sign the whitelist of {REPO}\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={stub} resign {REPO}\n")
    assert (units / f"cvmfs-gc-{REPO}.timer").read_text() == (
        "# Ansible managed (role cvmfs_stratum0)\n"
        "[Unit]\n"
        f"Description=CernVM-FS: garbage collection of {REPO}\n"
        "\n"
        "[Timer]\n"
        "OnCalendar=weekly\n"
        "RandomizedDelaySec=1h\n"
        "Persistent=true\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n")
    gc, _ = unit_command(units / f"cvmfs-gc-{REPO}.service")
    assert gc == [str(stub), "gc", "-f", "-r", "1", REPO]


def test_classic_imports_local_data_left_without_config(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    data = prefix / f"srv/cvmfs/{REPO}/.cvmfspublished"
    data.parent.mkdir(parents=True)
    data.write_text("C0000\n")
    stub = classic_stub(tmp_path, prefix)
    variables = {"cvmfs_become": False, "cvmfs_stratum0_repository": REPO,
                 "cvmfs_stratum0_storage": "local", "cvmfs_stratum0_prefix": str(prefix),
                 "cvmfs_stratum0_server_command": str(stub)}
    hosts = inventory(tmp_path, "cvmfs_stratum0", "/usr/bin/python3")
    play(ansible_env(tmp_path), hosts, "classic-stratum0.yml", variables, "--tags",
         "cvmfs_stratum0_repository")
    assert (tmp_path / "calls.log").read_text() == f"import -o root -k /etc/cvmfs/keys -r {REPO}\n"


def test_classic_never_replaces_a_repository_in_the_bucket(tmp_path: Path) -> None:
    """The configuration is gone but the bucket holds the repository: stop, never mkfs."""
    published = tmp_path / "bucket" / "cvmfs-sw" / REPO / ".cvmfspublished"
    published.parent.mkdir(parents=True)
    published.write_text("C0000\n")
    stub = classic_stub(tmp_path, tmp_path / "prefix")
    hosts = inventory(tmp_path, "cvmfs_stratum0", "/usr/bin/python3")
    extra = tmp_path / "vars.json"
    with bucket(tmp_path / "bucket") as url:
        extra.write_text(json.dumps({**CLASSIC_VARS, "cvmfs_stratum0_url": url,
                                     "cvmfs_stratum0_prefix": str(tmp_path / "prefix"),
                                     "cvmfs_stratum0_server_command": str(stub)}))
        result = subprocess.run(
            [str(TOOLS / "ansible-playbook"), "-i", str(hosts), "classic-stratum0.yml",
             "-e", f"@{extra}", "--tags", "cvmfs_stratum0_repository"],
            cwd=PLAYBOOKS, env=ansible_env(tmp_path), capture_output=True, text=True,
            timeout=300)
    assert result.returncode != 0
    assert f"{url}/{REPO} holds a repository" in result.stdout
    assert not (tmp_path / "calls.log").exists()


# -- what the timers and monitoring run ---------------------------------------------------

def test_resign_if_expiring_within(cli, repo: str) -> None:
    kept = cli("resign", "--repo", repo, "--if-expiring-within", "7d", "--json")
    assert kept.code == 0 and json.loads(kept.out)["resigned"] is False
    assert "not re-signed" in cli("resign", "--repo", repo, "--if-expiring-within", "7d").out
    renewed = cli("resign", "--repo", repo, "--if-expiring-within", "40d")
    assert renewed.code == 0 and "re-signed, valid until" in renewed.out
    assert cli("resign", "--repo", repo, "--if-expiring-within", "soon").code == 2


def test_check_whitelist(cli, repo: str, tmp_path: Path) -> None:
    ok = cli("check-whitelist", "--repo", repo, "--within", "7d")
    assert ok.code == 0 and ok.out.startswith(f"OK: the whitelist of {repo} is valid until")
    soon = cli("check-whitelist", "--repo", repo, "--within", "30d", "--json")
    status = json.loads(soon.out)
    assert soon.code == 1 and status["expiring"] and not status["expired"]
    assert 29 * 86400 < status["seconds_left"] <= 30 * 86400
    by_directory = cli("check-whitelist", "--repo", tmp_path / "stratum0" / repo, "--key",
                       tmp_path / "home/config/cvmfs-publisher/keys" / f"{repo}.pub")
    assert by_directory.code == 0, by_directory.err


def test_an_expired_whitelist_is_reported_and_renewed(cli, repo: str) -> None:
    from cvmfs_publisher.config import Config
    from cvmfs_publisher.repositories import open_native

    open_native(Config.load().get(repo)).resign(now=dt.datetime.now(dt.UTC)
                                                - dt.timedelta(days=40))
    expired = cli("check-whitelist", "--repo", repo)
    assert expired.code == 1 and expired.out.startswith(f"EXPIRED: the whitelist of {repo}")
    assert "re-signed" in cli("resign", "--repo", repo, "--if-expiring-within", "1d").out
    assert cli("check-whitelist", "--repo", repo).code == 0


def test_check_whitelist_of_a_classic_repository(cli, repo: str, tmp_path: Path) -> None:
    """Read as verify reads a classic repository: its storage and <keys>/<name>.pub."""
    config = tmp_path / "classic.yaml"
    config.write_text(yaml.safe_dump({"repositories": {repo: {
        "backend": "cvmfs_server", "storage": str(tmp_path / "stratum0"),
        "keys": str(tmp_path / "home/config/cvmfs-publisher/keys"),
        "command": str(FAKE_SERVER)}}}))
    result = cli("--config", config, "check-whitelist", "--repo", repo, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["repository"] == repo
