#!/usr/bin/env bash
# The Python the client, cluster and operations tests run on: a venv at
# target/pyenv with redis-py, its C reply parser hiredis, and pytest
# (pinned), and the client package from clients/python installed
# editable. Prints the venv's python.
# Idempotent: a venv that already has everything is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
want="redis==8.1.0 hiredis==3.5.0 pytest==9.2.0"
if ! "$venv/bin/python" -c 'import redis, hiredis, pytest, listingstats' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e clients/python >&2
fi
echo "$PWD/$venv/bin/python"
