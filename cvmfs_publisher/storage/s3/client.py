"""The boto3 client, and the credentials it is given.

What botocore already does is not redone here: request signing, retries with backoff on
throttling and 5xx (``Config(retries=...)``), connection pooling. Credentials come from the
environment, an AWS profile or a credentials file named in the configuration (an AWS
shared credentials file or an upstream ``s3.conf``), never from command-line arguments.
"""

from __future__ import annotations

import configparser
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ProfileNotFound

from ...errors import ConfigError
from .settings import S3Settings

log = logging.getLogger(__name__)


def _read_cvmfs_s3_conf(path: Path) -> dict[str, str] | None:
    """The access and secret key of an upstream ``s3.conf``, or None if it is not one."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip()] = value.strip().strip("'\"")
    if "CVMFS_S3_ACCESS_KEY" not in values:
        return None
    if "CVMFS_S3_SECRET_KEY" not in values:
        raise ConfigError(f"{path} has CVMFS_S3_ACCESS_KEY but no CVMFS_S3_SECRET_KEY")
    return {"aws_access_key_id": values["CVMFS_S3_ACCESS_KEY"],
            "aws_secret_access_key": values["CVMFS_S3_SECRET_KEY"]}


def _file_credentials(settings: S3Settings) -> tuple[str | None, dict[str, str]]:
    """(AWS shared credentials file, explicit keys from an upstream ``s3.conf``)."""
    path = settings.credentials_file
    if path is None:
        return None, {}
    try:
        mode = path.stat().st_mode
        explicit = _read_cvmfs_s3_conf(path)
    except OSError as exc:
        raise ConfigError(f"cannot read S3 credentials file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IXGRP & ~stat.S_IXOTH:
        log.warning("S3 credentials file %s is accessible to other users; chmod 600 it", path)
    if explicit is None:
        _check_ini(path)
        return str(path), {}
    if settings.profile:
        raise ConfigError(f"{path} is an s3.conf file; it cannot be combined with profile:")
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return None, {}  # the environment overrides files, as everywhere in the toolkit
    return None, explicit


def _check_ini(path: Path) -> None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        raise ConfigError(f"S3 credentials file {path} is neither an AWS credentials file "
                          "nor an upstream s3.conf") from None


@dataclass(frozen=True)
class Connection:
    """The client, and what ``direct_put`` needs to sign and send as it would."""

    client: Any
    credentials: Credentials | None  # None: none found (the client's calls will say so)
    ca_bundle: str | None  # AWS_CA_BUNDLE or the profile's ca_bundle; None: botocore's


def make_client(settings: S3Settings) -> Any:
    """A thread-safe boto3 S3 client with retries, timeouts and a pool sized to parallelism."""
    return connect(settings).client


def connect(settings: S3Settings) -> Connection:
    """``make_client``, and the credentials and CA bundle the client was given."""
    shared_file, explicit = _file_credentials(settings)
    core = botocore.session.Session(profile=settings.profile)
    if shared_file:
        core.set_config_variable("credentials_file", shared_file)
    config = Config(
        region_name=settings.region or "us-east-1",
        signature_version=settings.signature_version,
        s3={"addressing_style": settings.style},
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        max_pool_connections=settings.parallelism + 4,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        request_checksum_calculation=settings.checksums,
        response_checksum_validation=settings.checksums,
        user_agent_extra="cvmfs-publisher",
        tcp_keepalive=True,
    )
    try:
        session = boto3.Session(botocore_session=core)
        client = session.client("s3", endpoint_url=settings.endpoint_url, config=config,
                                **explicit)
        credentials = (Credentials(explicit["aws_access_key_id"],
                                   explicit["aws_secret_access_key"])
                       if explicit else core.get_credentials())
        return Connection(client, credentials, core.get_config_variable("ca_bundle"))
    except ProfileNotFound:
        raise ConfigError(f"AWS profile {settings.profile!r} not found") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot set up the S3 client for {settings.endpoint}: {exc}") from None
