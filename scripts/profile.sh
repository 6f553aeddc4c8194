#!/usr/bin/env bash
# Counts instructions per command with callgrind (repeatable, unlike
# timings): runs redis-server with the release module under valgrind, sends
# N pipelined commands with redis-benchmark, and prints the inclusive
# instruction counts per call of the busiest functions.
#
#   scripts/profile.sh LISTINGSTATS.INCR __rand_int__ ev DATE 2015-12-22
#   scripts/profile.sh HINCRBY 2015-12-22___rand_int__ ev 1
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
N=${N:-20000}
out=$(mktemp -d)
port=$(python3 -c 'import sys; sys.path.insert(0, "scripts"); import redislab; print(redislab.free_port())')
valgrind --tool=callgrind --callgrind-out-file="$out/cg" redis-server --port "$port" --save "" \
  --loadmodule "$PWD/target/release/liblistingstats.so" >"$out/vg.log" 2>&1 &
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-benchmark -p "$port" -P 16 -c 1 -n 2000 -r 10000 -q "$@" >/dev/null
callgrind_control -z >/dev/null 2>&1
redis-benchmark -p "$port" -P 16 -c 1 -n "$N" -r 10000 -q "$@" >/dev/null
callgrind_control -d >/dev/null 2>&1
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
sleep 2
f="$out/cg.1"  # the dump taken right after the measured calls
echo "instructions per call (inclusive), $N calls of: $*"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -E '%\)' | sed 's/,//g' \
  | awk -v n="$N" '{ c=$1/n; $1=""; $2=""; if (c >= 50) printf "%8.0f %s\n", c, $0 }' \
  | grep -v -E 'libc-start|below main|ld-linux|aeMain|:main |readQueryFromClient|0x0000' | cut -c1-150 | head -40
rm -rf "$out"
