"""``bootstrap``: a few answers become an Ansible inventory, and ``ansible-playbook`` runs.

The roles in ``stratum0_playbooks/`` do the work (a native publisher host, or a classic
``cvmfs_server`` Stratum 0); this module maps what an admin knows (host, repository name,
S3 endpoint and bucket, classic or native) onto their variables, so nobody has to learn
them first, and the files it writes can be read, edited and re-run by hand.

Secrets never reach a command line: S3 credentials come from the environment or a file and
go into ``secrets.yml`` (mode 0600, created so), which ``ansible-playbook`` gets by name
(``-e @secrets.yml``); ``ansible-vault encrypt`` can protect it afterwards.
"""

from __future__ import annotations

import configparser
import getpass
import grp
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .cvmfs.names import check_fqrn
from .errors import CommandFailed, UsageError

NATIVE_GROUP, CLASSIC_GROUP = "cvmfs_publishers", "cvmfs_stratum0"
NATIVE_PLAYBOOK, CLASSIC_PLAYBOOK = "native-publisher.yml", "classic-stratum0.yml"
DEFAULT_STORAGE = "/srv/cvmfs"
SERVE_PORT = 8000
_CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str = field(repr=False)


@dataclass
class BootstrapSettings:
    """What the admin answered; ``extra_vars`` are role variables given verbatim."""

    host: str
    repository: str
    classic: bool = False
    s3_endpoint: str | None = None
    bucket: str | None = None  # BUCKET[/PREFIX]; None: local storage
    s3_region: str | None = None
    storage: str = DEFAULT_STORAGE  # the local directory when there is no bucket
    credentials: S3Credentials | None = None
    workdir: Path = Path("bootstrap")
    ssh_user: str | None = None
    become: bool | None = None  # None: not for a local run as root, else yes
    package: str | None = None
    prefix: str = ""
    extra_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.host in ("localhost", "127.0.0.1")

    @property
    def group(self) -> str:
        return CLASSIC_GROUP if self.classic else NATIVE_GROUP

    @property
    def playbook(self) -> str:
        return CLASSIC_PLAYBOOK if self.classic else NATIVE_PLAYBOOK


@dataclass(frozen=True)
class Plan:
    """The files written, and the command that applies them."""

    inventory: Path
    secrets: Path | None
    command: list[str]
    log: Path


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    steps: NextSteps | None  # None: the playbook did not run for real (--no-run, --check)


@dataclass(frozen=True)
class NextSteps:
    """What the admin needs once the host is up (all paths are on the managed host)."""

    server_url: str
    public_key: str
    master_key: str
    client_config: list[str]


def bootstrap(settings: BootstrapSettings, *, playbooks: Path | None = None,
              ansible_playbook: str | None = None, check: bool = False, run: bool = True,
              on_line: Callable[[str], None] | None = None) -> Outcome:
    """Write the inventory (and secrets), run the playbook unless ``run`` is false, and say
    what the admin needs next."""
    plan = write_plan(settings, playbooks=playbooks, ansible_playbook=ansible_playbook,
                      check=check)
    if not run:
        return Outcome(plan, None)
    run_plan(plan, on_line)
    return Outcome(plan, None if check else next_steps(settings))


def check_settings(settings: BootstrapSettings) -> None:
    """Refuse what the roles could only fail on later, with the flag to change."""
    check_fqrn(settings.repository)
    if bool(settings.bucket) != bool(settings.s3_endpoint):
        raise UsageError("give both --s3-endpoint and --bucket, or neither (local storage)")
    if settings.s3_endpoint and urlsplit(settings.s3_endpoint).scheme not in ("http", "https"):
        raise UsageError(f"--s3-endpoint {settings.s3_endpoint!r} is not an http(s) URL")
    if settings.classic and not settings.bucket and settings.storage != DEFAULT_STORAGE:
        raise UsageError(f"--classic: cvmfs_server keeps local repositories in "
                         f"{DEFAULT_STORAGE}, not {settings.storage}")
    if settings.classic and settings.bucket and "/" in settings.bucket.strip("/"):
        raise UsageError("--classic: cvmfs_server takes a bucket name without a prefix")
    if settings.classic and settings.bucket and settings.credentials is None:
        raise UsageError("--classic needs S3 credentials for s3.conf: set AWS_ACCESS_KEY_ID "
                         "and AWS_SECRET_ACCESS_KEY or give --s3-credentials-file")


def read_credentials(environ: Mapping[str, str], path: Path | None) -> S3Credentials | None:
    """The environment's ``AWS_*`` pair, else a file: an AWS credentials file (``default``
    profile) or an upstream ``s3.conf``. Never taken from a command line."""
    if path is None:
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        return S3Credentials(key, secret) if key and secret else None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    values = dict(_assignments(text))
    if "CVMFS_S3_ACCESS_KEY" in values and "CVMFS_S3_SECRET_KEY" in values:
        return S3Credentials(values["CVMFS_S3_ACCESS_KEY"], values["CVMFS_S3_SECRET_KEY"])
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        section = parser["default"]
        return S3Credentials(section["aws_access_key_id"], section["aws_secret_access_key"])
    except (configparser.Error, KeyError):
        raise UsageError(f"{path} holds neither CVMFS_S3_ACCESS_KEY/CVMFS_S3_SECRET_KEY nor a "
                         "[default] profile with aws_access_key_id/aws_secret_access_key"
                         ) from None


def _assignments(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            pairs.append((key.strip(), value.strip().strip("'\"")))
    return pairs


def role_vars(settings: BootstrapSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The role variables (inventory) and the secret ones (``secrets.yml``)."""
    role = _classic_vars(settings) if settings.classic else _native_vars(settings)
    secrets: dict[str, Any] = {}
    if settings.credentials is not None and settings.bucket:
        prefix = "cvmfs_stratum0" if settings.classic else "cvmfs_publisher_host"
        secrets = {f"{prefix}_s3_access_key": settings.credentials.access_key,
                   f"{prefix}_s3_secret_key": settings.credentials.secret_key}
    become = settings.become
    if become is None:
        become = not (settings.local and os.geteuid() == 0)
    return {"cvmfs_become": become, **role, **settings.extra_vars}, secrets


def _native_vars(settings: BootstrapSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"cvmfs_publisher_host_repository": settings.repository}
    if settings.bucket:
        result["cvmfs_publisher_host_storage"] = f"s3://{settings.bucket.strip('/')}"
        s3 = {"endpoint": settings.s3_endpoint, "region": settings.s3_region}
        result["cvmfs_publisher_host_s3"] = {k: v for k, v in s3.items() if v}
    else:
        result["cvmfs_publisher_host_storage"] = settings.storage
        result["cvmfs_publisher_host_serve"] = True  # nothing else serves a directory
    if settings.package:
        result["cvmfs_publisher_host_package"] = settings.package
    if settings.prefix:
        # A prefix is a trial or a test: no system user; the invoking user runs it all.
        result.update(cvmfs_publisher_host_prefix=settings.prefix,
                      cvmfs_publisher_host_manage_user=False,
                      cvmfs_publisher_host_user=getpass.getuser(),
                      cvmfs_publisher_host_group=grp.getgrgid(os.getgid()).gr_name)
    return result


def _classic_vars(settings: BootstrapSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"cvmfs_stratum0_repository": settings.repository}
    if settings.bucket and settings.s3_endpoint:
        url = urlsplit(settings.s3_endpoint)
        https = url.scheme == "https"
        s3: dict[str, Any] = {"CVMFS_S3_HOST": url.hostname,
                              "CVMFS_S3_PORT": url.port or (443 if https else 80),
                              "CVMFS_S3_USE_HTTPS": https,
                              "CVMFS_S3_BUCKET": settings.bucket.strip("/")}
        if settings.s3_region:
            s3["CVMFS_S3_REGION"] = settings.s3_region
        result.update(cvmfs_stratum0_storage="s3", cvmfs_stratum0_s3_config=s3)
    else:
        result["cvmfs_stratum0_storage"] = "local"
    if settings.prefix:
        result["cvmfs_stratum0_prefix"] = settings.prefix
    return result


def write_plan(settings: BootstrapSettings, *, playbooks: Path | None = None,
               ansible_playbook: str | None = None, check: bool = False) -> Plan:
    """Write ``inventory.yml`` (and ``secrets.yml`` 0600) into the work directory."""
    check_settings(settings)
    playbook = (playbooks or playbooks_dir()) / settings.playbook
    if not playbook.is_file():
        raise UsageError(f"no playbook {playbook}; give --playbooks DIR (stratum0_playbooks/ "
                         "of a cvmfs-publisher checkout)")
    variables, secrets = role_vars(settings)
    host: dict[str, Any] = {}
    if settings.local:
        host = {"ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    elif settings.ssh_user:
        host = {"ansible_user": settings.ssh_user}
    inventory = {"all": {"children": {settings.group: {
        "hosts": {settings.host: host or None}, "vars": variables}}}}
    workdir = settings.workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    inventory_path, secrets_path = workdir / "inventory.yml", workdir / "secrets.yml"
    command = [ansible_playbook or find_ansible_playbook(), "-i", str(inventory_path),
               str(playbook)]
    if secrets:
        _write(secrets_path, _yaml("S3 credentials; protect them with 'ansible-vault encrypt "
                                   "secrets.yml' (then run with --ask-vault-pass)", secrets),
               0o600)
        command += ["-e", f"@{secrets_path}"]
    if check:
        command.append("--check")
    _write(inventory_path, _yaml("written by cvmfs-publisher bootstrap; apply it again with: "
                                 + shlex.join(command), inventory), 0o644)
    return Plan(inventory_path, secrets_path if secrets else None, command,
                workdir / "ansible.log")


def _yaml(comment: str, data: Any) -> str:
    return f"# {comment}\n---\n" + yaml.safe_dump(data, sort_keys=False)


def _write(path: Path, text: str, mode: int) -> None:
    """Created with ``mode`` from the start (a secret is never readable by others), then
    renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def playbooks_dir() -> Path:
    """``stratum0_playbooks/`` of the checkout this toolkit runs from."""
    found = _CHECKOUT / "stratum0_playbooks"
    if not found.is_dir():
        raise UsageError("this installation has no stratum0_playbooks/; give --playbooks DIR "
                         "(from a cvmfs-publisher checkout)")
    return found


def find_ansible_playbook() -> str:
    """On PATH, else the checkout's own (scripts/deps/ansible.sh installs it there)."""
    found = shutil.which("ansible-playbook")
    local = _CHECKOUT / ".tools" / "ansible-venv" / "bin" / "ansible-playbook"
    if found is None and local.is_file():
        found = str(local)
    if found is None:
        raise UsageError("ansible-playbook not found: install ansible-core 2.19 "
                         "(scripts/deps/ansible.sh), put it on PATH or give --ansible-playbook")
    return found


def run_plan(plan: Plan, on_line: Callable[[str], None] | None = None) -> None:
    """Run the playbook; every output line goes to ``on_line`` and to ``plan.log``.

    ``CommandFailed`` carries the last lines when the run fails.
    """
    tail: list[str] = []
    with plan.log.open("w", encoding="utf-8") as log, subprocess.Popen(
            plan.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, cwd=plan.inventory.parent) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            tail = [*tail[-20:], line]
            if on_line is not None:
                on_line(line.rstrip("\n"))
    if process.returncode != 0:
        raise CommandFailed(plan.command, process.returncode, "".join(tail))


def next_steps(settings: BootstrapSettings) -> NextSteps:
    """Where clients read the repository, the public key they need, the master key to copy."""
    name = settings.repository
    if settings.classic:
        keys = f"{settings.prefix}/etc/cvmfs/keys"
    else:
        config_dir = settings.extra_vars.get("cvmfs_publisher_host_config_dir",
                                             "/etc/cvmfs-publisher")
        keys = f"{settings.prefix}{config_dir}/keys"
    if settings.bucket and settings.s3_endpoint:
        url = f"{settings.s3_endpoint.rstrip('/')}/{settings.bucket.strip('/')}/{name}"
    elif settings.classic:
        url = f"http://{settings.host}/cvmfs/{name}"
    else:
        url = f"http://{settings.host}:{SERVE_PORT}/cvmfs/{name}"
    lines = [f"CVMFS_SERVER_URL={url.removesuffix(name)}@fqrn@",
             f"CVMFS_PUBLIC_KEY=/etc/cvmfs/keys/{name}.pub", "CVMFS_HTTP_PROXY=DIRECT"]
    return NextSteps(url, f"{keys}/{name}.pub", f"{keys}/{name}.masterkey", lines)
