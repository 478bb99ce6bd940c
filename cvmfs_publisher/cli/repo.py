"""Repository lifecycle: init, resign, client-config, unlock."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import click

from ..config import RepositoryConfig, default_keys_dir
from ..cvmfs.names import check_fqrn
from ..engine import key_files
from ..errors import ConfigError, RepositoryExists
from ..repositories import open_configured
from .common import State, json_option, pass_state
from .output import emit_json, stdout

log = logging.getLogger(__name__)


@click.command()
@click.argument("name")
@click.option("--storage", required=True, metavar="DIR|s3://BUCKET[/PREFIX]",
              help="Stratum 0 root; the repository goes to <storage>/<name>.")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Key directory [default: $XDG_CONFIG_HOME/cvmfs-publisher/keys]. Existing "
                   "<name>.* keys there are reused, missing ones generated.")
@click.option("--owner", metavar="UID:GID", help="Publish every file with this owner.")
@click.option("--compression-level", type=click.IntRange(1, 9), help="zlib level [default: 6].")
@click.option("--whitelist-days", type=click.IntRange(1, 3650), help="Whitelist validity "
              "[default: 30].")
@click.option("--endpoint", metavar="URL", help="S3 endpoint URL (for s3:// storage).")
@click.option("--region", metavar="REGION", help="S3 region (for s3:// storage).")
@click.option("--s3", "s3_options", multiple=True, metavar="KEY=VALUE",
              help="Any other S3 setting of docs/s3.md (profile, credentials_file, acl, "
                   "public_url, ...); never secrets: those come from the environment or files.")
@json_option
@pass_state
def init(state: State, name: str, storage: str, keys_dir: Path | None, owner: str | None,
         compression_level: int | None, whitelist_days: int | None, endpoint: str | None,
         region: str | None, s3_options: tuple[str, ...], as_json: bool) -> None:
    """Create repository NAME: keys, whitelist and an empty signed revision 0."""
    check_fqrn(name)
    config = state.config
    settings: dict = {k: v for k, v in (("owner", owner), ("compression_level",
                      compression_level), ("whitelist_days", whitelist_days)) if v is not None}
    if storage.startswith("s3://"):
        settings["s3"] = {k: v for k, v in (("endpoint", endpoint), ("region", region)) if v}
        settings["s3"].update(_key_values(s3_options))
    elif endpoint or region or s3_options:
        raise ConfigError("--endpoint, --region and --s3 only apply to s3:// storage")
    else:
        storage = str(Path(storage).expanduser().resolve())
    keys = (keys_dir or default_keys_dir()).expanduser().resolve()
    entry = RepositoryConfig(name, storage, keys, settings)
    existing = config.repositories.get(name)
    if existing is not None and (existing.storage, existing.keys) != (storage, keys):
        raise RepositoryExists(f"{name} is already configured in {config.path} with storage "
                               f"{existing.storage}; remove it there first")
    config.add(entry)
    config.save()
    repository = open_configured(entry)
    _check_s3_locking(repository)
    manifest = repository.create()
    pub = key_files.key_paths(keys, name)["pub"]
    info = {"repository": name, "location": repository.storage.location,
            "revision": manifest.revision, "keys": str(keys), "public_key": str(pub),
            "config": str(config.path)}
    if as_json:
        emit_json(info)
        return
    stdout.print(f"created {name} at {info['location']} (revision 0)")
    stdout.print(f"keys in {keys}; clients need {pub}")
    stdout.print("next: cvmfs-publisher publish DIR --repo "
                 f"{name} --path /sw/pkg/1.0")


def _key_values(items: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--s3 {item!r} is not KEY=VALUE")
        if "secret" in key.lower() or "access_key" in key.lower():
            raise ConfigError("S3 credentials never go on the command line: use the "
                              "environment, an AWS profile or credentials_file")
        result[key] = value
    return result


def _check_s3_locking(repository) -> None:  # type: ignore[no-untyped-def]
    """Publish leases need conditional writes; say so at once on servers that ignore them."""
    from ..storage.s3 import S3Storage, probe_conditional_writes

    if isinstance(repository.storage, S3Storage):
        support = probe_conditional_writes(repository.storage)
        if not support.ok:
            log.warning("%s; see docs/s3.md", support.describe())


@click.command()
@click.option("--repo", "-r", required=True, metavar="NAME|DIR", help="Repository to re-sign.")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Key directory holding <fqrn>.masterkey (for an unconfigured directory).")
@click.option("--fqrn", metavar="NAME", help="Repository name (for an unconfigured directory).")
@click.option("--days", type=click.IntRange(1, 3650), help="Validity [default: 30].")
@json_option
@pass_state
def resign(state: State, repo: str, keys_dir: Path | None, fqrn: str | None,
           days: int | None, as_json: bool) -> None:
    """Renew the whitelist (it expires after 30 days; run this weekly from cron)."""
    if repo in state.config.repositories:
        repository = state.configured(repo)
    else:
        if keys_dir is None or fqrn is None:
            raise ConfigError(f"{repo} is not configured: give --keys and --fqrn")
        repository = state.repository(repo, fqrn=check_fqrn(fqrn))
        repository.storage.read_only = False
        repository.keys_dir = keys_dir
    whitelist = repository.resign(days)
    info = {"repository": repository.fqrn, "expires": whitelist.expires.isoformat(),
            "fingerprints": [fp.fingerprint() for fp in whitelist.fingerprints]}
    if as_json:
        emit_json(info)
    else:
        stdout.print(f"whitelist of {repository.fqrn} re-signed, valid until "
                     f"{whitelist.expires:%Y-%m-%d %H:%M} UTC")


@click.command("client-config")
@click.option("--repo", "-r", required=True, metavar="NAME", help="Configured repository.")
@click.option("--url", metavar="URL", help="Server URL clients use [default: the storage's "
              "public URL, else http://HOST:8000/cvmfs/<name> for 'serve'].")
@pass_state
def client_config(state: State, repo: str, url: str | None) -> None:
    """Print a CVMFS client configuration for the repository, and the public key path."""
    repository = state.configured(repo)
    name = repository.fqrn
    assert name is not None and repository.keys_dir is not None
    server = url or repository.storage.public_url() or f"http://localhost:8000/cvmfs/{name}"
    if "@fqrn@" not in server and server.endswith(f"/{name}"):
        server = server[: -len(name)] + "@fqrn@"
    pub = key_files.key_paths(repository.keys_dir, name)["pub"]
    stdout.print(f"# /etc/cvmfs/config.d/{name}.conf", markup=False)
    stdout.print(f"CVMFS_SERVER_URL={server}", markup=False)
    stdout.print(f"CVMFS_PUBLIC_KEY=/etc/cvmfs/keys/{name}.pub", markup=False)
    stdout.print("CVMFS_HTTP_PROXY=DIRECT  # or your site proxy", markup=False)
    stdout.print(f"# copy {pub} to /etc/cvmfs/keys/{name}.pub on every client", markup=False)


@click.command()
@click.option("--repo", "-r", required=True, metavar="NAME", help="Configured repository.")
@click.option("--force", is_flag=True, required=True, help="Really break the lock.")
@pass_state
def unlock(state: State, repo: str, force: bool) -> None:
    """Break a stale publish lock left by a publisher that died (S3 leases)."""
    repository = state.configured(repo)
    removed = repository.storage.break_lock()
    if removed is None:
        stdout.print(f"{repo} is not locked")
    else:
        stdout.print(f"removed the lock of {removed.owner} (pid {removed.pid} on {removed.host}, "
                     f"since {dt.datetime.fromtimestamp(removed.since):%Y-%m-%d %H:%M:%S})")


COMMANDS = (init, resign, client_config, unlock)
