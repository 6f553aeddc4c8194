#!/usr/bin/env bash
# Builds the module, starts a local redis-server on a free loopback port with
# it loaded, writes a small realistic event stream through the module and
# prints what it wrote, and draws target/demo/ctr.png. The server is removed
# when the demo ends; `scripts/demo.sh --keep` leaves it running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The chart is drawn with matplotlib, from PyPI.
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
cargo build --release
python3 scripts/demo.py "$@"
