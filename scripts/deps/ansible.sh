#!/usr/bin/env bash
# What the playbook tests (tests/test_stratum0_playbooks.py, tests/test_bootstrap.py) need:
# - ansible-core 2.19.x and ansible-lint in their own venv, .tools/ansible-venv (git-ignored),
#   kept apart from the toolkit's .venv so neither pins the other's dependencies
#   (ansible-core 2.20+ needs Python >= 3.12; Debian 12 has 3.11);
# - a wheelhouse .tools/wheels with a setuptools new enough to build this package
#   (pyproject asks for >= 77), so the tests can pip-install the checkout into a prefix
#   venv with --no-index, offline;
# - systemd-analyze (Debian's systemd package) to verify rendered unit files, and
#   python3-debian, which the classic role's deb822_repository task needs on the host (the
#   check-mode test runs it against this machine's /usr/bin/python3).
# The roles use ansible.builtin only, so no collections are installed.
# Idempotent; quiet on success, loud on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

PYTHON=${PYTHON:-python3}
VENV=.tools/ansible-venv
WHEELS=.tools/wheels
CORE='ansible-core>=2.19,<2.20'
LINT='ansible-lint==26.10.1'

command -v systemd-analyze >/dev/null || apt_install systemd
apt_install python3-debian

installed() {
  [ -x "$VENV/bin/ansible-playbook" ] && [ -x "$VENV/bin/ansible-lint" ] &&
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
assert version("ansible-core").startswith("2.19."), version("ansible-core")
assert version("ansible-lint") == "26.10.1"
EOF
}

run_quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "ansible.sh: '$*' failed" >&2
    exit 1
  fi
  rm -f "$log"
}

if ! installed; then
  ensure_venv "$PYTHON" "$VENV"
  step "installing $CORE and $LINT into $VENV"
  run_quietly "$VENV/bin/pip" install --quiet --disable-pip-version-check "$CORE" "$LINT"
  installed || { echo "ansible.sh: $VENV lacks ansible-core 2.19 / $LINT after install" >&2
                 exit 1; }
fi

if ! ls "$WHEELS"/setuptools-*.whl >/dev/null 2>&1; then
  step "downloading a setuptools wheel into $WHEELS"
  mkdir -p "$WHEELS"
  run_quietly "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$WHEELS" 'setuptools>=77'
fi
