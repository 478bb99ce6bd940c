"""The configuration is checked in full when it loads: one line per problem, nothing done.

Every test runs the real CLI. A refused configuration must name the file, the repository,
the key and what is allowed, and leave the repository, its directories and its keys as
they were.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import yaml
from fixturedata import FIXTURE_NAME

from cvmfs_publisher.config import Config, RepositoryConfig
from cvmfs_publisher.engine.options import EngineOptions

NAME = "sw.example.org"


def config_file(home: Path) -> Path:
    return home / "config" / "cvmfs-publisher" / "config.yaml"


def set_settings(home: Path, **settings: object) -> Path:
    """The ``repo`` fixture's entry with ``settings`` replaced; returns the file."""
    path = config_file(home)
    data = yaml.safe_load(path.read_text())
    data["repositories"][NAME].update(settings)
    path.write_text(yaml.safe_dump(data))
    return path


def head(tmp_path: Path) -> bytes:
    storage = tmp_path / "stratum0" / NAME
    return (storage / ".cvmfspublished").read_bytes() + (storage / ".cvmfswhitelist").read_bytes()


@pytest.fixture
def content(tmp_path: Path) -> Path:
    src = tmp_path / "content"
    src.mkdir()
    (src / "hello").write_text("hello\n")
    return src


def refused(result, message: str) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 1, result
    assert result.err == f"error: {message}\n"


# -- values against the schema -----------------------------------------------------------------

BAD_VALUES = [
    ("workers", -3, "workers must be an integer from 1 to 1024, not -3"),
    ("workers", [1, 2], "workers must be an integer from 1 to 1024, not [1, 2]"),
    ("workers", True, "workers must be an integer from 1 to 1024, not True"),
    ("workers", 2.5, "workers must be an integer from 1 to 1024, not 2.5"),
    ("workers", 10**30, "workers must be an integer from 1 to 1024, not "
                        "1000000000000000000000000000000"),
    ("ttl", -5, "ttl must be an integer from 1 to 86400, not -5"),
    ("ttl", 0, "ttl must be an integer from 1 to 86400, not 0"),
    ("whitelist_days", -1, "whitelist_days must be an integer from 1 to 3650, not -1"),
    ("whitelist_days", 0, "whitelist_days must be an integer from 1 to 3650, not 0"),
    ("compression_level", 0, "compression_level must be an integer from 1 to 9, not 0"),
    ("compression_level", "high", "compression_level must be an integer from 1 to 9, "
                                  "not 'high'"),
    ("autocatalog_max", -1, "autocatalog_max must be an integer from 0 to 10000000, not -1"),
    ("autocatalog_min", 0, "autocatalog_min must be an integer from 1 to 10000000, not 0"),
    ("autocatalog_max", 500, "autocatalog_max must be 0 or at least autocatalog_min (1000), "
                             "not 500"),
    ("auto_tag", "maybe", "auto_tag must be true or false, not 'maybe'"),
    ("chunking", [True], "chunking must be true or false, not [True]"),
    ("keys", True, "keys must be a directory path, not True"),
    ("keys", "/tmp/a\0b", "keys must be a directory path without NUL or other control "
                          "characters, not '/tmp/a\\x00b'"),
    ("storage", ["/srv"], "storage must be a directory path, s3://BUCKET[/PREFIX] or an "
                          "http(s):// URL, not ['/srv']"),
    ("storage", "htps://host/x", "storage must be a directory path, s3://BUCKET[/PREFIX] or "
                                 "an http(s):// URL, not 'htps://host/x'"),
    ("storage", "s3:/bucket", "storage must be a directory path, s3://BUCKET[/PREFIX] or an "
                              "http(s):// URL, not 's3:/bucket'"),
    ("storage", "", "storage must be a directory path, s3://BUCKET[/PREFIX] or an "
                    "http(s):// URL, not ''"),
    ("owner", 61, 'owner must be UID:GID, two numbers (quoted in YAML: "0:0"), not 61'),
    ("owner", "root:root", 'owner must be UID:GID, two numbers (quoted in YAML: "0:0"), '
                           "not 'root:root'"),
    ("release_catalogs", "/sw/*/*", 'release_catalogs must be a list of absolute path '
                                    'patterns such as ["/sw/*/*"], not \'/sw/*/*\''),
    ("backend", "cvmfs-server", "backend must be one of native, cvmfs_server, "
                                "not 'cvmfs-server'"),
    ("command", "cvmfs_server", "command applies to the cvmfs_server backend only, and this "
                                "repository's backend is native"),
    ("s3", {"region": "x"}, "s3 applies to s3:// storage only, not to "),
    ("wrokers", 4, "unknown setting 'wrokers' (did you mean 'workers'?)"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD_VALUES,
                         ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD_VALUES])
def test_a_bad_setting_is_one_line_and_publishes_nothing(cli, repo: str, tmp_path: Path,
                                                         isolated_home: Path, content: Path,
                                                         key: str, value: object,
                                                         message: str) -> None:
    path = set_settings(isolated_home, **{key: value})
    before = head(tmp_path)
    result = cli("publish", content, "--repo", repo, "--path", "/sw/x")
    assert result.code == 1 and result.err.count("\n") == 1, result
    assert result.err.startswith(f"error: {path}: repository {NAME}: {message}")
    assert head(tmp_path) == before


def test_negative_whitelist_days_never_resign(cli, repo: str, tmp_path: Path,
                                             isolated_home: Path) -> None:
    """The whitelist would be signed to expire in the past, and the command exit 0."""
    path = set_settings(isolated_home, whitelist_days=-1)
    before = head(tmp_path)
    refused(cli("resign", "--repo", repo), f"{path}: repository {NAME}: whitelist_days must be "
            "an integer from 1 to 3650, not -1")
    assert head(tmp_path) == before
    result = cli("--config", tmp_path / "none.yaml", "resign", "--repo",
                 tmp_path / "stratum0" / NAME, "--keys", config_file(isolated_home).parent /
                 "keys", "--fqrn", NAME, "--days", "-1")
    assert result.code == 2 and "-1 is not in the range 1<=x<=3650" in result.err
    assert head(tmp_path) == before


def test_settings_of_the_other_backend_are_refused(cli, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"repositories:\n  {NAME}:\n    backend: cvmfs_server\n"
                      f"    storage: /srv/cvmfs\n    keys: /etc/cvmfs/keys\n    ttl: 240\n")
    refused(cli("--config", config, "ls", "--repo", NAME),
            f"{config}: repository {NAME}: ttl applies to the native backend only, and this "
            "repository's backend is cvmfs_server")


# -- the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("CVMFS_PUBLISHER_WORKERS", "-3", "workers must be an integer from 1 to 1024, not '-3'"),
    ("CVMFS_PUBLISHER_TTL", "forever", "ttl must be an integer from 1 to 86400, not 'forever'"),
    ("CVMFS_PUBLISHER_AUTO_TAG", "perhaps", "auto_tag must be true or false, not 'perhaps'"),
    ("CVMFS_PUBLISHER_WHITELIST_DAYS", "0", "whitelist_days must be an integer from 1 to 3650, "
                                            "not '0'"),
])
def test_environment_overrides_go_through_the_schema(cli, repo: str, tmp_path: Path,
                                                     content: Path, monkeypatch, variable: str,
                                                     value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    before = head(tmp_path)
    refused(cli("publish", content, "--repo", repo, "--path", "/sw/x"),
            f"environment variable {variable}: {message}")
    refused(cli("resign", "--repo", repo), f"environment variable {variable}: {message}")
    assert head(tmp_path) == before


def test_environment_and_file_are_checked_together(cli, repo: str, isolated_home: Path,
                                                   monkeypatch) -> None:
    path = set_settings(isolated_home, autocatalog_min=5000)
    monkeypatch.setenv("CVMFS_PUBLISHER_AUTOCATALOG_MAX", "2000")
    refused(cli("ls", "--repo", repo), f"{path}: repository {NAME}: autocatalog_max must be 0 "
            "or at least autocatalog_min (5000), not 2000")


def test_a_good_environment_override_is_used(cli, repo: str, tmp_path: Path,
                                             monkeypatch) -> None:
    monkeypatch.setenv("CVMFS_PUBLISHER_WHITELIST_DAYS", "3")
    result = cli("resign", "--repo", repo, "--json")
    assert result.code == 0, result.err
    expires = yaml.safe_load(result.out)["expires"]
    assert expires.startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86400)))


# -- the file itself ---------------------------------------------------------------------------

LAUGHS = "    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
DAMAGED = {
    "not-utf8": (b"repositories:\n  sw.example.org:\n    storage: /srv\xff\n",
                 "{path}: not UTF-8 text (byte 0xff at offset 49)"),
    "syntax": (b"repositories:\n  sw.example.org: [\n",
               "{path}:3: not valid YAML (expected the node content, but found '<stream end>')"),
    "deep": (b"repositories:\n  sw.example.org:\n    release_catalogs: " + b"[" * 5000
             + b"]" * 5000, "{path}:3: not valid YAML (nested deeper than 16 levels)"),
    "billion-laughs": (("repositories:\n  sw.example.org:\n" + LAUGHS).encode(),
                       "{path}:8: not valid YAML (aliases expand it to more than 100000 values)"),
    "recursive-alias": (b"repositories:\n  sw.example.org: &a\n    storage: *a\n",
                        "{path}:2: not valid YAML (an alias refers to a value containing "
                        "itself)"),
    "duplicate-key": (b"repositories:\n  sw.example.org:\n    workers: 1\n    workers: 2\n",
                      "{path}:4: not valid YAML (duplicate key 'workers')"),
    "control-char": (b"repositories:\n  sw.example.org:\n    workers: \x07\n",
                     "{path}:3: not valid YAML (character '\\x07' is not allowed)"),
    "huge": (b"# padding\n" * 120_000, "{path}: larger than 1 MiB; is it the right file?"),
    "top-list": (b"- sw.example.org\n", "{path}: the top level must be a mapping with a "
                                        "'repositories' key, not ['sw.example.org']"),
    "top-typo": (b"repository:\n  sw.example.org: {}\n", "{path}: unknown top-level key "
                                                        "'repository' (did you mean "
                                                        "'repositories'?)"),
    "repositories-list": (b"repositories: [sw.example.org]\n",
                          "{path}: repositories must be a mapping of repository names to "
                          "settings, not ['sw.example.org']"),
    "entry-scalar": (b"repositories:\n  sw.example.org: /srv\n",
                     "{path}: repository sw.example.org: expected a mapping of settings "
                     "(storage, keys, ...), not '/srv'"),
    "no-keys": (b"repositories:\n  sw.example.org: {storage: /srv}\n",
                "{path}: repository sw.example.org: keys is required (a directory path)"),
    "backend": (b"repositories:\n  sw.example.org: {storage: /srv, keys: /k, backend: x}\n",
                "{path}: repository sw.example.org: backend must be one of native, "
                "cvmfs_server, not 'x'"),
    "name-number": (b"repositories:\n  1: {storage: /srv, keys: /k}\n",
                    "{path}: repository names must be text, not 1"),
}


@pytest.mark.parametrize(("text", "message"), DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_file_is_one_line(cli, tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    started = time.monotonic()
    refused(cli("--config", path, "ls", "--repo", NAME), message.format(path=path))
    assert time.monotonic() - started < 2


def test_an_s3_mapping_is_checked_when_the_file_loads(cli, tmp_path: Path) -> None:
    """The s3 repository is not even the one asked for: the whole file is checked."""
    path = tmp_path / "config.yaml"
    path.write_text("repositories:\n"
                    f"  {NAME}: {{storage: {tmp_path}, keys: {tmp_path}/keys}}\n"
                    "  s3.example.org:\n    storage: s3://bucket/prefix\n    keys: /k\n"
                    "    s3: {endpoint: 'http://127.0.0.1:1', paralelism: 4}\n")
    refused(cli("--config", path, "ls", "--repo", NAME),
            f"{path}: repository s3.example.org: s3: unknown s3 setting 'paralelism' (did you "
            "mean 'parallelism'?)")
    path.write_text(path.read_text().replace("paralelism: 4", "parallelism: 0"))
    refused(cli("--config", path, "ls", "--repo", NAME),
            f"{path}: repository s3.example.org: s3: parallelism must be at least 1, not 0")
    path.write_text(path.read_text().replace("s3://bucket/prefix", "s3://b/p"))
    refused(cli("--config", path, "ls", "--repo", NAME),
            f"{path}: repository s3.example.org: storage: invalid S3 bucket name 'b' in "
            "'s3://b/p'")


# -- nothing done before the check -------------------------------------------------------------


def test_a_mistyped_storage_url_creates_no_directory(cli, repo: str, tmp_path: Path,
                                                     isolated_home: Path, content: Path,
                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    set_settings(isolated_home, storage="htps://host/stratum0")
    assert cli("publish", content, "--repo", repo, "--path", "/sw/x").code == 1
    result = cli("--config", tmp_path / "new.yaml", "init", "sw.other.org", "--storage",
                 "htps://host/other")
    assert result.code == 1 and "storage must be a directory path" in result.err
    assert not (tmp_path / "htps:").exists()
    assert not (tmp_path / "new.yaml").exists()


def test_init_refuses_bad_s3_settings_before_writing_anything(cli, tmp_path: Path,
                                                             isolated_home: Path) -> None:
    result = cli("init", NAME, "--storage", "s3://bucket/p", "--endpoint", "http://127.0.0.1:1",
                 "--s3", "parallelism=many")
    refused(result, f"repository {NAME}: s3: parallelism must be an integer, at least 1, "
            "not 'many'")
    assert not config_file(isolated_home).exists()
    assert not (config_file(isolated_home).parent / "keys").exists()


@pytest.mark.parametrize("command", ["init", "replicate"])
@pytest.mark.parametrize(("flag", "message"), [
    ("region", "--s3 'region' is not KEY=VALUE"),
    ("=x", "--s3 '=x' is not KEY=VALUE"),
    ("secret_access_key=x", "S3 credentials never go on the command line: use the "
                            "environment, an AWS profile or credentials_file"),
    ("Access_Key_Id=x", "S3 credentials never go on the command line: use the environment, "
                        "an AWS profile or credentials_file"),
])
def test_s3_flags_refuse_credentials_and_malformed_items(cli, isolated_home: Path,
                                                         fixture_dir: Path, command: str,
                                                         flag: str, message: str) -> None:
    """``init`` and ``replicate`` read --s3 the same way, before touching anything."""
    args = {"init": ("init", NAME, "--storage", "s3://bucket/p"),
            "replicate": ("replicate", fixture_dir / "storage", "--fqrn", FIXTURE_NAME,
                          "--key", fixture_dir / "keys" / f"{FIXTURE_NAME}.pub",
                          "--to", "s3://bucket/replica")}[command]
    result = cli(*args, "--s3", flag)
    assert (result.code, result.err, result.out) == (2, f"error: {message}\n", "")
    assert not config_file(isolated_home).exists()


def test_a_bad_owner_flag_is_refused_before_publishing(cli, repo: str, tmp_path: Path,
                                                       content: Path) -> None:
    before = head(tmp_path)
    refused(cli("publish", content, "--repo", repo, "--path", "/sw/x", "--owner", "-1:0"),
            f'repository {NAME}: --owner must be UID:GID, two numbers (quoted in YAML: "0:0"), '
            "not '-1:0'")
    assert head(tmp_path) == before


# -- what is accepted --------------------------------------------------------------------------


def every_setting(tmp_path: Path) -> dict:
    """A configuration with every setting of every backend and every s3 setting."""
    return {"repositories": {
        NAME: {"storage": str(tmp_path / "stratum0"), "keys": str(tmp_path / "keys"),
               "backend": "native", "owner": "0:0", "compression_level": 6, "ttl": 240,
               "auto_tag": True, "chunking": True, "release_catalogs": ["/sw/*/*", "!/sw/x"],
               "autocatalog_max": 100000, "autocatalog_min": 1000, "workers": 4,
               "whitelist_days": 30},
        "classic.example.org": {
            "backend": "cvmfs_server", "storage": "http://127.0.0.1:1/cvmfs/classic.example.org",
            "keys": str(tmp_path / "keys"), "command": "sudo -n cvmfs_server",
            "mount_root": "/cvmfs", "spool_root": "/var/spool/cvmfs", "gateway": False,
            "owner": "0:0", "release_catalogs": ["/sw/*/*"]},
        "s3.example.org": {
            "storage": "s3://bucket/prefix", "keys": str(tmp_path / "keys"), "workers": 16,
            "s3": {"endpoint": "http://127.0.0.1:1", "region": "us-east-1",
                   "addressing_style": "path", "profile": "cvmfs",
                   "credentials_file": str(tmp_path / "s3.conf"), "acl": "public-read",
                   "public_url": "https://cdn.example.org", "parallelism": 16,
                   "retry_mode": "standard", "max_attempts": 5, "connect_timeout": 10,
                   "read_timeout": 60, "multipart_threshold": 33554432,
                   "multipart_chunksize": 16777216, "lease_seconds": 60,
                   "conditional_writes": True, "signature_version": "s3v4",
                   "checksums": "when_supported"}},
    }}


def test_every_setting_loads_and_saves_back(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(every_setting(tmp_path)))
    loaded = Config.load(path)
    again = tmp_path / "again.yaml"
    Config(again, loaded.repositories).save()
    assert Config.load(again).repositories == loaded.repositories
    assert loaded.repositories[NAME].engine_options().ttl == 240
    assert yaml.safe_load(again.read_text()) == every_setting(tmp_path)


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("repositories:\n"
                    f"  a.example.org: &base {{storage: {tmp_path}, keys: {tmp_path}/k, "
                    "workers: 2}\n"
                    "  b.example.org: {<<: *base, workers: 3}\n")
    repos = Config.load(path).repositories
    assert (repos["a.example.org"].settings, repos["b.example.org"].settings) == (
        {"workers": 2}, {"workers": 3})


@pytest.mark.parametrize("knobs", [{"ttl": -240}, {"whitelist_days": 0}, {"workers": 0},
                                   {"compression_level": 10},
                                   {"autocatalog_max": 10, "autocatalog_min": 20}])
def test_engine_options_refuse_what_no_repository_should_be_signed_with(knobs: dict) -> None:
    """Library callers that skip the configuration meet the same limits."""
    with pytest.raises(ValueError, match="must"):
        EngineOptions(**knobs)


def test_an_added_repository_is_checked_like_a_loaded_one(tmp_path: Path) -> None:
    config = Config(tmp_path / "c.yaml", {})
    with pytest.raises(Exception, match="ttl must be an integer from 1 to 86400, not -1"):
        config.add(RepositoryConfig(NAME, str(tmp_path), tmp_path, {"ttl": -1}))
    assert not os.path.exists(config.path) and config.repositories == {}


# -- fuzz --------------------------------------------------------------------------------------

WEIRD = [-1, 0, 2**63, 10**100, -(10**100), 1.5, float("nan"), float("inf"), True, False, None,
         "", " ", "\x00", "é", "\U0001f642", [], {}, [1, [2, [3]]], {"a": {"b": None}}, "yes",
         "1:1", "s3://", "http://", "htps:x", "..", "~", "-1", "0x10", "1e3", "1_000",
         "[red]x[/]", "\u202e", "a" * 5000]
WEIRD_KEYS = [1, 2.5, True, None, "", "é", "\u202e", "1:1", "..", "a" * 100, "<<"]
SNIPPETS = ["&a [*a]", "[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000,
            "9" * 5000, "-99999999999", "2026-13-45", "!!python/object:os.system x",
            "!!binary ====", '"\\ud800"', '"\\0"', "*nowhere", "&x", "? [a]\n: 1",
            "\n" + LAUGHS.replace("    ", "")]


def _mappings(data: dict) -> list[dict]:
    """Every mapping of the configuration that holds settings."""
    found = [data]
    for value in data.values():
        if isinstance(value, dict):
            found += _mappings(value)
    return found


def _mutate_structure(data: dict, rng) -> None:  # type: ignore[no-untyped-def]
    target = rng.choice(_mappings(data))
    if not target:
        return
    key = rng.choice(list(target))
    action = rng.randrange(4)
    if action == 0:
        del target[key]
    elif action == 1:
        target[key] = rng.choice(WEIRD)
    elif action == 2:
        target[f"{key}{rng.choice('s_x')}"] = target[key]
    else:
        target[rng.choice(WEIRD_KEYS) if rng.random() < 0.3 else str(key)[::-1]] = target.pop(key)


def _mutate_text(text: bytes, rng) -> bytes:  # type: ignore[no-untyped-def]
    lines = text.split(b"\n")
    at = rng.randrange(len(text) + 1)
    action = rng.randrange(8)
    if action == 0:  # random characters, never '/': a path must stay relative to the sandbox
        chars = "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0x7f, 0xa0),
                                        rng.randrange(0xa0, 0xd800),
                                        rng.randrange(0x10000, 0x110000)]))
                        for _ in range(rng.randint(1, 4)))
        return text[:at] + chars.encode() + text[at:]
    if action == 1:
        noise = bytes(b for b in rng.randbytes(rng.randint(1, 8)) if b != ord("/"))
        return text[:at] + noise + text[at:]
    if action == 2:
        return text[:at]
    if action == 3:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif action == 4:
        del lines[rng.randrange(len(lines))]
    elif action == 5:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif action == 6:
        i = rng.randrange(len(lines))
        head_, _, _ = lines[i].partition(b": ")
        lines[i] = head_ + b": " + rng.choice(SNIPPETS).encode()
    else:
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace(b" ", b"", 1) if rng.random() < 0.5 else b"  " + lines[i]
    return b"\n".join(lines)


def mutate(base: dict, rng) -> bytes:  # type: ignore[no-untyped-def]
    """Settings changed (2 in 5), the file damaged (1 in 5), or both."""
    data = yaml.safe_load(yaml.safe_dump(base))
    roll = rng.randrange(5)
    for _ in range(rng.randint(1, 3) if roll != 2 else 0):
        _mutate_structure(data, rng)
    text = yaml.safe_dump(data, allow_unicode=True, width=1000).encode("utf-8", "surrogatepass")
    for _ in range(rng.randint(1, 2) if roll >= 2 else 0):
        text = _mutate_text(text, rng)
    return text


def environment(rng) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Now and then an override, good or bad, of a setting the environment may set."""
    if rng.random() > 0.1:
        return {}
    name = rng.choice(["WORKERS", "TTL", "WHITELIST_DAYS", "AUTO_TAG", "CHUNKING", "OWNER",
                       "COMPRESSION_LEVEL", "AUTOCATALOG_MAX", "AUTOCATALOG_MIN", "COMMAND"])
    value = rng.choice([v for v in WEIRD if not isinstance(v, list | dict)] + ["4", "yes"])
    return {f"CVMFS_PUBLISHER_{name}": str(value).replace("\0", "")}


def directories(root: Path, skip: Path) -> set[Path]:
    return {Path(d) for d, _, _ in os.walk(root) if not Path(d).is_relative_to(skip)}


def test_config_fuzz_never_tracebacks_nor_creates_directories(cli, tmp_path: Path,
                                                              isolated_home: Path,
                                                              content: Path,
                                                              monkeypatch) -> None:
    """500 random mutations of a configuration with every setting, through ``ls``/``publish``.

    Paths in it are relative to a sandbox directory, and mutations never insert '/', so
    whatever a mutation makes of them stays inside ``tmp_path``.
    """
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)
    config = tmp_path / "fuzz.yaml"
    assert cli("--config", config, "init", NAME, "--storage", sandbox / "stratum0", "--keys",
               sandbox / "keys").code == 0
    base = every_setting(Path("."))
    base["repositories"][NAME].update(storage="stratum0", keys="keys")
    config.write_text(yaml.safe_dump(base))
    commands = [("ls", "--repo", NAME), ("publish", content, "--repo", NAME, "--path", "/sw/f")]
    for command in commands:
        assert cli("--config", config, *command).code == 0
    rng = random.Random(20261124)
    before = directories(tmp_path, isolated_home / "cache")
    failed = 0
    for case in range(500):
        text, env = mutate(base, rng), environment(rng)
        config.write_bytes(text)
        command = commands[case % 3 == 0]
        with monkeypatch.context() as patch:
            for variable, value in env.items():
                patch.setenv(variable, value)
            try:
                result = cli("--config", config, *command)
            except Exception as exc:  # main() lets through only what is a bug
                pytest.fail(f"case {case}: {type(exc).__name__}: {exc}; {env} {text[:2000]!r}")
        assert "Traceback" not in result.err and result.code in (0, 1, 2), (case, result, env, text)
        assert result.code == 0 or result.err.count("\n") == 1, (case, result)
        now = directories(tmp_path, isolated_home / "cache")
        if result.code:
            failed += 1
            assert now == before, (case, result, sorted(map(str, now - before)), text)
        before = now
    assert 100 < failed < 480  # both valid and invalid mutations were tried
