#!/usr/bin/env bash
# Debian tools the unpacker tests and bench need: a real registry, skopeo, umoci (oracle),
# podman (Docker-API service for --from-docker) and debootstrap (bench image).
# Idempotent; run as root. Quiet on success, loud on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

packages=(docker-registry skopeo umoci podman debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "registry.sh: must run as root to install: ${missing[*]}" >&2
    exit 1
fi
# apt_get (scripts/lib.sh) waits while another package manager holds the dpkg lock
if ! { apt_get update -qq && apt_get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "registry.sh: installing ${missing[*]} failed" >&2
    exit 1
fi
# The packaged registry service listens on :5000 on all interfaces; tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry || true
fi
for t in docker-registry skopeo umoci; do
    command -v "$t" >/dev/null || { echo "registry.sh: $t still missing after install" >&2; exit 1; }
done
