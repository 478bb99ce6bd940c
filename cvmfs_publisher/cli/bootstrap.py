"""``bootstrap``: set up a Stratum 0 host with the Ansible roles, asking for what is missing."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click
import yaml

from .. import bootstrap as lib
from ..errors import UsageError
from .output import stderr, stdout


@click.command()
@click.option("--host", help="Host to set up (SSH), or localhost [asked; default localhost].")
@click.option("--repo", "repository", metavar="NAME", help="Repository name [asked].")
@click.option("--s3-endpoint", metavar="URL", help="S3 endpoint, e.g. https://s3.example.org.")
@click.option("--bucket", metavar="BUCKET[/PREFIX]", help="Bucket (must exist, anonymously "
              "readable). Without --s3-endpoint/--bucket the repository is a local directory.")
@click.option("--s3-region", metavar="REGION", help="S3 region.")
@click.option("--s3-credentials-file", type=click.Path(path_type=Path, dir_okay=False),
              help="AWS credentials file or s3.conf [default: AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY from the environment]. Never on the command line.")
@click.option("--storage", metavar="DIR", help=f"Local storage directory on the host "
              f"[default: {lib.DEFAULT_STORAGE}].")
@click.option("--classic/--native", default=None, help="Upstream cvmfs_server (classic) or "
              "this toolkit (native) writes the repository [asked; default native].")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False),
              help="Where inventory.yml, secrets.yml and ansible.log go "
                   "[default: ./bootstrap-<repo>].")
@click.option("--ssh-user", metavar="USER", help="SSH user for a remote host.")
@click.option("--become/--no-become", default=None,
              help="Use sudo on the host [default: yes, except locally as root].")
@click.option("--package", metavar="SPEC|PATH", help="What the native host pip-installs "
              "[default: cvmfs-publisher from PyPI].")
@click.option("--prefix", metavar="DIR", help="Put every file on the host below DIR (a trial "
              "or a test: no system user, no systemd).")
@click.option("--set", "assignments", multiple=True, metavar="VAR=VALUE",
              help="Any role variable (VALUE is YAML), e.g. cvmfs_publisher_host_serve=false.")
@click.option("--playbooks", type=click.Path(path_type=Path, file_okay=False),
              help="The stratum0_playbooks directory [default: this checkout's].")
@click.option("--ansible-playbook", "ansible_playbook", metavar="PATH",
              help="The ansible-playbook to run [default: from PATH].")
@click.option("--check", is_flag=True, help="Run the playbook in check mode (no changes).")
@click.option("--no-run", is_flag=True, help="Only write the inventory and variables.")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Never ask: defaults for what has one, an error for the rest.")
@click.option("--quiet", "-q", is_flag=True, help="Do not echo ansible-playbook's output.")
def bootstrap(host: str | None, repository: str | None, s3_endpoint: str | None,
              bucket: str | None, s3_region: str | None, s3_credentials_file: Path | None,
              storage: str | None, classic: bool | None, workdir: Path | None,
              ssh_user: str | None, become: bool | None, package: str | None,
              prefix: str | None, assignments: tuple[str, ...], playbooks: Path | None,
              ansible_playbook: str | None, check: bool, no_run: bool, assume_yes: bool,
              quiet: bool) -> None:
    """Set up a personal Stratum 0 on HOST: write an Ansible inventory from a few answers
    and run stratum0_playbooks/ (native-publisher.yml or classic-stratum0.yml)."""
    ask = not assume_yes
    host = host or (click.prompt("Host to set up (or localhost)", default="localhost")
                    if ask else "localhost")
    if not repository:
        if not ask:
            raise UsageError("give --repo NAME (or run interactively)")
        repository = click.prompt("Repository name (e.g. sw.example.org)")
    if ask and not (bucket or s3_endpoint or storage):
        s3_endpoint = click.prompt("S3 endpoint URL (empty: a local directory)", default="",
                                   show_default=False) or None
        if s3_endpoint:
            bucket = click.prompt("Bucket[/prefix]")
        else:
            storage = click.prompt("Storage directory on the host",
                                   default=lib.DEFAULT_STORAGE)
    if classic is None:
        classic = ask and click.confirm("Upstream cvmfs_server (classic) instead of this "
                                        "toolkit (native)?", default=False)
    credentials = lib.read_credentials(os.environ, s3_credentials_file)
    if bucket and credentials is None and ask:
        credentials = lib.S3Credentials(click.prompt("S3 access key"),
                                        click.prompt("S3 secret key", hide_input=True))
    settings = lib.BootstrapSettings(
        host=host, repository=repository, classic=classic, s3_endpoint=s3_endpoint,
        bucket=bucket, s3_region=s3_region, storage=storage or lib.DEFAULT_STORAGE,
        credentials=credentials, workdir=workdir or Path(f"bootstrap-{repository}"),
        ssh_user=ssh_user, become=become, package=package, prefix=prefix or "",
        extra_vars=_assignments(assignments))
    if bucket and credentials is None:
        stderr.print("warning: no S3 credentials given; the host needs its own (instance "
                     "role, AWS profile)")
    if not no_run:
        stdout.print(f"writing {settings.workdir}/inventory.yml and running ansible-playbook "
                     f"(log: {settings.workdir}/ansible.log)")
    outcome = lib.bootstrap(settings, playbooks=playbooks, ansible_playbook=ansible_playbook,
                            check=check, run=not no_run,
                            on_line=None if quiet else stdout.print)
    plan = outcome.plan
    if no_run:
        stdout.print(f"wrote {plan.inventory}; apply it with: {shlex.join(plan.command)}")
    if plan.secrets:
        stdout.print(f"the S3 credentials are in {plan.secrets} (mode 0600); protect them "
                     f"with: ansible-vault encrypt {plan.secrets}")
    if outcome.steps is not None:
        _report(outcome.steps, settings)


def _assignments(items: tuple[str, ...]) -> dict[str, Any]:
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--set {item!r} is not VAR=VALUE")
        try:
            result[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"--set {name}: {value!r} is not a YAML value") from None
    return result


def _report(steps: lib.NextSteps, settings: lib.BootstrapSettings) -> None:
    where = "" if settings.local else f"{settings.host}:"
    name = settings.repository
    stdout.print("")
    stdout.print(f"{name} is served at {steps.server_url}")
    stdout.print(f"clients: copy {where}{steps.public_key} to /etc/cvmfs/keys/{name}.pub and "
                 f"write /etc/cvmfs/config.d/{name}.conf:")
    for line in steps.client_config:
        stdout.print(f"  {line}")
    stdout.print(f"master key: {where}{steps.master_key} signs the whitelist (the host "
                 "re-signs it on a timer). Keep an offline copy (an encrypted USB stick, a "
                 "password manager or a safe): without it, every client needs a new public "
                 "key.")
    if not settings.classic:
        stdout.print(f"publish: cvmfs-publisher publish DIR --repo {name} --path /sw/pkg/1.0 "
                     "(on the host, as its service user)")


COMMANDS = (bootstrap,)
