#!/usr/bin/env bash
# Everything the tests need, then the tests. This is what CI runs (.ci/run).
# Installs: the package with its test extras into .venv; Debian packages and tools the
# integration tests use (scripts/deps/*.sh). A missing component fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
. scripts/lib.sh

ensure_venv "$PYTHON" .venv
step "installing cvmfs-publisher with test extras"
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
for deps in scripts/deps/*.sh; do
  [ -e "$deps" ] || continue
  step "test dependencies: $deps"
  bash "$deps"
done

step "lint (ruff)"
.venv/bin/ruff check .

step "tests"
rm -rf pytest-tmp
set +e
.venv/bin/python -m pytest --basetemp=pytest-tmp -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$code"
