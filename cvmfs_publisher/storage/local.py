"""A repository in a local directory, laid out as a Stratum 0 web server serves it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import itertools
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ObjectNotFound, RepositoryBusy, StorageError
from .base import MANIFEST, Capabilities, LockInfo, ObjectStream, Storage
from .key_names import check_key, check_put_key

STAGING = "data/txn"
DELETE_THREADS = 8
LOCK_FILE = "data/txn/publish.lock"


class LocalStorage(Storage):
    """Objects are written to ``data/txn`` and renamed into place, as upstream does.

    The publish lock is an ``flock`` on ``data/txn/publish.lock``: the kernel drops it
    when the holder dies, so a killed publisher never leaves the repository locked.
    ``list`` hides ``data/txn``. Thread-safe: every write goes to its own temporary file.
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = root
        self.read_only = read_only
        self._directories: set[str] = set()  # known to exist: saves a mkdir per object
        self._held: int | None = None  # the lock file's descriptor while ``lock`` holds it
        # temporary names: pid, this instance's random tag and a counter (no getrandom per put)
        self._tag = secrets.token_hex(4)
        self._serial = itertools.count()

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{key} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from None

    def open(self, key: str) -> ObjectStream:
        """The file itself: served and hashed without reading it into memory."""
        path = self._path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"{key} not found in {self.root}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key} in {self.root}: {exc.strerror}") from None
        return ObjectStream(handle, os.fstat(handle.fileno()).st_size, f"{key} in {self.root}")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        if self.read_only:
            self._refuse_write()
        self._write(check_put_key(key), data)

    def put_manifest(self, data: bytes, previous: bytes | None) -> None:
        """Compare and rename under the flock: no other publisher can switch in between."""
        if self.read_only:
            self._refuse_write()
        with self._locked_for_switch():
            try:
                current: bytes | None = self._path(MANIFEST).read_bytes()
            except FileNotFoundError:
                current = None
            except OSError as exc:
                raise StorageError(f"cannot read {MANIFEST} in {self.root}: "
                                   f"{exc.strerror}") from None
            if current != previous:
                raise StorageError(f"{self.root}: the manifest changed since this publish "
                                   "started; nothing was published")
            self._write(MANIFEST, data)

    @contextlib.contextmanager
    def _locked_for_switch(self) -> Iterator[None]:
        """The publish lock this storage holds, or, outside ``lock``, the flock just for now."""
        if self._held is not None:
            yield
            return
        fd = self._open_lock_file()
        try:
            self._acquire(fd, wait=False)
            yield
        finally:
            os.close(fd)

    def _write(self, key: str, data: bytes) -> None:
        """Write to ``data/txn`` and rename into place, so readers never see a prefix."""
        write_file(os.fspath(self.root), key, data, self._directories,
                   f"{os.getpid()}.{self._tag}{next(self._serial)}")

    def object_writer(self) -> Callable[[str, bytes], None]:
        """``put`` for objects as a picklable function: worker processes write directly."""
        return functools.partial(_write_object, os.fspath(self.root), self.read_only)

    def delete(self, key: str) -> None:
        if self.read_only:
            self._refuse_write()
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {key} in {self.root}: {exc.strerror}") from None

    def delete_many(self, keys: list[str]) -> None:
        """``unlink`` in a few threads: on file systems that discard freed blocks an unlink
        waits on the device, and several wait side by side."""
        if self.read_only:
            self._refuse_write()
        root = os.fspath(self.root)
        paths = [f"{root}/{check_key(key)}" for key in keys]
        with ThreadPoolExecutor(min(DELETE_THREADS, len(paths) // 64 + 1)) as pool:
            failed = [error for error in pool.map(_unlink, paths) if error]
        if failed:
            raise StorageError(f"cannot delete {len(failed)} of {len(keys)} keys in "
                               f"{self.root}, the first: {failed[0]}")

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            if rel == STAGING:
                dirnames.clear()
                continue
            dirnames.sort()
            for name in sorted(filenames):
                yield name if rel == "." else f"{rel}/{name}"

    def list_with_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        for key in self.list(prefix):
            try:
                yield key, (self.root / key).stat().st_size
            except FileNotFoundError:
                continue

    def flush(self) -> None:
        """``syncfs`` on the repository's file system: one call instead of an fsync per object."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def capabilities(self) -> Capabilities:
        return Capabilities(conditional_writes=True, lock="none" if self.read_only else "flock",
                            listable=True)

    @contextlib.contextmanager
    def lock(self, owner: str, *, wait: bool = False) -> Iterator[None]:
        if self.read_only:
            self._refuse_write()
        if self._held is not None:
            raise StorageError(f"{self.root}: this storage already holds the publish lock")
        fd = self._open_lock_file()
        try:
            self._acquire(fd, wait)
            info = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
                    "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            self._remove_stale_staging()
            self._held = fd
            yield
        finally:
            self._held = None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock

    def _open_lock_file(self) -> int:
        path = self.root / LOCK_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open lock file {path}: {exc.strerror}") from None

    def _acquire(self, fd: int, wait: bool) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StorageError(f"cannot lock {self.root}: {exc.strerror}") from None
            raise RepositoryBusy(_busy_message(self.root, _read_info(fd))) from None

    def _remove_stale_staging(self) -> None:
        """Temporary files of killed publishers; only safe while we hold the lock."""
        for tmp in (self.root / STAGING).glob("*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def lock_holder(self) -> LockInfo | None:
        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _read_info(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def break_lock(self) -> LockInfo | None:
        """Nothing to break: the kernel releases an flock when its holder exits."""
        holder = self.lock_holder()
        if holder is not None:
            raise RepositoryBusy(
                _busy_message(self.root, holder)
                + "; a local lock belongs to a live process and is released when it exits"
            )
        return None


def _unlink(path: str) -> str | None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None


def write_file(root: str, key: str, data: bytes, directories: set[str], unique: str) -> None:
    """``data`` under ``key`` via a temporary file in ``data/txn``, renamed into place.

    Runs once per object, so plain strings and ``os`` calls: ``key`` is checked by the
    caller, ``directories`` are known to exist (created once), no ``stat``, no buffer.
    ``unique`` makes the temporary name unique among all writers of the storage.
    """
    target = f"{root}/{key}"
    directory, _, name = target.rpartition("/")
    staging = f"{root}/{STAGING}"
    tmp = f"{staging}/{name[:40]}.{unique}.tmp"
    try:
        _ensure_directory(staging, directories)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            _ensure_directory(directory, directories)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise StorageError(f"cannot write {key} to {root}: {exc.strerror}") from None


def _ensure_directory(path: str, directories: set[str]) -> None:
    if path not in directories:
        os.makedirs(path, exist_ok=True)
        directories.add(path)


_process_directories: set[str] = set()  # of this process, for ``object_writer``
_process_serial = itertools.count()


def _write_object(root: str, read_only: bool, key: str, data: bytes) -> None:
    if read_only:
        raise StorageError(f"{root} is read-only")
    write_file(root, check_put_key(key), data, _process_directories,
               f"{os.getpid()}.w{next(_process_serial)}")


def _read_info(fd: int) -> LockInfo | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return LockInfo(data["owner"], data["host"], int(data["pid"]), float(data["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _busy_message(root: Path, info: LockInfo | None) -> str:
    if info is None:
        return f"repository at {root} is busy: another publisher holds its lock"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.since))
    return (
        f"repository at {root} is busy: {info.owner} (pid {info.pid} on {info.host}) "
        f"has been publishing since {started}; retry later or use --wait"
    )
