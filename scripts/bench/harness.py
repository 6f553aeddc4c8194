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
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from redislab import MODULE, ROOT, Client, free_port  # noqa: E402



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
    out = os.path.join(ROOT, "target", "bench", name + ".so")
    src = os.path.join(ROOT, "scripts", "bench", "c", name + ".c")
    headers = sorted(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/redis-module-*/src/include/redismodule.h")))
    if not headers:
        raise SystemExit("redismodule.h not found: build the module first (cargo build --release)")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-I", os.path.dirname(headers[-1]), "-o", out, src],
                   check=True)
    return out


def under_callgrind(warm, measured, server_args=(), valgrind_args=()):
    """Runs redis-server with the release module under callgrind on a free
    port: `warm(port)`, then counters zeroed, `measured(port)`, and a dump.
    Returns (the dump's inclusive annotation, its total instructions): the
    measured part only, exact and repeatable, unlike timings."""
    out = tempfile.mkdtemp(prefix="cg-")
    port = free_port()
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg" % out, *valgrind_args,
                             "redis-server", "--port", str(port), "--save", "", "--loadmodule", MODULE,
                             *server_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                Client(port).call("PING")
                break
            except OSError:
                time.sleep(0.1)
        warm(port)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
        measured(port)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
    finally:
        proc.terminate()
        proc.wait()
    try:
        dump = sorted(glob.glob(out + "/cg.*"))[0]
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                              capture_output=True, text=True).stdout
        with open(dump) as f:
            total = next(int(line.split()[1]) for line in f
                         if line.startswith("summary:") or line.startswith("totals:"))
        return text, total
    finally:
        shutil.rmtree(out, ignore_errors=True)


def call_instructions(annotation):
    """The inclusive count of Redis's call() in a callgrind annotation: the
    commands, their replication, their stats."""
    for line in annotation.splitlines():
        if "???:call [" in line:
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError("no call() line in the callgrind output")


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
