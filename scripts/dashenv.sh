#!/usr/bin/env bash
# The venv the dashboard service and its tests run on: target/dashenv with
# the pinned packages of dashboard/requirements.txt. Prints its python.
# Idempotent: a venv that already has everything is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/dashenv
if ! "$venv/bin/python" -c 'import aiohttp, prometheus_client, redis, hiredis, playwright, pytest' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r dashboard/requirements.txt >&2
fi
echo "$PWD/$venv/bin/python"
