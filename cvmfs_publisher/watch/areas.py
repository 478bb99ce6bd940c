"""Which drop areas publish where: from command-line options or a ``watch.yaml``.

```yaml
quiet_period: 5s          # optional, like the command-line options
max_delay: 1m
areas:
  - source: /srv/drop/alice
    repo: sw.example.org
    path: /users/alice    # the only repository path this area may publish under
    quota_bytes: 10737418240
    quota_files: 100000
  - source: s3://drop-bucket/bob
    endpoint: https://s3.example.org
    repo: sw.example.org
    path: /users/bob
```
Grants of one repository may not nest (one area's publish would replace the other's
content), and no area is granted the root.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..cvmfs.names import is_within, normalize_path
from ..errors import ConfigError, UsageError
from ..publisher import Publisher
from .area import AreaSync, Grant
from .bucket import BucketSource
from .folder import FolderSource
from .runner import WatchSettings

S3_KEYS = ("endpoint", "region", "profile")
AREA_KEYS = {"source", "repo", "path", "quota_bytes", "quota_files", "poll", *S3_KEYS}
TOP_KEYS = {"areas", "quiet_period", "max_delay", "rescan", "poll_interval"}


@dataclass
class AreaSpec:
    source: str
    repo: str
    path: str
    quota_bytes: int | None = None
    quota_files: int | None = None
    poll: bool = False
    s3: dict[str, str] = field(default_factory=dict)

    def open(self, publisher: Publisher) -> AreaSync:
        if self.source.startswith("s3://"):
            source: Any = BucketSource(self.source, self.s3)
        else:
            root = Path(self.source).expanduser()
            if not root.is_dir():
                raise UsageError(f"drop area {root} is not a directory")
            source = FolderSource(root, polling=self.poll)
        grant = Grant(self.repo, normalize_path(self.path), self.quota_bytes, self.quota_files)
        return AreaSync(source, grant, publisher)


def check_grants(specs: list[AreaSpec]) -> None:
    for i, a in enumerate(specs):
        if not normalize_path(a.path):
            raise UsageError(f"area {a.source}: a drop area cannot be granted the root")
        for b in specs[i + 1:]:
            pa, pb = normalize_path(a.path), normalize_path(b.path)
            if a.repo == b.repo and (is_within(pa, pb) or is_within(pb, pa)):
                raise UsageError(f"areas {a.source} and {b.source} are granted nested paths "
                                 f"{pa} and {pb} of {a.repo}")


def load_areas(path: Path, duration: Callable[[str], float]
               ) -> tuple[WatchSettings, list[AreaSpec]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the watch configuration ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("areas"), list):
        raise ConfigError(f"{path}: expected a mapping with a list 'areas'")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    settings = WatchSettings()
    for key, attribute in (("quiet_period", "quiet"), ("max_delay", "max_delay"),
                           ("rescan", "rescan"), ("poll_interval", "poll_interval")):
        if key in data:
            setattr(settings, attribute, duration(str(data[key])))
    specs = [_area(path, i, item) for i, item in enumerate(data["areas"], 1)]
    check_grants(specs)
    return settings, specs


def _area(path: Path, number: int, item: Any) -> AreaSpec:
    where = f"{path}: area {number}"
    if not isinstance(item, dict) or not {"source", "repo", "path"} <= set(item):
        raise ConfigError(f"{where}: needs 'source', 'repo' and 'path'")
    unknown = set(item) - AREA_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    quotas = {}
    for key in ("quota_bytes", "quota_files"):
        value = item.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise ConfigError(f"{where}: {key} must be a whole number >= 0, not {value!r}")
        quotas[key] = value
    return AreaSpec(str(item["source"]), str(item["repo"]), str(item["path"]),
                    quotas["quota_bytes"], quotas["quota_files"], bool(item.get("poll", False)),
                    {k: str(item[k]) for k in S3_KEYS if k in item})
