#!/usr/bin/env bash
# Every benchmark of the project, each against its baselines on the same
# server in the same run; rewrites BENCHMARKS.md. `scripts/bench.sh incr`
# runs one section and prints it without rewriting the file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release
python3 scripts/bench.py "$@"
