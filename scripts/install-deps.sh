#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks: redis-server and redis-tools
# (the Redis 7.0 the tests and demo run, redis-cli, redis-benchmark),
# libclang-dev (bindgen, used by the redis-module crate's build, loads
# libclang.so), chromium (the dashboard's browser test drives it) and
# prometheus (with promtool: the monitoring test scrapes the dashboard
# service). Does nothing when all are present. The other servers the
# suite runs on come from PyPI: scripts/servers.sh.
set -euo pipefail
. "$(dirname "$0")/lib/detect.sh"

mapfile -t missing < <(missing_packages /)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  mapfile -t still < <(missing_packages /)
  if ((${#still[@]})); then
    echo "install-deps: still missing after apt-get: ${still[*]}" >&2
    exit 1
  fi
fi
# The Debian package starts a system service on 6379; our scripts never use it.
