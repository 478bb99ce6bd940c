# Shared by the scripts in this directory (sourced, not run).

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

# How long apt_get waits for another package manager (unattended-upgrades, a second
# install, cloud-init) to let go of its locks before giving up, in seconds.
APT_LOCK_WAIT=${APT_LOCK_WAIT:-900}
APT_GET=${APT_GET:-apt-get}

apt_get() {
  # apt-get as root, waiting while another package manager holds a lock instead of failing.
  # apt itself waits for the dpkg locks (DPkg::Lock::Timeout); the package lists lock of
  # 'apt-get update' (and apt older than 1.9.11) it does not wait for: then this retries.
  # Quiet on success; on failure apt's output goes to stderr.
  local log deadline said=""
  log=$(mktemp)
  deadline=$(($(date +%s) + APT_LOCK_WAIT))
  while true; do
    if as_root env DEBIAN_FRONTEND=noninteractive "$APT_GET" -o "DPkg::Lock::Timeout=$APT_LOCK_WAIT" \
        "$@" >"$log" 2>&1; then
      rm -f "$log"
      return 0
    fi
    if ! grep -q "Could not get lock\|Unable to lock\|Unable to acquire the dpkg frontend lock" "$log" \
        || [ "$(date +%s)" -ge "$deadline" ]; then
      cat "$log" >&2
      rm -f "$log"
      [ -n "$said" ] && echo "gave up waiting for the package manager after ${APT_LOCK_WAIT} s" >&2
      return 1
    fi
    if [ -z "$said" ]; then
      said=$(grep -o "It is held by process [0-9]* ([^)]*)" "$log" | head -n 1 || true)
      echo "waiting for another package manager to finish (${said:-a lock is held}; up to ${APT_LOCK_WAIT} s)" >&2
      said=${said:-yes}
    fi
    sleep "${APT_LOCK_POLL:-5}"
  done
}

apt_install() {
  # Install Debian packages that are missing; quiet, but loud on failure.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_venv() {
  local python=$1 venv=$2
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
      apt_install python3-venv
    fi
    step "creating $venv with $($python --version)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  fi
}
