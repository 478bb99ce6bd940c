"""The install scripts wait for a busy package manager instead of failing at once.

``apt_install`` (scripts/lib.sh) runs a stand-in apt-get that answers as the real one does
while another package manager holds the package lists lock, until the test lets go.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_APT = """#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls"
if [ -e "$FAKE_DIR/locked" ]; then
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
  echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
  exit 100
fi
if [ -e "$FAKE_DIR/broken" ]; then
  echo "E: Unable to locate package $*" >&2
  exit 100
fi
exit 0
"""


def apt_install(tmp_path: Path, wait: int, *packages: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "apt-get"
    fake.write_text(FAKE_APT)
    fake.chmod(0o755)
    sudo = tmp_path / "bin" / "sudo"  # when the tests do not run as root
    sudo.parent.mkdir(exist_ok=True)
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(0o755)
    env = {**os.environ, "FAKE_DIR": str(tmp_path), "APT_GET": str(fake),
           "APT_LOCK_WAIT": str(wait), "APT_LOCK_POLL": "0.2",
           "PATH": f"{sudo.parent}:{os.environ['PATH']}"}
    script = f'set -euo pipefail; . scripts/lib.sh; apt_install {" ".join(packages)}; echo done'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_apt_install_waits_for_the_lock(tmp_path: Path) -> None:
    (tmp_path / "locked").touch()
    release = threading.Timer(1.5, (tmp_path / "locked").unlink)
    release.start()
    started = time.monotonic()
    done = apt_install(tmp_path, 60, "no-such-package-cvmfs-test")
    release.join()
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.5
    assert done.stdout.endswith("done\n")
    assert done.stderr == ("waiting for another package manager to finish (It is held by "
                           "process 4242 (apt-get); up to 60 s)\n")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[-1] == ("-o DPkg::Lock::Timeout=60 install -y -qq --no-install-recommends "
                         "no-such-package-cvmfs-test")
    assert len(calls) > 2 and set(calls[:-1]) == {"-o DPkg::Lock::Timeout=60 update -qq"}


def test_apt_install_gives_up_after_the_wait(tmp_path: Path) -> None:
    (tmp_path / "locked").touch()
    done = apt_install(tmp_path, 1, "no-such-package-cvmfs-test")
    assert done.returncode != 0 and "done" not in done.stdout
    assert done.stderr.splitlines()[-1] == "gave up waiting for the package manager after 1 s"
    assert "Could not get lock /var/lib/apt/lists/lock" in done.stderr


def test_other_failures_are_not_waited_for(tmp_path: Path) -> None:
    (tmp_path / "broken").touch()
    started = time.monotonic()
    done = apt_install(tmp_path, 60, "no-such-package-cvmfs-test")
    assert done.returncode != 0 and time.monotonic() - started < 30
    assert done.stderr == "E: Unable to locate package -o DPkg::Lock::Timeout=60 update -qq\n"
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_every_install_script_goes_through_apt_get() -> None:
    """No script calls apt-get itself, where nothing would wait for the lock."""
    for script in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("scripts/deps/*.sh")]:
        lines = [line for line in script.read_text().splitlines()
                 if "apt-get" in line and not line.lstrip().startswith("#")]
        if script.name == "lib.sh":
            assert lines == ['APT_GET=${APT_GET:-apt-get}']
        else:
            assert lines == [], script
