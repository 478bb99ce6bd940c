"""Repository lifecycle: init, resign, client-config, unlock."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import click

from ..config import BACKENDS, RepositoryConfig, default_keys_dir
from ..cvmfs.names import check_fqrn
from ..errors import ConfigError
from ..repositories import (
    CLASSIC,
    CLASSIC_KEYS,
    CLASSIC_STORAGE,
    open_directory_publisher,
    register_repository,
)
from .common import (
    State,
    compression_option,
    configured_repo_option,
    default_repo,
    json_option,
    pass_state,
    read_options,
    s3_flags,
    s3_mapping,
)
from .output import emit_json, stdout

log = logging.getLogger(__name__)


@click.command()
@click.argument("name")
@click.option("--storage", metavar="DIR|s3://BUCKET[/PREFIX]|URL",
              help="Stratum 0 root; the repository goes to <storage>/<name>. For "
                   "--backend cvmfs_server: where clients read it [default: /srv/cvmfs].")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Key directory [default: $XDG_CONFIG_HOME/cvmfs-publisher/keys, or "
                   "/etc/cvmfs/keys for cvmfs_server]. Existing <name>.* keys there are "
                   "reused, missing ones generated.")
@click.option("--backend", type=click.Choice(BACKENDS), default="native", show_default=True,
              help="native: this toolkit writes the repository. cvmfs_server: register a "
                   "repository that cvmfs_server on this host already serves (never mkfs).")
@click.option("--command", "server_command", metavar="CMD",
              help="cvmfs_server backend: how to call it, e.g. 'sudo -n cvmfs_server'.")
@click.option("--mount-root", metavar="DIR", help="cvmfs_server backend: where its "
              "repositories are mounted [default: /cvmfs].")
@click.option("--spool-root", metavar="DIR", help="cvmfs_server backend: its spool "
              "directory, holding <name>/rdonly [default: /var/spool/cvmfs].")
@click.option("--gateway", is_flag=True, help="cvmfs_server backend: the repository "
              "publishes through a gateway; lease only the changed subtree.")
@click.option("--owner", metavar="UID:GID", help="Publish every file with this owner.")
@compression_option
@click.option("--compression-level", type=click.IntRange(1, 9), help="zlib level [default: 6].")
@click.option("--whitelist-days", type=click.IntRange(1, 3650), help="Whitelist validity "
              "[default: 30].")
@s3_flags
@json_option
@pass_state
def init(state: State, name: str, storage: str | None, keys_dir: Path | None, backend: str,
         server_command: str | None, mount_root: str | None, spool_root: str | None,
         gateway: bool,
         owner: str | None, compression: str | None, compression_level: int | None,
         whitelist_days: int | None,
         endpoint: str | None, region: str | None, s3_options: tuple[str, ...],
         as_json: bool) -> None:
    """Create repository NAME: keys, whitelist and an empty signed revision 0.

    With --backend cvmfs_server, register an existing classic repository instead.
    """
    check_fqrn(name)
    classic = backend == CLASSIC
    settings: dict = {k: v for k, v in (
        ("backend", backend if classic else None), ("command", server_command),
        ("mount_root", mount_root), ("spool_root", spool_root), ("gateway", gateway or None),
        ("owner", owner),
        ("compression", compression), ("compression_level", compression_level),
        ("whitelist_days", whitelist_days),
    ) if v is not None}
    if not classic and (server_command or mount_root or spool_root or gateway):
        raise ConfigError("--command, --mount-root, --spool-root and --gateway apply to "
                          "--backend cvmfs_server")
    storage = storage or (CLASSIC_STORAGE if classic else None)
    if storage is None:
        raise ConfigError("give --storage DIR or s3://BUCKET[/PREFIX]")
    storage = _storage_setting(storage, settings, endpoint, region, s3_options)
    keys = (keys_dir or (CLASSIC_KEYS if classic else default_keys_dir())).expanduser()
    entry = RepositoryConfig(name, storage, keys.resolve(), settings)
    info = register_repository(state.config, entry)
    if as_json:
        emit_json(info)
        return
    if classic:
        stdout.print(f"registered {name}, published by cvmfs_server (revision "
                     f"{info['revision']}); clients need {info['public_key']}", markup=False)
    else:
        stdout.print(f"created {name} at {info['location']} (revision 0)", markup=False)
        stdout.print(f"keys in {info['keys']}; clients need {info['public_key']}", markup=False)
    stdout.print(f"next: cvmfs-publisher publish DIR --repo {name} --path /sw/pkg/1.0",
                 markup=False)


def _storage_setting(storage: str, settings: dict, endpoint: str | None, region: str | None,
                     s3_options: tuple[str, ...]) -> str:
    if storage.startswith("s3://"):
        settings["s3"] = s3_mapping(endpoint, region, s3_options)
        return storage
    if endpoint or region or s3_options:
        raise ConfigError("--endpoint, --region and --s3 only apply to s3:// storage")
    if storage.startswith(("http://", "https://")):
        return storage
    return str(Path(storage).expanduser().resolve())


@click.command()
@click.option("--repo", "-r", metavar="NAME|DIR", callback=default_repo,
              help="Repository to re-sign: a configured name, or a directory with --keys and "
                   "--fqrn [default: $CVMFS_PUBLISHER_REPO, else default_repository].")
@click.option("--keys", "keys_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Key directory holding <fqrn>.masterkey (for an unconfigured directory).")
@click.option("--fqrn", metavar="NAME", help="Repository name (for an unconfigured directory).")
@click.option("--days", type=click.IntRange(1, 3650), help="Validity [default: 30].")
@click.option("--if-expiring-within", "within", metavar="DURATION",
              help="Only re-sign when the whitelist expires within DURATION (7d, 12h, ...): "
                   "safe to run daily from a timer.")
@json_option
@pass_state
def resign(state: State, repo: str, keys_dir: Path | None, fqrn: str | None,
           days: int | None, within: str | None, as_json: bool) -> None:
    """Renew the whitelist (it expires after 30 days; run this weekly from cron)."""
    if repo in state.config.repositories or not Path(repo).is_dir():
        publisher = state.publisher(repo)  # not a directory: says what the name may be
    else:
        if keys_dir is None or fqrn is None:
            raise ConfigError(f"{repo} is not configured: give --keys and --fqrn")
        publisher = open_directory_publisher(repo, fqrn, keys_dir)
    if within is not None:
        status = _whitelist_status(state, repo, keys_dir, fqrn, within)
        if not status["expiring"]:
            if as_json:
                emit_json({**status, "resigned": False})
            else:
                stdout.print(f"whitelist of {status['repository']} valid until "
                             f"{status['expires']}, more than {within} left: not re-signed")
            return
    result = publisher.resign(days)
    expires = result.expires.isoformat() if result.expires else None
    if as_json:
        emit_json({"repository": result.fqrn, "expires": expires,
                   "fingerprints": result.fingerprints})
    elif result.expires is None:
        stdout.print(f"whitelist of {result.fqrn} re-signed", markup=False)
    else:
        stdout.print(f"whitelist of {result.fqrn} re-signed, valid until "
                     f"{result.expires:%Y-%m-%d %H:%M} UTC", markup=False)


@click.command("client-config")
@configured_repo_option
@click.option("--url", metavar="URL", help="Server URL clients use [default: the storage's "
              "public URL, else http://HOST:8000/cvmfs/<name> for 'serve'].")
@pass_state
def client_config(state: State, repo: str, url: str | None) -> None:
    """Print a CVMFS client configuration for the repository, and the public key path."""
    settings = state.publisher(repo).client_settings()
    name, pub = settings.fqrn, settings.public_key
    server = url or settings.server_url or f"http://localhost:8000/cvmfs/{name}"
    if "@fqrn@" not in server and server.endswith(f"/{name}"):
        server = server[: -len(name)] + "@fqrn@"
    stdout.print(f"# /etc/cvmfs/config.d/{name}.conf", markup=False)
    stdout.print(f"CVMFS_SERVER_URL={server}", markup=False)
    stdout.print(f"CVMFS_PUBLIC_KEY=/etc/cvmfs/keys/{name}.pub", markup=False)
    stdout.print("CVMFS_HTTP_PROXY=DIRECT  # or your site proxy", markup=False)
    stdout.print(f"# copy {pub} to /etc/cvmfs/keys/{name}.pub on every client", markup=False)


@click.command()
@configured_repo_option
@click.option("--force", is_flag=True, required=True, help="Really break the lock.")
@pass_state
def unlock(state: State, repo: str, force: bool) -> None:
    """Break a stale publish lock left by a publisher that died (S3 leases)."""
    removed = state.publisher(repo).break_lock()
    if removed is None:
        stdout.print(f"{repo} is not locked")
    else:
        process = f"pid {removed.pid} on " if removed.pid else "on "
        stdout.print(f"removed the lock of {removed.owner} ({process}{removed.host}, since "
                     f"{dt.datetime.fromtimestamp(removed.since):%Y-%m-%d %H:%M:%S})")


@click.command("check-whitelist")
@click.option("--within", default="7d", show_default=True, metavar="DURATION",
              help="Fail when the whitelist expires within this long (7d, 12h, ...).")
@read_options
@json_option
@pass_state
def check_whitelist(state: State, within: str, repo: str, keys: tuple[Path, ...],
                    fqrn: str | None, as_json: bool) -> None:
    """For monitoring: exit 1 when the whitelist expires within --within (or has expired),
    0 otherwise. Reads the repository as 'verify' does, every signature checked."""
    status = _whitelist_status(state, repo, None, fqrn, within, keys)
    if as_json:
        emit_json(status)
    else:
        name, expires = status["repository"], status["expires"]
        if status["expired"]:
            stdout.print(f"EXPIRED: the whitelist of {name} expired on {expires}")
        elif status["expiring"]:
            stdout.print(f"EXPIRING: the whitelist of {name} expires on {expires}, "
                         f"within {within}")
        else:
            stdout.print(f"OK: the whitelist of {name} is valid until {expires} "
                         f"({status['seconds_left'] // 86400} days left, more than {within})")
    if status["expiring"]:
        raise click.exceptions.Exit(1)


def _whitelist_status(state: State, repo: str, keys_dir: Path | None, fqrn: str | None,
                      within: str, keys: tuple[Path, ...] = ()) -> dict:
    """When the verified whitelist expires, and whether that is within ``within``.

    An expired whitelist fails the client's checks, so the head is read again as of the
    epoch: every signature is still checked, only the expiry is taken as a fact to report.
    """
    from ..errors import SignatureError
    from ..values import parse_duration

    threshold = parse_duration(within)
    if keys_dir is not None and fqrn and not keys:
        keys = (keys_dir.expanduser() / f"{fqrn}.pub",)
    reader = state.repository(repo, keys, fqrn)
    try:
        head = reader.head()
    except SignatureError:
        head = reader.head(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    now = dt.datetime.now(dt.UTC)
    left = head.whitelist.expires - now
    return {"repository": head.manifest.fqrn,
            "expires": f"{head.whitelist.expires:%Y-%m-%d %H:%M} UTC",
            "seconds_left": int(left.total_seconds()), "within": within,
            "expiring": left <= threshold, "expired": not head.whitelist.valid_at(now)}


COMMANDS = (init, resign, client_config, unlock, check_whitelist)
