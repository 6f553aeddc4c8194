#!/usr/bin/env bash
# The whole test suite: formatting, lints, the dependency-detection check,
# unit tests of the pure core and of the Python client, then the
# integration tests against real servers with the module, the Redis
# Cluster tests (Python, tests/cluster) and the operations tests (Python,
# tests/ops: pause, failover, shutdown, ... while the module works) and
# the dashboard tests (tests/dashboard: the web service, Prometheus,
# headless Chromium), once per server. Every server a test starts must exit with status 0 and log
# no crash.
#
#   scripts/test.sh                Redis 7.0 and Valkey 9.1 (what CI runs)
#   scripts/test.sh --all-servers  Redis 7.0, Redis 8.2, Valkey 8.1, Valkey 9.1
#   scripts/test.sh --servers "redis-8.2 valkey-8.1"
#
# Servers come from scripts/servers.sh (Debian's package, PyPI wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

servers=(redis-7.0 valkey-9.1)
case "${1:-}" in
  "") ;;
  --all-servers) servers=(redis-7.0 redis-8.2 valkey-8.1 valkey-9.1) ;;
  --servers) read -r -a servers <<<"${2:?--servers \"NAME...\"}" ;;
  *) echo "usage: scripts/test.sh [--all-servers | --servers \"NAME...\"]" >&2; exit 2 ;;
esac

scripts/install-deps.sh
# Install every server first: a missing one fails before the long part.
declare -A path
for s in "${servers[@]}"; do path[$s]=$(scripts/servers.sh --path "$s"); done

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed_runs=()
scripts/check-fresh.sh | tee -a "$log" || failed_runs+=(check-fresh)
# The pure core's unit tests: no server, no bindgen needed for them alone
# (cargo test -p listingstats-core).
cargo test --workspace --lib 2>&1 | tee -a "$log" || failed_runs+=(unit)
# The Python client's unit tests (splitting and merging; no server).
py=$(scripts/pyenv.sh)
dashpy=$(scripts/dashenv.sh)
"$py" -m pytest -q -p no:cacheprovider clients/python/tests 2>&1 | tee -a "$log" || failed_runs+=(client)
cargo build  # the cluster tests load target/debug/liblistingstats.so
for s in "${servers[@]}"; do
  echo "== integration tests on $s: $("${path[$s]}" --version)" | tee -a "$log"
  # --no-fail-fast: every binary runs, so the total counts every failure.
  REDIS_SERVER=${path[$s]} cargo test --no-fail-fast --test '*' 2>&1 | tee -a "$log" || failed_runs+=("$s")
  # A real 3-master + 3-replica cluster against one node (tests/cluster).
  echo "== cluster tests on $s" | tee -a "$log"
  REDIS_SERVER=${path[$s]} LISTINGSTATS_MODULE=$PWD/target/debug/liblistingstats.so \
    "$py" -m pytest -q -p no:cacheprovider tests/cluster 2>&1 | tee -a "$log" || failed_runs+=("$s-cluster")
  # What operators do while the module works (a master and its replica,
  # and a cluster), each pair of work and operation.
  echo "== operations tests on $s" | tee -a "$log"
  REDIS_SERVER=${path[$s]} LISTINGSTATS_MODULE=$PWD/target/debug/liblistingstats.so \
    "$py" -m pytest -q -p no:cacheprovider tests/ops 2>&1 | tee -a "$log" || failed_runs+=("$s-ops")
  # The dashboard service (its own venv): HTTP and Grafana endpoints,
  # Prometheus scraping it, headless Chromium showing the page.
  echo "== dashboard tests on $s" | tee -a "$log"
  REDIS_SERVER=${path[$s]} LISTINGSTATS_MODULE=$PWD/target/debug/liblistingstats.so \
    "$dashpy" -m pytest -q -p no:cacheprovider tests/dashboard 2>&1 | tee -a "$log" || failed_runs+=("$s-dashboard")
done
((${#failed_runs[@]} == 0)) || echo "failed runs: ${failed_runs[*]}"
# One closing line for the whole suite (check-fresh, unit, and every
# integration binary on every server).
awk '/^test result:/ || /^[0-9]+ (passed|failed|error).* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|error)/) f += $i } }
     /^check-fresh:/ { p += $2; f += $4 }
     END { printf "suite: %d passed, %d failed\n", p, f; if (p == 0 || f > 0) exit 1 }' "$log"
((${#failed_runs[@]} == 0))
