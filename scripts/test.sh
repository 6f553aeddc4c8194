#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests of the pure core, and
# integration tests against real redis-server processes with the module.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
