"""One YAML file names the repositories this machine publishes to.

Location: ``--config``, else ``$CVMFS_PUBLISHER_CONFIG``, else
``$XDG_CONFIG_HOME/cvmfs-publisher/config.yaml``. ``init`` adds entries; a person can edit
it. Precedence for settings: command-line flag, then environment variable, then this file.

```yaml
repositories:
  sw.example.org:
    storage: /srv/stratum0            # Stratum 0 root: the repository is <storage>/<name>
    keys: ~/.config/cvmfs-publisher/keys
    owner: "0:0"                      # optional: map every uid/gid (like cvmfs_server ingest)
    compression_level: 6
    ttl: 240
    auto_tag: true
    chunking: true
    release_catalogs: ["/sw/*/*"]     # nested catalog per release when there is no .cvmfsdirtab
    autocatalog_max: 100000           # split catalogs above this many entries (0: never)
    autocatalog_min: 1000
    workers: 4
    whitelist_days: 30
    s3: {endpoint: http://127.0.0.1:8333, region: us-east-1}   # for s3:// storage
  sw.classic.org:                     # a classic Stratum 0 run by cvmfs_server on this host
    backend: cvmfs_server
    storage: /srv/cvmfs               # where clients read it: Stratum 0 root or URL
    keys: /etc/cvmfs/keys             # holds <name>.pub
    command: sudo -n cvmfs_server     # how to call it (default: cvmfs_server)
    mount_root: /cvmfs                # its writable union mount lives at <mount_root>/<name>
    spool_root: /var/spool/cvmfs      # its read-only mount of the published revision
    gateway: false                    # true: transactions lease only the changed subtree
```
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cvmfs.names import check_fqrn
from .engine.chunking import ChunkPolicy
from .engine.options import EngineOptions, default_cache_dir
from .entries import Owner
from .errors import ConfigError, InvalidName
from .values import to_bool, to_int

CONFIG_ENV = "CVMFS_PUBLISHER_CONFIG"
ENV_PREFIX = "CVMFS_PUBLISHER_"
INT_SETTINGS = ("compression_level", "ttl", "workers", "whitelist_days", "autocatalog_max",
                "autocatalog_min")
BOOL_SETTINGS = ("auto_tag", "chunking", "gateway")
BACKENDS = ("native", "cvmfs_server")
CLASSIC_SETTINGS = ("command", "mount_root", "spool_root", "gateway")
KNOWN = {"storage", "keys", "backend", "owner", "s3", "release_catalogs", *INT_SETTINGS,
         *BOOL_SETTINGS, *CLASSIC_SETTINGS}


def config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cvmfs-publisher"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or config_home() / "config.yaml")


def default_keys_dir() -> Path:
    return config_home() / "keys"


def cache_dir() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CACHE_DIR") or default_cache_dir())


@dataclass
class RepositoryConfig:
    name: str
    storage: str
    keys: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return str(self.settings.get("backend", "native"))

    def location(self) -> str:
        """Where the repository itself lives: ``<storage>/<name>`` as a Stratum 0 serves it.

        An s3:// or http(s):// storage already names the repository.
        """
        if self.storage.startswith(("s3://", "http://", "https://")):
            return self.storage
        return str(Path(self.storage) / self.name)

    def with_settings(self, overrides: dict[str, Any]) -> RepositoryConfig:
        """A copy with some settings replaced (command-line flags beat the file)."""
        merged = {**self.settings, **{k: v for k, v in overrides.items() if v is not None}}
        return RepositoryConfig(self.name, self.storage, self.keys, merged)

    def setting(self, key: str, default: Any = None) -> Any:
        """Environment ``CVMFS_PUBLISHER_<KEY>`` overrides the file."""
        env = os.environ.get(ENV_PREFIX + key.upper())
        if env is not None:
            return _coerce(key, env, f"${ENV_PREFIX}{key.upper()}")
        return self.settings.get(key, default)

    def engine_options(self) -> EngineOptions:
        options = EngineOptions(cache_dir=cache_dir())
        for key in ("compression_level", "ttl", "workers", "whitelist_days", "auto_tag",
                    "autocatalog_max", "autocatalog_min"):
            value = self.setting(key)
            if value is not None:
                setattr(options, key, value)
        if options.autocatalog_max == 0:
            options.autocatalog_max = None
        if self.setting("chunking") is False:
            options.chunking = None
        elif options.chunking is None:
            options.chunking = ChunkPolicy()
        patterns = self.setting("release_catalogs")
        if patterns is not None:
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"{self.name}: release_catalogs must be a list of patterns")
            options.release_catalogs = patterns
        owner = self.setting("owner")
        if owner is not None:
            options.owner = Owner.parse(str(owner))
        if not 1 <= options.compression_level <= 9:
            raise ConfigError(f"{self.name}: compression_level must be between 1 and 9")
        return options

    def as_mapping(self) -> dict[str, Any]:
        return {"storage": self.storage, "keys": str(self.keys), **self.settings}


def _coerce(key: str, value: Any, where: str) -> Any:
    if key in INT_SETTINGS:
        return to_int(value, f"{where}: {key}")
    if key in BOOL_SETTINGS:
        return to_bool(value, f"{where}: {key}")
    return value


class Config:
    def __init__(self, path: Path, repositories: dict[str, RepositoryConfig]) -> None:
        self.path = path
        self.repositories = repositories

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        path = path or default_config_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {})
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        return cls(path, _parse(path, data))

    def get(self, name: str) -> RepositoryConfig:
        try:
            return self.repositories[name]
        except KeyError:
            raise ConfigError(
                f"no repository {name!r} in {self.path}; run 'cvmfs-publisher init {name}' "
                "or give a repository directory or URL"
            ) from None

    def add(self, repo: RepositoryConfig) -> None:
        self.repositories[repo.name] = repo

    def save(self) -> None:
        """Write atomically so an interrupted ``init`` never leaves a half-written file."""
        data = {"repositories": {n: r.as_mapping() for n, r in sorted(self.repositories.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                yaml.safe_dump(data, f, sort_keys=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _parse(path: Path, data: Any) -> dict[str, RepositoryConfig]:
    if not isinstance(data, dict) or not isinstance(data.get("repositories", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'repositories' mapping")
    unknown_top = set(data) - {"repositories"}
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    result = {}
    for name, entry in (data.get("repositories") or {}).items():
        where = f"{path}: repository {name}"
        try:
            check_fqrn(str(name))
        except InvalidName as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(entry, dict) or "storage" not in entry or "keys" not in entry:
            raise ConfigError(f"{where}: needs 'storage' and 'keys'")
        unknown = set(entry) - KNOWN
        if unknown:
            raise ConfigError(f"{where}: unknown settings {sorted(unknown)}")
        if entry.get("backend", "native") not in BACKENDS:
            raise ConfigError(f"{where}: backend must be one of {', '.join(BACKENDS)}, not "
                              f"{entry.get('backend')!r}")
        settings = {k: _coerce(k, v, where) for k, v in entry.items() if k not in ("storage",
                                                                                    "keys")}
        result[str(name)] = RepositoryConfig(str(name), str(entry["storage"]),
                                             Path(os.path.expanduser(str(entry["keys"]))),
                                             settings)
    return result
