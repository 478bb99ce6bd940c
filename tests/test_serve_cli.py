"""``serve`` as an operator runs it: a busy port, the access log, stopping it, ``--bind``."""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

NAME = "sw.example.org"
ACCESS = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                    r'"(GET|HEAD) (\S+) HTTP/1\.1" (\d{3}) (\d+|-)$')


def start(*args: str | Path) -> tuple[subprocess.Popen, int]:
    """``serve`` in its own process on a free port; returns it once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cvmfs_publisher.cli", "serve", "--port", "0",
         *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ.copy())
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.fullmatch(rf"serving {re.escape(NAME)} at http://127\.0\.0\.1:(\d+)/cvmfs/"
                         rf"{re.escape(NAME)}/\n", line)
    if match is None:
        process.kill()
        raise AssertionError(line + process.communicate()[1])
    return process, int(match.group(1))


def lines_of(process: subprocess.Popen) -> queue.Queue[str | None]:
    """The process's stderr lines as they come (None at its end), so that a line that never
    comes fails a ``get(timeout=...)`` instead of hanging the test."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            found.put(line)
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


def test_a_busy_port_is_one_line(cli, repo: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "cvmfs_publisher.cli", "serve", "--repo",
                               repo, "--port", str(port)], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 1
    assert done.stderr == (f"error: cannot serve on 127.0.0.1:{port}: the port is already in "
                           "use (another 'serve' or web server?); choose another with --port\n")
    assert done.stdout == ""


def test_an_address_that_is_not_ours(cli, repo: str) -> None:
    result = cli("serve", "--repo", repo, "--bind", "192.0.2.1", "--port", "0")
    assert (result.code, result.err) == (1, "error: cannot serve on 192.0.2.1:0: 192.0.2.1 is "
                                            "not an address of this machine (--bind)\n")


@pytest.mark.parametrize(("signum", "said"), [(signal.SIGTERM, "stopped (SIGTERM)"),
                                               (signal.SIGINT, "stopped (interrupted)")])
def test_access_log_and_a_clean_stop(repo: str, tmp_path: Path, signum: int, said: str
                                     ) -> None:
    process, port = start("--repo", repo)
    manifest = tmp_path / "stratum0" / NAME / ".cvmfspublished"
    lines = lines_of(process)
    requests = [("GET", f"/cvmfs/{NAME}/.cvmfspublished", "200"),
                ("GET", f"/cvmfs/{NAME}/data/00/missing", "404"),
                ("HEAD", f"/cvmfs/{NAME}/.cvmfswhitelist", "200")]
    logged = []
    for method, path, status in requests:
        answer = get(port, path, method)
        assert str(answer[0]) == status
        if path.endswith(".cvmfspublished"):
            assert answer[1] == manifest.read_bytes()
        # the line follows the answer: wait for it before the next request (and the signal)
        logged.append(ACCESS.match(lines.get(timeout=10).rstrip("\n")))
    assert all(logged), logged
    assert [(m[1], m[2], m[3]) for m in logged] == requests  # type: ignore[index]
    assert logged[0][4] == str(manifest.stat().st_size)  # type: ignore[index]
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    assert list(iter(lambda: lines.get(timeout=10), None)) == [f"{said}\n"]


def test_quiet_has_no_access_log(repo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVMFS_PUBLISHER_REPO", repo)  # the default repository is served
    process, port = start("--quiet")
    assert get(port, f"/cvmfs/{NAME}/.cvmfspublished")[0] == 200
    code, err = stop(process, signal.SIGTERM)
    assert (code, err) == (0, "stopped (SIGTERM)\n")


def test_bind_is_documented(cli) -> None:
    text = cli("serve", "--help").out
    assert "--bind, --host ADDRESS" in text and "loopback by default" in text
    assert "--quiet" in text
