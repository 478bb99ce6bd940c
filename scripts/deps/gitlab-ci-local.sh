#!/usr/bin/env bash
# What the CI template tests (tests/test_ci_templates.py) need: gitlab-ci-local, which runs
# .gitlab-ci.yml pipelines in a local shell, and rsync, which it copies the project with
# (without it every job fails with "exit code 127: rsync -a ...").
# gitlab-ci-local goes into the git-ignored project-local prefix .test-tools/ (never
# npm -g). Pinned: 4.74 and later need Node >= 22 (Set.prototype.union), Debian 12 has 20.
# Idempotent; quiet on success, loud on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

VERSION=4.73.0
PREFIX=.test-tools
BIN=$PREFIX/node_modules/.bin/gitlab-ci-local

apt_install rsync
# the machine's Node (with its npm) if there is one; Debian's otherwise
command -v npm >/dev/null || apt_install nodejs npm

installed() {
  [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "$VERSION" ]
}
if ! installed; then
  step "installing gitlab-ci-local $VERSION into $PREFIX"
  mkdir -p "$PREFIX"
  log=$(mktemp)
  if ! npm install --prefix "$PREFIX" --no-audit --no-fund --no-save --loglevel=error \
      "gitlab-ci-local@$VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "gitlab-ci-local.sh: npm install gitlab-ci-local@$VERSION failed" >&2
    exit 1
  fi
  rm -f "$log"
  installed || { echo "gitlab-ci-local.sh: $BIN is not version $VERSION after install" >&2; exit 1; }
fi
command -v rsync >/dev/null || { echo "gitlab-ci-local.sh: rsync still missing" >&2; exit 1; }
