#!/usr/bin/env bash
# Builds the module, starts a local redis-server on a free loopback port with
# it loaded, writes a small realistic event stream through the module and
# prints what it wrote. The server is removed when the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release
python3 scripts/demo.py "$@"
