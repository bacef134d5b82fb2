#!/usr/bin/env bash
# Locate (or install) the headless browser the end-to-end tests drive: Debian's chromium, never a download by
# Playwright. Prints the executable's path. Installing needs root (CI runs as root on a fresh clone).
set -euo pipefail
BROWSER=${HYGIE_CHROMIUM:-/usr/bin/chromium}
if [ -x "$BROWSER" ]; then
  echo "$BROWSER"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium is missing at $BROWSER; install it as root: apt-get install -y chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists: update once, then install quietly.
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
[ -x "$BROWSER" ] || { echo "chromium was installed but $BROWSER is not executable" >&2; exit 1; }
echo "$BROWSER"
