"""``--from-docker``: an image read through podman's Docker-compatible API service."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from regkit import require_tools
from treecompare import differences, flat_of, oracle_view, published_view

from unpacker.runs import run_docker_unpack


@pytest.fixture(scope="module")
def podman(images):
    """Rootful podman with vfs storage in a private directory, serving the Docker API.

    The directory is a short one in /tmp: podman refuses a run root of over 50 characters,
    which a checkout's own pytest-tmp easily is.
    """
    require_tools("podman")
    with tempfile.TemporaryDirectory(prefix="pm-", dir="/tmp") as short:
        yield from _podman_service(images, Path(short))


def _podman_service(images, work: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(work / "run")}
    (work / "run").mkdir()
    base = ["podman", "--root", str(work / "root"), "--runroot", str(work / "runroot"),
            "--storage-driver", "vfs"]
    # skopeo names the image; `podman pull oci:DIR` would derive a name from DIR, which
    # fails for a directory with capitals in its path (mktemp's, for one)
    require_tools("skopeo")
    subprocess.run(["skopeo", "copy", "-q", f"oci:{images.layout}:1.0",
                    f"containers-storage:[vfs@{work / 'root'}+{work / 'runroot'}]"
                    "localhost/test/img:1.0"], check=True, env=env, capture_output=True)
    sock = work / "podman.sock"
    log = work / "podman.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([*base, "system", "service", "--time", "0", f"unix://{sock}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), f"podman system service did not start (exit {proc.poll()}): " \
            f"{log.read_text(errors='replace')[-2000:]}"
        yield f"unix://{sock}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_image_from_podman_equals_umoci_unpack(podman, images, make_repo):
    repo = make_repo()
    report = run_docker_unpack(repo, ["localhost/test/img:1.0"], base_url=podman)
    assert report.ok, [o.detail for o in report.failed]
    assert [o.status for o in report.outcomes] == ["unpacked"]
    reader = repo.repository.reader()
    top = flat_of(reader, "localhost/test/img:1.0")
    problems = differences(published_view(reader, top), oracle_view(images.oracle))
    assert not problems, "\n".join(problems)
    assert repo.repository.verify().ok
    revision = repo.repository.head().manifest.revision
    again = run_docker_unpack(repo, ["localhost/test/img:1.0"], base_url=podman)
    assert [o.status for o in again.outcomes] == ["unchanged"]
    assert repo.repository.head().manifest.revision == revision
    missing = run_docker_unpack(repo, ["localhost/no/such:1"], base_url=podman)
    assert missing.failed and not missing.ok
