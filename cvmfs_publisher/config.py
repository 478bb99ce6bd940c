"""One YAML file names the repositories this machine publishes to.

Location: ``--config``, else ``$CVMFS_PUBLISHER_CONFIG``, else
``$XDG_CONFIG_HOME/cvmfs-publisher/config.yaml``. ``init`` adds entries; a person can edit
it. Precedence for settings: command-line flag, then environment variable, then this file.

```yaml
default_repository: sw.example.org    # optional: what --repo means when it is not given
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

``default_repository`` (or ``$CVMFS_PUBLISHER_REPO``, which wins) names the repository
commands use without ``--repo``; it must be one of ``repositories``.

``SETTINGS`` is the schema: every key, its kind and range, the backends it applies to and
whether ``CVMFS_PUBLISHER_<KEY>`` overrides it (the ``s3:`` mapping has its own table in
``storage/s3/settings.py``). The whole file and the environment are checked when the
configuration loads, before any command has created a directory, a key or an object;
each problem is one line naming the file, the repository, the key and what is allowed.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .cvmfs.compression import PRESETS
from .cvmfs.dirtab import Dirtab
from .cvmfs.names import check_fqrn
from .engine.options import LIMITS, EngineOptions, default_cache_dir
from .entries import Owner
from .errors import ConfigError, InvalidName, UsageError
from .values import (
    MAX_YAML_BYTES,
    AnyMapping,
    Choice,
    Flag,
    Integer,
    Invalid,
    PathText,
    Setting,
    checked_text,
    is_http_url,
    load_yaml,
    shown,
    unknown_key,
)

CONFIG_ENV = "CVMFS_PUBLISHER_CONFIG"
REPO_ENV = "CVMFS_PUBLISHER_REPO"
ENV_PREFIX = "CVMFS_PUBLISHER_"
NATIVE, CLASSIC = "native", "cvmfs_server"
BACKENDS = (NATIVE, CLASSIC)
TOP_LEVEL = ("repositories", "default_repository")
REQUIRED = ("storage", "keys")
MAX_ID = 2**32 - 2  # uid and gid: (uid_t)-1 means "no change" to the kernel
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_OWNER = re.compile(r"([0-9]{1,10}):([0-9]{1,10})")


@dataclass(frozen=True)
class StorageLocation:
    """A Stratum 0 directory or a supported URL; a mistyped URL is not taken for a directory.

    ``htps://host/x`` would otherwise become the directories ``htps:/host/x`` (``init``
    makes a relative path absolute, so a component ``htps:`` is refused too).
    """

    expected: str = "a directory path, s3://BUCKET[/PREFIX] or an http(s):// URL"

    def parse(self, value: Any) -> str:
        text = checked_text(value, self.expected)
        if text.startswith(("http://", "https://")):
            if not is_http_url(text):
                raise Invalid(self.expected)
        elif not text.startswith("s3://") and (
                _SCHEME.match(text) or any(_SCHEME.fullmatch(p) for p in text.split("/"))):
            raise Invalid(self.expected)
        return text


@dataclass(frozen=True)
class OwnerText:
    """``UID:GID``; YAML reads an unquoted ``1:1`` as the number 61, hence the hint."""

    expected: str = 'UID:GID, two numbers (quoted in YAML: "0:0")'

    def parse(self, value: Any) -> str:
        found = _OWNER.fullmatch(value.strip()) if isinstance(value, str) else None
        if found is None or max(int(found[1]), int(found[2])) > MAX_ID:
            raise Invalid(self.expected)
        return value.strip()


@dataclass(frozen=True)
class Patterns:
    """``.cvmfsdirtab`` lines as a list, checked by the same parser."""

    expected: str = 'a list of absolute path patterns such as ["/sw/*/*"]'

    def parse(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise Invalid(self.expected)
        patterns = [checked_text(item, self.expected) for item in value]
        try:
            Dirtab.from_patterns(patterns)
        except UsageError as exc:
            raise Invalid(f"{self.expected} ({exc})") from None
        return patterns


@dataclass(frozen=True)
class CommandLine:
    expected: str = "a command such as 'sudo -n cvmfs_server'"

    def parse(self, value: Any) -> str:
        text = checked_text(value, self.expected)
        try:
            words = shlex.split(text)
        except ValueError:  # an unbalanced quote
            raise Invalid(self.expected) from None
        if not words:
            raise Invalid(self.expected)
        return text


_NATIVE = (NATIVE,)
_CLASSIC = (CLASSIC,)

SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("storage", StorageLocation(), "Stratum 0 root (the repository is <storage>/<name>), "
            "s3://BUCKET[/PREFIX], or the repository's http(s) URL"),
    Setting("keys", PathText("a directory path"),
            "key directory: <name>.masterkey, .pub, .key, .crt"),
    Setting("backend", Choice(BACKENDS), "native: this toolkit writes the repository; "
            "cvmfs_server: cvmfs_server on this host does"),
    Setting("owner", OwnerText(), "owner given to every published entry", env=True),
    Setting("release_catalogs", Patterns(),
            "directories that become nested catalogs when there is no /.cvmfsdirtab"),
    Setting("s3", AnyMapping(), "how to reach the bucket of s3:// storage (docs/s3.md)"),
    Setting("compression", Choice(PRESETS), "how objects are deflated: "
            "zlib (upstream's bytes), balanced (libdeflate, the default) or fast (ISA-L)",
            _NATIVE, env=True),
    Setting("compression_level", Integer(*LIMITS["compression_level"]),
            "zlib level of stored objects", _NATIVE, env=True),
    Setting("ttl", Integer(*LIMITS["ttl"]), "seconds clients may cache the manifest",
            _NATIVE, env=True),
    Setting("workers", Integer(*LIMITS["workers"]), "threads compressing and storing objects",
            _NATIVE, env=True),
    Setting("whitelist_days", Integer(*LIMITS["whitelist_days"]),
            "days a new or re-signed whitelist is valid", _NATIVE, env=True),
    Setting("auto_tag", Flag(), "tag untagged revisions generic-<time>, as upstream",
            _NATIVE, env=True),
    Setting("chunking", Flag(), "store large files in chunks", _NATIVE, env=True),
    Setting("autocatalog_max", Integer(0, LIMITS["autocatalog_max"][1]),
            "split catalogs above this many entries (0: never)", _NATIVE, env=True),
    Setting("autocatalog_min", Integer(*LIMITS["autocatalog_min"]),
            "fewest entries a catalog split off gets", _NATIVE, env=True),
    Setting("max_object_size", Integer(*LIMITS["max_object_size"]),
            "the most bytes any object of a repository read may inflate to", _NATIVE,
            env=True),
    Setting("command", CommandLine(), "how to call cvmfs_server", _CLASSIC, env=True),
    Setting("mount_root", PathText("a directory path"),
            "where cvmfs_server mounts <name> writable", _CLASSIC, env=True),
    Setting("spool_root", PathText("a directory path"),
            "cvmfs_server's spool, holding <name>/rdonly", _CLASSIC, env=True),
    Setting("gateway", Flag(), "transactions lease only the changed subtree", _CLASSIC,
            env=True),
    Setting("trust", PathText("a directory path"), "release trust policy: which GPG keys "
            "may publish under which paths [default: <config dir>/trust/<name>]", env=True),
)}
ENGINE_SETTINGS = ("compression", "compression_level", "ttl", "workers", "whitelist_days",
                   "auto_tag",
                   "chunking", "autocatalog_max", "autocatalog_min", "release_catalogs",
                   "owner", "max_object_size")


def config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cvmfs-publisher"


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or config_home() / "config.yaml")


def default_keys_dir() -> Path:
    return config_home() / "keys"


def cache_dir() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CACHE_DIR") or default_cache_dir())


def environment_value(setting: Setting) -> Any:
    """``CVMFS_PUBLISHER_<KEY>`` checked like the file's value, or None when unset."""
    variable = ENV_PREFIX + setting.name.upper()
    text = os.environ.get(variable)
    return None if text is None else setting.check(text, f"environment variable {variable}")


def check_environment() -> None:
    """Every override in the environment, so a bad one fails before anything happens."""
    for setting in SETTINGS.values():
        if setting.env:
            environment_value(setting)


@dataclass
class RepositoryConfig:
    name: str
    storage: str
    keys: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return str(self.settings.get("backend", NATIVE))

    def location(self) -> str:
        """Where the repository itself lives: ``<storage>/<name>`` as a Stratum 0 serves it.

        An s3:// or http(s):// storage already names the repository.
        """
        if self.storage.startswith(("s3://", "http://", "https://")):
            return self.storage
        return str(Path(self.storage) / self.name)

    def with_settings(self, overrides: dict[str, Any]) -> RepositoryConfig:
        """A copy with some settings replaced (command-line flags beat the file)."""
        checked = {key: SETTINGS[key].check(value, f"repository {self.name}",
                                            f"--{key.replace('_', '-')}")
                   for key, value in overrides.items() if value is not None}
        return RepositoryConfig(self.name, self.storage, self.keys, {**self.settings, **checked})

    def setting(self, key: str, default: Any = None) -> Any:
        """Environment ``CVMFS_PUBLISHER_<KEY>`` overrides the file, where ``SETTINGS`` allows."""
        spec = SETTINGS.get(key)
        overridden = environment_value(spec) if spec is not None and spec.env else None
        if overridden is not None:
            return overridden
        return self.settings.get(key, default)

    def engine_options(self) -> EngineOptions:
        values = {key: self.setting(key) for key in ENGINE_SETTINGS}
        values = {key: value for key, value in values.items() if value is not None}
        if values.get("autocatalog_max") == 0:
            values["autocatalog_max"] = None
        if values.get("chunking", True):
            from .engine.chunking import ChunkPolicy

            values["chunking"] = ChunkPolicy()
        else:
            values["chunking"] = None
        if "owner" in values:
            values["owner"] = Owner.parse(values["owner"])
        return EngineOptions(cache_dir=cache_dir(), **values)

    def as_mapping(self) -> dict[str, Any]:
        return {"storage": self.storage, "keys": str(self.keys), **self.settings}


class Config:
    def __init__(self, path: Path, repositories: dict[str, RepositoryConfig],
                 default_repository: str | None = None) -> None:
        self.path = path
        self.repositories = repositories
        self.default_repository = default_repository

    @classmethod
    def load(cls, path: Path | None = None, *, must_exist: bool = False) -> Config:
        """The file (none yet: no repositories) and the environment, checked in full.

        ``must_exist``: the file was named on purpose (``--config``, the environment) and
        its absence is a mistake to report, not an empty configuration.
        """
        path = path or default_config_path()
        check_environment()
        data = _read(path)
        if data is None:
            if must_exist:
                raise ConfigError(f"config file {path} does not exist (create it with "
                                  "'cvmfs-publisher --config FILE init NAME --storage DIR')")
            return cls(path, {})
        loaded = load_yaml(data, str(path))
        repositories = parse_config(loaded, str(path))
        return cls(path, repositories, parse_default(loaded, repositories, str(path)))

    def default_name(self) -> str | None:
        """``$CVMFS_PUBLISHER_REPO``, else ``default_repository``, else None."""
        return os.environ.get(REPO_ENV) or self.default_repository

    def close_names(self, name: str) -> list[str]:
        """Configured names a mistyped ``name`` may have meant, closest first."""
        return close_names(name, self.repositories)

    def get(self, name: str) -> RepositoryConfig:
        try:
            return self.repositories[name]
        except KeyError:
            raise ConfigError(self.missing(name)) from None

    def missing(self, name: str) -> str:
        """Why ``name`` is not a configured repository, and what to do instead."""
        text = f"no repository {name!r} in {self.path}"
        close = self.close_names(name)
        if close:
            return f"{text}; did you mean {' or '.join(repr(n) for n in close)}?"
        if self.repositories:
            text += f" (configured: {', '.join(sorted(self.repositories))})"
        try:
            check_fqrn(name)
        except InvalidName:
            return text
        return f"{text}; create it with 'cvmfs-publisher init {name} --storage DIR'"

    def add(self, repo: RepositoryConfig) -> None:
        """Record ``repo`` once it passes the checks a loaded entry passes (``init``)."""
        self.repositories[repo.name] = check_repository(repo.name, repo.as_mapping(), None)

    def save(self) -> None:
        """Write atomically so an interrupted ``init`` never leaves a half-written file."""
        data: dict[str, Any] = {}
        if self.default_repository is not None:
            data["default_repository"] = self.default_repository
        data["repositories"] = {n: r.as_mapping() for n, r in sorted(self.repositories.items())}
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


def _read(path: Path) -> bytes | None:
    """The file's bytes (one more than a config may have, so ``load_yaml`` can refuse it)."""
    try:
        with path.open("rb") as f:
            return f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def close_names(name: str, known: Iterable[str]) -> list[str]:
    """Names ``name`` may be a typo of: at most two letters added, dropped, changed or
    swapped; closest first."""
    scored = sorted((typo_distance(name, candidate), candidate) for candidate in known)
    return [candidate for distance, candidate in scored if distance <= 2][:3]


def typo_distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap of neighbours) from ``a`` to ``b``."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x != y))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def parse_default(data: Any, repositories: dict[str, RepositoryConfig], where: str
                  ) -> str | None:
    """``default_repository``: the name of one of ``repositories``, or absent."""
    if not isinstance(data, dict) or data.get("default_repository") is None:
        return None
    name = data["default_repository"]
    if not isinstance(name, str) or name not in repositories:
        close = close_names(str(name), repositories)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(repositories)) or "none"
        raise ConfigError(f"{where}: default_repository {shown(name)} is not one of the "
                          f"configured repositories ({known}){hint}")
    return name


def parse_config(data: Any, where: str) -> dict[str, RepositoryConfig]:
    """The ``repositories`` mapping of a loaded file, every entry checked."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping with a 'repositories' "
                          f"key, not {shown(data)}")
    for key in data:
        if key not in TOP_LEVEL:
            raise unknown_key(where, "top-level key", key, TOP_LEVEL)
    entries = data.get("repositories")
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{where}: repositories must be a mapping of repository names to "
                          f"settings, not {shown(entries)}")
    return {str(name): check_repository(name, entry, where) for name, entry in entries.items()}


def check_repository(name: Any, entry: Any, where: str | None) -> RepositoryConfig:
    """One repository's entry against ``SETTINGS``; ``where`` is the file, if any."""
    here = f"{where}: repository" if where else "repository"
    if not isinstance(name, str):
        raise ConfigError(f"{here} names must be text, not {shown(name)}")
    try:
        check_fqrn(name)
    except InvalidName as exc:
        raise ConfigError(f"{here} {shown(name)}: {exc}") from None
    here = f"{here} {name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{here}: expected a mapping of settings (storage, keys, ...), "
                          f"not {shown(entry)}")
    for key in entry:
        if key not in SETTINGS:
            raise unknown_key(here, "setting", key, SETTINGS)
    for key in REQUIRED:
        if key not in entry:
            raise ConfigError(f"{here}: {key} is required ({SETTINGS[key].kind.expected})")
    values = {key: SETTINGS[key].check(value, here) for key, value in entry.items()}
    _check_backend(values, here)
    _check_storage(values, here)
    storage, keys = values.pop("storage"), values.pop("keys")
    repo = RepositoryConfig(name, storage, Path(os.path.expanduser(keys)), values)
    if repo.backend == NATIVE:
        _check_catalog_sizes(repo, here)
    return repo


def _check_backend(values: dict[str, Any], here: str) -> None:
    """Each setting applies to the repository's backend (``ttl`` means nothing classic)."""
    backend = values.get("backend", NATIVE)
    for key in values:
        backends = SETTINGS[key].backends
        if backends and backend not in backends:
            raise ConfigError(f"{here}: {key} applies to the {' and '.join(backends)} backend "
                              f"only, and this repository's backend is {backend}")


def _check_storage(values: dict[str, Any], here: str) -> None:
    """An s3:// storage with its ``s3:`` mapping (that table's rules); no mapping elsewhere."""
    storage, s3 = values["storage"], values.get("s3")
    if storage.startswith("s3://"):
        from .storage.factory import check_s3_settings

        try:
            check_s3_settings(storage, s3, f"{here}: s3")
        except UsageError as exc:
            raise ConfigError(f"{here}: storage: {exc}") from None
    elif s3 is not None:
        raise ConfigError(f"{here}: s3 applies to s3:// storage only, not to {shown(storage)}")


def _check_catalog_sizes(repo: RepositoryConfig, here: str) -> None:
    """A split must leave catalogs below the maximum: ``autocatalog_max`` 0 or >= the minimum."""
    high = repo.setting("autocatalog_max", EngineOptions.autocatalog_max)
    low = repo.setting("autocatalog_min", EngineOptions.autocatalog_min)
    if high and high < low:
        raise ConfigError(f"{here}: autocatalog_max must be 0 or at least autocatalog_min "
                          f"({low}), not {high}")
