"""Starting and stopping real server processes for the unpacker tests (by PID)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
DEPS = "scripts/deps/registry.sh"


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `sudo {DEPS}` (as root) first",
                    pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _start(name: str, args: list[str], work: Path, ready_url: str) -> Server:
    log = work / f"{name}.log"
    proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = Server(name, proc, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(requests.RequestException):
            requests.get(ready_url, timeout=1)
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not start: {log.read_text(errors='replace')[-2000:]}")


def _registry(name: str, work: Path, data: Path, auth: dict | None) -> tuple[Server, str]:
    port = free_port()
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(data)},
                          "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"},
              "health": {"storagedriver": {"enabled": False}}}
    if auth:
        config["auth"] = auth
    path = work / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    server = _start(name, ["docker-registry", "serve", str(path)], work,
                    f"http://127.0.0.1:{port}/v2/")
    return server, f"127.0.0.1:{port}"
