"""Small files stored by worker processes: read, hash, compress and write, all cores busy.

For a small file the interpreter's own work (calls, objects, a few syscalls) costs more
than compressing it, and threads share one interpreter lock: a thread pool keeps about one
core busy however many it has. Where the storage lets other processes write its objects
(``Storage.object_writer``: a local directory, never a wrapped storage), small files go to
worker processes instead, in batches so that one round trip carries many files. Each worker
looks the content up in the content index (read-only; a *verified* row is used as is),
and otherwise compresses and writes the object itself; the publishing process records what
came back. Before ``MIN_FILES`` small files the workers are not worth their start-up.

The workers are plain ``python -m cvmfs_publisher.engine.procpool`` processes that read
pickled batches on stdin and answer on stdout, in order: no ``fork`` of a process that
runs threads, and no re-import of the caller's main script (as ``multiprocessing`` does).
A worker that dies fails its batches; closing stdin ends it.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from ..cvmfs.compression import Compression, deflater, encode
from ..cvmfs.hashes import Algorithm, ContentHash, Suffix
from ..errors import SourceError, StorageError

MIN_FILES = 512  # small files a publish must have seen before the pool starts
MAX_SIZE = 1 << 20  # larger files stay in threads (compression releases the GIL there)
BATCH_FILES = 64
BATCH_BYTES = 4 << 20

# (object hash or None for a failed read, content size, SHA-256 of the content,
#  stored bytes written: 0 when a verified index row named the object)
Stored = tuple[str, int, bytes, int]


@dataclass(frozen=True)
class Job:
    """What every worker needs, sent once when it starts."""

    writer: Callable[[str, bytes], None]
    preset: str
    level: int
    algorithm: Algorithm
    index_file: str | None
    generation: int  # rows of this generation are verified, if ``trusted``
    trusted: bool


_job: Job | None = None
_deflate: Callable[[bytes], bytes] | None = None
_index: sqlite3.Connection | None = None


def _start(job: Job) -> None:
    global _job, _deflate, _index
    _job, _deflate = job, deflater(job.preset, job.level)
    if job.index_file is not None and job.trusted:
        _index = sqlite3.connect(f"file:{job.index_file}?mode=ro", uri=True, timeout=30)


def read_file(path: str | os.PathLike[str], size_hint: int) -> bytes:
    """A whole file: open, read to the end, close; no ``stat`` (the walk did one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, size_hint + 1)
            if data:  # a short read is not promised to be the end (FUSE, a growing file)
                parts = [data]
                while block := os.read(fd, 1 << 16):
                    parts.append(block)
                data = b"".join(parts) if len(parts) > 1 else data
            return data
        finally:
            os.close(fd)
    except OSError as exc:
        raise SourceError(f"cannot read {os.fsdecode(path)}: {exc.strerror}") from None


def _store_batch(items: list[tuple[str | bytes, int]]) -> list[Stored]:
    """Store each item: a file's path, or content already read (an image layer's file)."""
    assert _job is not None
    results = []
    for item, size_hint in items:
        data = item if isinstance(item, bytes) else read_file(item, size_hint)
        raw = hashlib.sha256(data).digest()
        if _index is not None:
            row = _index.execute("SELECT object FROM objects WHERE raw = ? AND compression = ? "
                                 "AND generation = ?", (raw, int(Compression.ZLIB),
                                                        _job.generation)).fetchone()
            if row is not None:
                results.append((row[0], len(data), raw, 0))
                continue
        content_hash, stored = encode(data, _job.algorithm, deflate=_deflate)
        _job.writer(content_hash.object_key(Suffix.NONE), stored)
        results.append((str(content_hash), len(data), raw, len(stored)))
    return results


class _Batch:
    def __init__(self) -> None:
        self.items: list[tuple[str | bytes, int]] = []
        self.size = 0
        self.future: Future[list[Stored]] | None = None


class Slot:
    """One file of a batch, with the part of ``Future``'s interface ``PendingFile`` uses."""

    __slots__ = ("batch", "index", "lane")

    def __init__(self, lane: ProcessLane, batch: _Batch, index: int) -> None:
        self.lane, self.batch, self.index = lane, batch, index

    def _future(self) -> Future[list[Stored]]:
        if self.batch.future is None:
            self.lane.flush()
        assert self.batch.future is not None
        return self.batch.future

    def result(self) -> tuple[ContentHash, int]:
        content_hash, size, _raw, _written = self._future().result()[self.index]
        return ContentHash.parse(content_hash), size

    def done(self) -> bool:
        return self.batch.future is not None and self.batch.future.done()

    def cancelled(self) -> bool:
        return self.batch.future is not None and self.batch.future.cancelled()

    def exception(self) -> BaseException | None:
        return self._future().exception()


class _Worker:
    """One worker process and the futures of its batches, answered in order."""

    def __init__(self, job: Job) -> None:
        top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(filter(None, (top, os.environ.get("PYTHONPATH"))))
        self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env={**os.environ,
                                                                  "PYTHONPATH": path})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.send, self.answers = self.proc.stdin, self.proc.stdout
        self.waiting: collections.deque[Future[list[Stored]]] = collections.deque()
        self.lock = threading.Lock()  # ``waiting`` and ``ended``
        self.sending = threading.Lock()  # batches go out in the order they wait
        self.ended = False
        pickle.dump(job, self.send)
        self.reader = threading.Thread(target=self._read, daemon=True, name="cvmfs-proc")
        self.reader.start()

    def submit(self, items: list[tuple[str | bytes, int]]) -> Future[list[Stored]]:
        future: Future[list[Stored]] = Future()
        with self.sending:
            with self.lock:
                if self.ended:
                    future.set_exception(self._gone())
                    return future
                self.waiting.append(future)
            with contextlib.suppress(OSError):  # a dead worker: its reader fails the rest
                pickle.dump(items, self.send)
                self.send.flush()
        return future

    def _gone(self) -> StorageError:
        return StorageError(f"a worker process storing small files ended (exit status "
                            f"{self.proc.wait()})")

    def _read(self) -> None:
        while True:
            try:
                ok, value = pickle.load(self.answers)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with self.lock:
                future = self.waiting.popleft()
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        with self.lock:
            self.ended = True
            waiting, self.waiting = list(self.waiting), collections.deque()
        for future in waiting:
            if not future.cancelled():
                future.set_exception(self._gone())

    def close(self, cancel: bool) -> None:
        with self.lock:
            if cancel:
                for future in self.waiting:
                    future.cancel()
                self.proc.kill()
            with contextlib.suppress(OSError):
                self.send.close()
        self.reader.join()
        self.proc.wait()
        self.answers.close()


class ProcessLane:
    """Batches small files for the worker processes; ``on_done(results)`` runs in this
    process for every finished batch (in the thread that reads the worker's answers)."""

    def __init__(self, job: Job, workers: int,
                 on_done: Callable[[list[Stored]], None],
                 on_submit: Callable[[Future[list[Stored]]], None]) -> None:
        self.workers = [_Worker(job) for _ in range(workers)]
        self.on_done, self.on_submit = on_done, on_submit
        self.batch = _Batch()
        self.lock = threading.Lock()
        self.turn = 0
        self.in_flight = threading.BoundedSemaphore(4 * workers)  # batches queued at most

    def add(self, item: str | bytes, size_hint: int) -> Slot:
        """A file by its path, or its content; the slot gives its (hash, size) once stored."""
        with self.lock:
            batch = self.batch
            batch.items.append((item, size_hint))
            batch.size += size_hint
            slot = Slot(self, batch, len(batch.items) - 1)
            full = len(batch.items) >= BATCH_FILES or batch.size >= BATCH_BYTES
        if full:
            self.flush()
        return slot

    def flush(self) -> None:
        """Send the batch being filled (blocks while too many are in flight)."""
        with self.lock:
            batch, self.batch = self.batch, _Batch()
            worker = self.workers[self.turn % len(self.workers)]
            self.turn += 1
        if not batch.items:
            return
        self.in_flight.acquire()
        future = worker.submit(batch.items)
        batch.future = future
        future.add_done_callback(self._finished)
        self.on_submit(future)

    def _finished(self, future: Future[list[Stored]]) -> None:
        self.in_flight.release()
        if not future.cancelled() and future.exception() is None:
            self.on_done(future.result())

    def close(self, cancel: bool = False) -> None:
        for worker in self.workers:
            worker.close(cancel)


def serve() -> None:
    """A worker's loop: the job, then batches in and results out until stdin closes."""
    source, sink = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the answers
    _start(pickle.load(source))
    while True:
        try:
            items = pickle.load(source)
        except EOFError:
            return
        try:
            answer = pickle.dumps((True, _store_batch(items)))
        except Exception as exc:  # handed to the publishing process
            try:
                answer = pickle.dumps((False, exc))
            except Exception:  # an exception that does not pickle
                answer = pickle.dumps((False, StorageError(f"storing small files: {exc}")))
        sink.write(answer)
        sink.flush()


if __name__ == "__main__":
    serve()
