"""Shared pieces of the benchmarks: the servers' placement on cores, load
from redis-benchmark, server-side cost from INFO commandstats, a PING
prober for stalls, memory readings, and the Lua baselines' common parts.
Each benchmark is one file beside this one; scripts/bench.py runs them."""

import datetime
import glob
import os
import platform
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))



EVENT = "ldp:sellPanel:addToCart:impression"


LUA_HINCRBY = "return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])"


# The dedup a Lua pipeline would do: skip a known id, else count and remember it.
LUA_DEDUP = """
if redis.call('EXISTS', KEYS[2]) == 1 then return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') end
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return v
"""


# The server runs on core 0 and the load on core 1 (where the machine has
# two), so the two do not steal each other's time.
SERVER_CPU = 0


LOAD_PIN = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def c_module(name):
    """Builds the C module scripts/bench/c/<name>.c against the redismodule.h
    the redis-module crate ships; returns the .so's path."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    out = os.path.join(root, "target", "bench", name + ".so")
    src = os.path.join(root, "scripts", "bench", "c", name + ".c")
    headers = sorted(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/redis-module-*/src/include/redismodule.h")))
    if not headers:
        raise SystemExit("redismodule.h not found: build the module first (cargo build --release)")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-I", os.path.dirname(headers[-1]), "-o", out, src],
                   check=True)
    return os.path.abspath(out)


def redis_benchmark(port, args, requests, pipeline=16, clients=4, keyspace=10000):
    """Runs redis-benchmark; returns its requests per second (client side)."""
    out = subprocess.run(
        [*LOAD_PIN, "redis-benchmark", "-p", str(port), "-P", str(pipeline), "-c", str(clients),
         "-n", str(requests), "-r", str(keyspace), "-q", *map(str, args)],
        check=True, capture_output=True, text=True).stdout
    # "-q" prints "<command>: 123456.78 requests per second, p50=..." after
    # carriage-return progress lines.
    for part in reversed(out.replace("\r", "\n").splitlines()):
        if "requests per second" in part:
            return float(part.split("requests per second")[0].split(":")[-1].strip())
    return float("nan")


def load_star(client, listings, days, start="2014-09-01"):
    """`listings` x `days` day hashes with the two checkout counters."""
    first = datetime.date.fromisoformat(start)

    def commands():
        for i in range(days):
            day = (first + datetime.timedelta(days=i)).isoformat()
            for listing in range(1, listings + 1):
                n = listing * 7 + i
                yield ["HSET", "%s_%d" % (day, listing), "cart::checkoutNow:impression", 1 + n % 11,
                       "cart::checkoutNow:click", n % 4]
    client.send_all(commands())


def used_memory(c):
    info = c.call("INFO", "memory")
    return int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("used_memory:")))


def machine():
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    redis_v = next((w[2:] for w in version if w.startswith("v=")), "?")
    return "%s, %d cores, Redis %s, Python %s" % (
        platform.machine(), os.cpu_count(), redis_v, platform.python_version())
