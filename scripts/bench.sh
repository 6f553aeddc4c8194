#!/usr/bin/env bash
# Every benchmark of the project, each against its baselines on the same
# server in the same run; rewrites BENCHMARKS.md. `scripts/bench.sh incr`
# runs one section and prints it without rewriting the file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The growth section draws its plot with matplotlib.
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib || true
# The instruction-count section uses callgrind.
command -v valgrind >/dev/null || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq valgrind >/dev/null; } || true
cargo build --release
python3 scripts/bench.py "$@"
