#!/usr/bin/env bash
# Installs what building, testing and the demo need on a Debian machine:
# Go (when missing) and redis-server, SIPp (sip-tester) and baresip.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip-core)
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
