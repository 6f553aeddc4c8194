#!/usr/bin/env bash
# Builds the module, starts a local redis-server on a free loopback port with
# it loaded, writes a small realistic event stream through the module and
# prints what it wrote, and draws target/demo/ctr.png. The server is removed
# when the demo ends; `scripts/demo.sh --keep` leaves it running and starts
# the live dashboard on it (scripts/dashboard.sh), printing its URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The chart is drawn with matplotlib, from PyPI.
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
cargo build --release
# The dashboard's venv (aiohttp, prometheus_client, redis-py) for --keep.
case " $* " in *" --keep "*) scripts/dashenv.sh >/dev/null ;; esac
python3 scripts/demo.py "$@"
