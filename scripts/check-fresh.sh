#!/usr/bin/env bash
# Checks the dependency detection of scripts/install-deps.sh against fake
# machine roots (nothing on the host is removed or installed): a fresh Debian
# image that ships only libclang-cpp, a bare machine, and machines where
# bindgen would find libclang. Prints one line per case and a closing total.
set -euo pipefail
. "$(dirname "$0")/lib/detect.sh"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
passed=0 failed=0

# case NAME EXPECTED-MISSING FILE...: builds a fake root holding FILEs (an
# entry under usr/bin is made executable) and compares what is detected.
case_() {
  local name=$1 expected=$2 dir="$root/$1"; shift 2
  mkdir -p "$dir"
  local f
  for f in "$@"; do
    mkdir -p "$dir/$(dirname "$f")"
    : > "$dir/$f"
    case $f in usr/bin/*) chmod +x "$dir/$f" ;; esac
  done
  local got
  got=$(missing_packages "$dir" | tr '\n' ' ' | sed 's/ $//')
  if [ "$got" = "$expected" ]; then
    echo "ok   $name: missing [$got]"
    passed=$((passed + 1))
  else
    echo "FAIL $name: missing [$got], expected [$expected]"
    failed=$((failed + 1))
  fi
}

redis=(usr/bin/redis-server usr/bin/redis-cli usr/bin/redis-benchmark
       usr/bin/chromium usr/bin/prometheus usr/bin/promtool)
case_ nothing-present "redis-server redis-tools libclang-dev chromium prometheus"
case_ only-libclang-cpp "redis-server redis-tools libclang-dev chromium prometheus" \
  usr/lib/llvm-14/lib/libclang-cpp.so.14 usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
case_ redis-and-libclang-cpp "libclang-dev" "${redis[@]}" \
  usr/lib/llvm-14/lib/libclang-cpp.so.14 usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
case_ libclang-dev "" "${redis[@]}" \
  usr/lib/llvm-14/lib/libclang-cpp.so.14 usr/lib/llvm-14/lib/libclang.so usr/lib/x86_64-linux-gnu/libclang-14.so.1
case_ libclang1-only "" "${redis[@]}" usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6
case_ local-llvm "" "${redis[@]}" usr/local/llvm-18/lib/libclang.so
case_ cli-without-benchmark "redis-tools" usr/bin/redis-server usr/bin/redis-cli usr/lib/libclang.so \
  usr/bin/chromium usr/bin/prometheus usr/bin/promtool
case_ prometheus-without-promtool "prometheus" usr/bin/redis-server usr/bin/redis-cli \
  usr/bin/redis-benchmark usr/lib/libclang.so usr/bin/chromium usr/bin/prometheus

echo "check-fresh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
