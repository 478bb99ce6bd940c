#!/usr/bin/env bash
# What the web view's browser tests (tests/test_web_browser.py) need: Debian's Chromium and
# its matching chromedriver (one source package, so their versions always agree). The tests
# drive them through selenium with an explicit driver path, so nothing is downloaded at run
# time (no Selenium Manager, no Chrome for Testing).
# Idempotent; run as root (or with sudo). Quiet on success, loud on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

apt_install chromium chromium-driver
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "chromium.sh: $tool still missing after install" >&2; exit 1; }
done
