"""Unpacking writes no root filesystem to disk: only the repository's own files.

Every file the process opens for writing, and every directory, link or ownership change
it makes, is recorded with a ``sys.addaudithook`` hook (no strace, nothing of ours
patched) while an image is unpacked with a dedicated empty TMPDIR and working directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

from treecompare import oracle_view

from unpacker.runs import run_unpack

_events: list[tuple[str, tuple]] = []
_recording = threading.Event()
_WATCHED = {"open", "os.mkdir", "os.symlink", "os.link", "os.rename", "os.chown",
            "os.chmod", "os.utime", "os.truncate", "shutil.copyfile"}


def _hook(event: str, args: tuple) -> None:
    if _recording.is_set() and event in _WATCHED:
        _events.append((event, args))


sys.addaudithook(_hook)


def _is_write(event: str, args: tuple) -> bool:
    if event != "open":
        return True
    _path, mode, flags = args
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def _path(args: tuple) -> str:
    first = args[0]
    return os.fsdecode(first) if isinstance(first, (str, bytes, os.PathLike)) else ""


def test_unpack_writes_only_repository_files(images, make_repo, tmp_path, monkeypatch):
    repo = make_repo()
    scratch, cwd = tmp_path / "tmpdir", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(cwd)
    storage_root = Path(repo.repository.storage.location).resolve()
    cache_root = repo.repository.options.cache_dir.resolve()
    _events.clear()
    _recording.set()
    try:
        report = run_unpack(repo, None, [images.refs["oci"]])
    finally:
        _recording.clear()
    assert report.ok and report.outcomes[0].status == "unpacked"

    writes = [(e, _path(a)) for e, a in _events if _is_write(e, a)]
    assert writes, "the hook saw nothing: the test would prove nothing"
    image_names = {os.path.basename(p) for p in oracle_view(images.oracle)}
    allowed = (str(storage_root), str(cache_root), str(scratch.resolve()))
    problems = []
    for event, path in writes:
        if event in ("os.symlink", "os.link", "os.chown", "os.utime"):
            problems.append(f"{event} {path}")
            continue
        if not path:
            continue  # a file descriptor: opened before, checked then
        full = str(Path(path).resolve())
        if not full.startswith(allowed):
            problems.append(f"{event} outside the repository: {full}")
        if os.path.basename(full) in image_names:
            problems.append(f"{event} of an image file name: {full}")
        name = os.path.basename(full)
        scratch_ok = name.startswith("cvmfs-publisher-") if event == "os.mkdir" else \
            name.endswith((".db", ".tmp"))
        if full.startswith(str(scratch.resolve())) and not scratch_ok:
            problems.append(f"{event} of an unexpected scratch file: {full}")
    assert not problems, "\n".join(problems)
    assert list(scratch.iterdir()) == [] and list(cwd.iterdir()) == []
