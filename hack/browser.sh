#!/usr/bin/env bash
# Installs Debian's Chromium and its chromedriver for the dashboard's browser test (tests/ui.rs),
# once: the packages from the system's package manager, never a browser download at test time.
# Runs as root, or through sudo when it is there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "Chromium is missing and installing it needs root: apt-get install chromium chromium-driver"
  as_root=(sudo)
fi
command -v apt-get >/dev/null || die "Chromium is missing and this is not a Debian-like system: install chromium and chromedriver as /usr/bin/chromium and /usr/bin/chromedriver"
log "installing Debian's chromium and chromium-driver (the dashboard's browser test)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium-driver >/dev/null 2>&1; then
  "${as_root[@]}" apt-get update -qq
fi
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || die "apt-get installed chromium, but /usr/bin/chromium or /usr/bin/chromedriver is missing"
log "$(/usr/bin/chromium --version 2>/dev/null || echo chromium), $(/usr/bin/chromedriver --version | cut -d' ' -f1-2)"
