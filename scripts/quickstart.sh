#!/usr/bin/env bash
# The main job, end to end: install the toolkit, create a native repository in a local
# directory, publish the example release, verify it and show it. Safe to run again: it
# starts from a fresh ./demo each time and never touches your real configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
. scripts/lib.sh

ensure_venv "$PYTHON" .venv
step "installing cvmfs-publisher into .venv"
.venv/bin/pip install --quiet --disable-pip-version-check .

rm -rf demo
export CVMFS_PUBLISHER_CONFIG="$PWD/demo/config.yaml"
export XDG_CACHE_HOME="$PWD/demo/cache"
P=.venv/bin/cvmfs-publisher

step "creating repository demo.example.org in ./demo/stratum0"
$P init demo.example.org --storage demo/stratum0 --keys demo/keys
step "publishing examples/hello at /sw/hello/1.0"
$P publish examples/hello --repo demo.example.org --path /sw/hello/1.0 --tag hello-1.0 \
   -m "first release of hello"
step "verifying every signature, catalog and object"
$P verify --repo demo.example.org
step "what a client will see"
$P ls -R /sw --repo demo.example.org
$P tags --repo demo.example.org
step "done: serve it to CVMFS clients with"
echo "  CVMFS_PUBLISHER_CONFIG=$PWD/demo/config.yaml $P serve --repo demo.example.org --port 8000"
