"""Replicas (Stratum 1): ``replicate`` and ``replica-gc`` through the CLI.

Sources are the upstream fixture and repositories published with our CLI (nested
catalogs, a chunked file, hard links, tags), read from a directory or over loopback HTTP
(``serve``'s server). Every replica must pass the full ``verify`` with the source's master
key and list the same tree (``ls -R --json --hash``). Kills are injected at chosen storage
writes as in ``test_crash.py`` (forked children, plus one real SIGKILL); tampered sources
are re-signed copies of the fixture (``tamper.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_driver import KILLED, fault
from fixturedata import FIXTURE_NAME, FIXTURE_VALID_AT
from tamper import Resigner, flip_byte, key_file
from test_crash import DRIVER, fork_cli

from cvmfs_publisher.cvmfs.hashes import Suffix
from cvmfs_publisher.cvmfs.manifest import parse_manifest
from cvmfs_publisher.http_server import make_server
from cvmfs_publisher.replication import IS_SNAPSHOTTING, LAST_SNAPSHOT
from cvmfs_publisher.storage import open_storage, wrapped_by
from cvmfs_publisher.storage.wrappers import FaultInjectingStorage, WriteEvent

NAME = "sw.example.org"
AS_OF = FIXTURE_VALID_AT.isoformat()


# -- helpers -----------------------------------------------------------------------------------

def data_keys(root: Path) -> set[str]:
    """Every object in a repository directory (staging excluded)."""
    return {p.relative_to(root).as_posix() for p in (root / "data").rglob("*")
            if p.is_file() and p.parent.name != "txn"}


def files_of(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes: "nothing was written" compares these."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def make_tree(root: Path, tag: str, *, big: bool = False) -> Path:
    """A nested catalog (``.cvmfscatalog``), hard links, a symlink, optionally a chunked file."""
    src = root / f"src-{tag}"
    (src / "lib").mkdir(parents=True)
    (src / "nested" / "deep").mkdir(parents=True)
    (src / "nested" / ".cvmfscatalog").write_bytes(b"")
    for i in range(4):
        (src / "lib" / f"f{i}.txt").write_text(f"{tag} {i}\n" * (i + 1))
        (src / "nested" / "deep" / f"g{i}.bin").write_bytes(os.urandom(200 + i))
    os.link(src / "lib" / "f1.txt", src / "lib" / "f1-hardlink.txt")
    (src / "link").symlink_to("lib/f0.txt")
    if big:  # over the 16 MiB maximum chunk: at least two chunks, cheap to compress
        (src / "big.bin").write_bytes(bytes(17 << 20))
    return src


def make_source(cli, tmp_path: Path, *, big: bool = False) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A native repository published with the CLI (revision 1, tag v1): its directory and
    its master public key."""
    keys = tmp_path / "keys"
    result = cli("init", NAME, "--storage", tmp_path / "stratum0", "--keys", keys)
    assert result.code == 0, result.err
    publish(cli, make_tree(tmp_path, "v1", big=big), "/sw/app/1.0", "v1")
    return tmp_path / "stratum0" / NAME, keys / f"{NAME}.pub"


def publish(cli, src: Path, path: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("publish", src, "--repo", NAME, "--path", path, "--tag", tag, "--no-progress")
    assert result.code == 0, result.err


def replicate(cli, source: str | Path, to: Path, key: Path, *extra: str | Path) -> dict:  # type: ignore[no-untyped-def]
    result = cli("replicate", source, "--key", key, "--to", to, "--json", *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def verified(cli, repo: Path | str, key: Path, fqrn: str, *extra: str) -> int:  # type: ignore[no-untyped-def]
    """The revision of a repository that passes the full verify."""
    result = cli("verify", "--repo", repo, "--key", key, "--fqrn", fqrn, "--json", *extra)
    report = json.loads(result.out)
    assert result.code == 0 and report["problems"] == [], report["problems"]
    return report["revision"]


def listing(cli, repo: Path | str, key: Path, fqrn: str, *extra: str) -> list:  # type: ignore[no-untyped-def]
    result = cli("ls", "/", "-R", "--json", "--hash", "--repo", repo, "--key", key,
                 "--fqrn", fqrn, *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def tags_of(cli, repo: Path | str, key: Path, fqrn: str, *extra: str) -> list:  # type: ignore[no-untyped-def]
    result = cli("tags", "--json", "--repo", repo, "--key", key, "--fqrn", fqrn, *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def revision_of(replica: Path) -> int | None:
    if not (replica / ".cvmfspublished").exists():
        return None
    return parse_manifest((replica / ".cvmfspublished").read_bytes())[0].revision


@contextlib.contextmanager
def served(directory: Path, fqrn: str) -> Iterator[str]:
    """The repository directory over loopback HTTP, as ``serve`` serves it."""
    server = make_server({fqrn: open_storage(str(directory), read_only=True)}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cvmfs/{fqrn}"
    finally:
        server.shutdown()
        server.server_close()


# -- the upstream fixture ----------------------------------------------------------------------

def test_fixture_replica_verifies_and_lists_the_same_tree(cli, fixture_dir: Path,
                                                          tmp_path: Path) -> None:
    source, pub = fixture_dir / "storage", fixture_dir / "keys" / f"{FIXTURE_NAME}.pub"
    stratum1 = tmp_path / "stratum1"
    first = replicate(cli, source, stratum1, pub, "--fqrn", FIXTURE_NAME, "--as-of", AS_OF)
    replica = stratum1 / FIXTURE_NAME
    assert (first["initial"], first["switched"], first["revision"]) == (True, True, 5)
    assert first["objects_copied"] == len(data_keys(replica)) > 20
    assert first["tags"] == len(tags_of(cli, source, pub, FIXTURE_NAME, "--as-of", AS_OF)) > 0

    assert verified(cli, replica, pub, FIXTURE_NAME, "--as-of", AS_OF) == 5
    for what in (listing, tags_of):
        assert what(cli, replica, pub, FIXTURE_NAME, "--as-of", AS_OF) == \
            what(cli, source, pub, FIXTURE_NAME, "--as-of", AS_OF)
    # Byte-identical objects and head files; only the untagged revisions' catalogs and old
    # history objects stay behind, as with upstream's snapshot.
    assert data_keys(replica) < data_keys(source)
    for name in (".cvmfspublished", ".cvmfswhitelist", ".cvmfsreflog"):
        assert (replica / name).read_bytes() == (source / name).read_bytes()
    assert (replica / ".cvmfs_master_replica").exists()
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d UTC \d{4}\n",
                        (replica / LAST_SNAPSHOT).read_text())
    assert not (replica / IS_SNAPSHOTTING).exists()

    again = replicate(cli, source, stratum1, pub, "--fqrn", FIXTURE_NAME, "--as-of", AS_OF)
    assert (again["initial"], again["switched"], again["objects_copied"]) == (False, False, 0)


# -- a repository of ours: full, incremental, replica of a replica, gc -------------------------

def test_native_replica_full_incremental_chain_and_gc(cli, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path, big=True)
    first_root = parse_manifest((stratum0 / ".cvmfspublished").read_bytes())[0].root_catalog
    stratum1 = tmp_path / "stratum1"
    replica = stratum1 / NAME
    with served(stratum0, NAME) as url:
        full = replicate(cli, url, stratum1, pub, "--workers", "4")
        assert full["revision"] == 1 and full["switched"]
        assert full["catalogs_copied"] >= 2  # the root catalog and /sw/app/1.0/nested
        assert full["objects_copied"] == len(data_keys(replica))
        assert verified(cli, replica, pub, NAME) == 1
        assert listing(cli, replica, pub, NAME) == listing(cli, NAME, pub, NAME)
        chunked = [e for e in listing(cli, replica, pub, NAME) if e["path"].endswith("big.bin")]
        assert chunked and any(k.endswith("P") for k in data_keys(replica))

        # A new revision (inside the nested catalog, which changes): exactly the objects
        # the publish added are copied.
        before = data_keys(stratum0)
        publish(cli, make_tree(tmp_path, "v2"), "/sw/app/1.0/nested/v2", "v2")
        added = data_keys(stratum0) - before
        incremental = replicate(cli, url, stratum1, pub)
        assert incremental["revision"] == 2 and incremental["previous_revision"] == 1
        assert incremental["objects_copied"] == len(added) > 0
        assert data_keys(replica) == data_keys(stratum0) - (before - data_keys(replica))
        assert verified(cli, replica, pub, NAME) == 2
        assert listing(cli, replica, pub, NAME) == listing(cli, NAME, pub, NAME)
        assert {t["name"] for t in tags_of(cli, replica, pub, NAME)} >= {"v1", "v2", "trunk"}

    # a replica of the replica, read over HTTP
    with served(replica, NAME) as url:
        chained = replicate(cli, url, tmp_path / "second", pub)
    second = data_keys(tmp_path / "second" / NAME)
    assert chained["objects_copied"] == len(second)
    assert [k[-1] for k in data_keys(replica) - second] == ["H"]  # revision 1's history
    assert verified(cli, tmp_path / "second" / NAME, pub, NAME) == 2
    assert (tmp_path / "second" / NAME / ".cvmfs_master_replica").exists()

    # The source forgets revision 1 (no tag, no longer trunk-previous) and collects its
    # garbage; the replica follows, then its own gc deletes what the source deleted:
    # catalogs first, a parent before the catalogs it mounts, then other objects.
    assert cli("tag", "rm", "v1", "--repo", NAME).code == 0
    assert cli("rm", "/sw/app/1.0/link", "--repo", NAME).code == 0
    assert cli("gc", "--repo", NAME, "--keep-revisions", "1", "--keep-days", "0").code == 0
    replicate(cli, stratum0, stratum1, pub)
    expected = data_keys(replica) - data_keys(stratum0)
    gc_args = ("replica-gc", stratum1, "--fqrn", NAME, "--key", pub, "--json")
    dry = json.loads(cli(*gc_args, "--dry-run").out)
    assert set(dry["garbage"]) == expected and dry["deleted"] == 0
    deletes: list[str] = []

    def record(event: WriteEvent) -> None:
        if event.op == "delete" and event.when == "after":
            deletes.append(event.key)

    with wrapped_by(lambda s: FaultInjectingStorage(s, record)):
        result = cli(*gc_args)
    assert result.code == 0, result.err
    assert json.loads(result.out)["deleted"] == len(expected)
    assert set(deletes) == expected and data_keys(replica) < data_keys(stratum0)
    # what only the source keeps: the history its own gc replaced (a harmless orphan there)
    assert [k[-1] for k in data_keys(stratum0) - data_keys(replica)] == ["H"]
    catalogs = [key for key in deletes if key.endswith("C")]
    assert catalogs[0] == first_root.object_key(Suffix.CATALOG) and len(catalogs) >= 2
    assert deletes[:len(catalogs)] == catalogs
    assert verified(cli, replica, pub, NAME) == verified(cli, stratum0, pub, NAME) == 3


# -- interruptions -----------------------------------------------------------------------------

def test_kill_during_snapshots_keeps_the_previous_revision(cli, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path)
    stratum1 = tmp_path / "stratum1"
    replica = stratum1 / NAME
    args = ("replicate", stratum0, "--key", pub, "--to", stratum1, "--no-progress")

    # A first snapshot killed half-way: no revision served; the rerun resumes it.
    events: list[WriteEvent] = []
    with wrapped_by(lambda s: FaultInjectingStorage(s, events.append)):
        assert cli(*args).code == 0
    writes = [e for e in events if e.when == "before"]
    everything = len(data_keys(replica))
    shutil.rmtree(stratum1)
    die_in_fork(tmp_path, len(writes) // 2, "after", args)
    assert revision_of(replica) is None and (replica / IS_SNAPSHOTTING).exists()
    present = len(data_keys(replica))
    assert 0 < present < everything
    resumed = replicate(cli, stratum0, stratum1, pub)
    assert resumed["objects_copied"] == everything - present  # the rest, nothing twice
    assert verified(cli, replica, pub, NAME) == 1 and not (replica / IS_SNAPSHOTTING).exists()

    # An incremental snapshot killed at chosen writes: revision 1 until the manifest switch.
    base = tmp_path / "base"
    shutil.copytree(replica, base)
    publish(cli, make_tree(tmp_path, "v2"), "/sw/app/2.0", "v2")
    events.clear()
    with wrapped_by(lambda s: FaultInjectingStorage(s, events.append)):
        assert cli(*args).code == 0
    writes = [e for e in events if e.when == "before"]
    keys = [e.key for e in writes]
    switch = keys.index(".cvmfspublished") + 1
    first_catalog = next(i for i, k in enumerate(keys, 1) if k.endswith("C"))
    points = [(1, "before"), (2, "after"), (first_catalog, "before"),
              (first_catalog, "after"), (keys.index(".cvmfsreflog") + 1, "after"),
              (switch, "before"), (switch, "after"), (len(keys), "before")]
    assert keys[0] == IS_SNAPSHOTTING and keys[-2:] == [LAST_SNAPSHOT, IS_SNAPSHOTTING]
    assert keys[switch - 1] == ".cvmfspublished" and switch > first_catalog > 2
    sigkill = (keys.index(".cvmfsreflog") + 1, "before")
    for number, mode in [*points, sigkill]:
        shutil.rmtree(stratum1)
        shutil.copytree(base, replica)
        if (number, mode) == sigkill:  # a real process, a real SIGKILL
            died = subprocess.run([sys.executable, str(DRIVER), str(number), mode, "--",
                                   *map(str, args)], capture_output=True, text=True,
                                  timeout=120, env=os.environ.copy())
            assert died.returncode == -signal.SIGKILL, died.stderr
        else:
            die_in_fork(tmp_path, number, mode, args)
        landed = number > switch or (number == switch and mode == "after")
        assert verified(cli, replica, pub, NAME) == (2 if landed else 1), (number, mode)
        rerun = replicate(cli, stratum0, stratum1, pub)
        assert rerun["revision"] == 2, (number, mode)
        assert verified(cli, replica, pub, NAME) == 2, (number, mode)
        assert not (replica / IS_SNAPSHOTTING).exists()


def die_in_fork(tmp: Path, target: int, mode: str, args: tuple) -> None:
    log = tmp / "child.log"
    pid = fork_cli(args, fault(target, mode, lambda: os._exit(KILLED)), log)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code == KILLED, f"{mode} write {target}: exit {code}\n{log.read_text()}"


# -- refused sources ---------------------------------------------------------------------------

def _bad_signature(copy: Path, tmp: Path) -> None:
    flip_byte(copy / "storage" / ".cvmfspublished", -1)


def _expired_whitelist(copy: Path, tmp: Path) -> None:
    Resigner(copy, tmp).sign_whitelist(now=FIXTURE_VALID_AT.replace(month=10), days=30)


def _other_name(copy: Path, tmp: Path) -> None:
    Resigner(copy, tmp).sign_whitelist(now=FIXTURE_VALID_AT, fqrn="other.local.repo")


@pytest.mark.parametrize("tamper,message", [
    (_bad_signature, "manifest signature does not verify"),
    (_expired_whitelist, "whitelist expired on 2026-10-31"),
    (_other_name, "repository name mismatch"),
], ids=["bad-signature", "expired-whitelist", "wrong-name"])
def test_tampered_source_is_refused_and_nothing_is_written(cli, fixture_copy: Path,
                                                          tmp_path: Path, tamper,
                                                          message: str) -> None:
    source, pub = fixture_copy / "storage", key_file(fixture_copy, "pub")
    stratum1 = tmp_path / "stratum1"
    args = ("replicate", source, "--fqrn", FIXTURE_NAME, "--key", pub, "--as-of", AS_OF)
    assert cli(*args, "--to", stratum1).code == 0
    before = files_of(stratum1)
    tamper(fixture_copy, tmp_path / "work")
    for target in (stratum1, tmp_path / "fresh"):
        result = cli(*args, "--to", target)
        assert result.code == 1 and message in result.err, result.err
        assert "nothing was written" in result.err and len(result.err.splitlines()) == 1
    assert files_of(stratum1) == before
    assert not (tmp_path / "fresh").exists()


def test_object_with_a_wrong_hash_is_refused_and_the_old_revision_stays(
        cli, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path)
    stratum1 = tmp_path / "stratum1"
    replica = stratum1 / NAME
    replicate(cli, stratum0, stratum1, pub)
    kept = {name: (replica / name).read_bytes() for name in
            (".cvmfspublished", ".cvmfswhitelist", ".cvmfsreflog", LAST_SNAPSHOT)}
    objects_before = data_keys(replica)
    before = data_keys(stratum0)
    publish(cli, make_tree(tmp_path, "v2"), "/sw/app/2.0", "v2")
    new_root = parse_manifest((stratum0 / ".cvmfspublished").read_bytes())[0].root_catalog
    victim = sorted(k for k in data_keys(stratum0) - before if k[-1] not in "CHXMP")[-1]
    original = (stratum0 / victim).read_bytes()
    flip_byte(stratum0 / victim, len(original) // 2)  # same size: only the hash can tell

    result = cli("replicate", stratum0, "--key", pub, "--to", stratum1)
    assert result.code == 1 and len(result.err.splitlines()) == 1, result.err
    assert f"refused {stratum0}: {victim}: object content hash is" in result.err
    assert "the replica still serves revision 1" in result.err
    assert {n: (replica / n).read_bytes() for n in kept} == kept
    assert not (replica / IS_SNAPSHOTTING).exists()
    assert not (replica / new_root.object_key(Suffix.CATALOG)).exists()
    assert victim not in data_keys(replica)
    assert verified(cli, replica, pub, NAME) == 1
    orphans = data_keys(replica) - objects_before
    assert all(not k.endswith("C") for k in orphans)  # no catalog of revision 2 landed

    # replica-gc removes the orphans; with the source repaired, the next run completes
    gc = cli("replica-gc", stratum1, "--fqrn", NAME, "--key", pub, "--json")
    assert gc.code == 0 and json.loads(gc.out)["deleted"] == len(orphans)
    assert data_keys(replica) == objects_before
    (stratum0 / victim).write_bytes(original)
    assert replicate(cli, stratum0, stratum1, pub)["revision"] == 2
    assert verified(cli, replica, pub, NAME) == 2


def test_stale_source_is_refused(cli, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path)
    old = tmp_path / "old-stratum0"
    shutil.copytree(stratum0, old)
    publish(cli, make_tree(tmp_path, "v2"), "/sw/app/2.0", "v2")
    stratum1 = tmp_path / "stratum1"
    replicate(cli, stratum0, stratum1, pub)
    result = cli("replicate", old, "--fqrn", NAME, "--key", pub, "--to", stratum1)
    assert result.code == 1 and "refusing to go back" in result.err, result.err
    assert revision_of(stratum1 / NAME) == 2


# -- --loop ------------------------------------------------------------------------------------

def test_loop_follows_new_revisions_until_terminated(cli, tmp_path: Path) -> None:
    stratum0, pub = make_source(cli, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "cvmfs_publisher.cli", "replicate", str(stratum0), "--key",
         str(pub), "--to", str(tmp_path / "stratum1"), "--loop", "--interval", "1s", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["ok"] and first["revision"] == 1 and first["switched"]
        publish(cli, make_tree(tmp_path, "v2"), "/sw/app/2.0", "v2")
        for line in process.stdout:
            run = json.loads(line)
            if run.get("revision") == 2:
                break
        assert run["switched"] and run["previous_revision"] == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert verified(cli, tmp_path / "stratum1" / NAME, pub, NAME) == 2
