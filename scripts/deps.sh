#!/usr/bin/env bash
# Installs what building, testing and the demo need on a Debian machine:
# Go (when missing) and redis-server, SIPp (sip-tester) and baresip,
# chromium and Node.js/npm for the browser tests, and webui's npm packages
# (SIP.js for the pages, puppeteer-core to drive chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip-core)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# deploy/ tests verify the systemd unit.
command -v systemd-analyze >/dev/null || need+=(systemd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ((${#need[@]})); then
  echo "deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: installing Go from Debian (golang-go)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq golang-go >/dev/null
fi
# npm ci installs exactly the lock file; it runs again whenever the lock
# file is newer than the installed tree. puppeteer-core downloads no
# browser: the tests use Debian's /usr/bin/chromium.
if [ ! -d webui/node_modules ] || [ webui/package-lock.json -nt webui/node_modules ]; then
  echo "deps: npm ci --prefix webui"
  npm ci --prefix webui --no-audit --no-fund --loglevel=error
  touch webui/node_modules
fi
