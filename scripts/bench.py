"""Benchmarks. Each section measures the module against baselines doing the
same work on the same server in the same run, and reports ratios, so the
figures mean the same on any machine. Server-side cost is read from
INFO commandstats (usec_per_call); load comes from redis-benchmark."""

import datetime
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from redislab import ROOT, Server, commandstats  # noqa: E402

EVENT = "ldp:sellPanel:addToCart:impression"
LUA_HINCRBY = "return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])"
# The dedup a Lua pipeline would do: skip a known id, else count and remember it.
LUA_DEDUP = """
if redis.call('EXISTS', KEYS[2]) == 1 then return tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') end
local v = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return v
"""


def redis_benchmark(port, args, requests, pipeline=16, clients=4, keyspace=10000):
    subprocess.run(
        ["redis-benchmark", "-p", str(port), "-P", str(pipeline), "-c", str(clients),
         "-n", str(requests), "-r", str(keyspace), "-q", *map(str, args)],
        check=True, stdout=subprocess.DEVNULL)


def usec_per_call(srv, command_name, args, requests, rounds=3, **kw):
    """Median server-side µs per call of `command_name` over `rounds` runs."""
    c = srv.client()
    samples = []
    for _ in range(rounds):
        c.call("CONFIG", "RESETSTAT")
        redis_benchmark(srv.port, args, requests, **kw)
        stats = commandstats(c)[command_name]
        assert stats["calls"] >= requests, stats
        samples.append(stats["usec_per_call"])
    return statistics.median(samples)


def section_incr(requests=300_000):
    """LISTINGSTATS.INCR against HINCRBY and an EVALSHA script doing the same."""
    with Server() as srv:
        c = srv.client()
        sha = c.call("SCRIPT", "LOAD", LUA_HINCRBY)
        sha_dedup = c.call("SCRIPT", "LOAD", LUA_DEDUP)
        rows = [
            ("native `HINCRBY key field 1`", "hincrby",
             ["HINCRBY", "2015-12-22___rand_int__", EVENT, 1]),
            ("Lua `EVALSHA` doing the same HINCRBY", "evalsha",
             ["EVALSHA", sha, 1, "2015-12-22___rand_int__", EVENT, 1]),
            ("`LISTINGSTATS.INCR listing event DATE d`", "listingstats.incr",
             ["LISTINGSTATS.INCR", "__rand_int__", EVENT, "DATE", "2015-12-22"]),
            ("`LISTINGSTATS.INCR listing event AT t`", "listingstats.incr",
             ["LISTINGSTATS.INCR", "__rand_int__", EVENT, "AT", "1450742400"]),
            ("Lua `EVALSHA` with dedup (EXISTS, HINCRBY, SET PX), new ids", "evalsha",
             ["EVALSHA", sha_dedup, 2, "2015-12-22___rand_int__", "listingstats:seen:evt-__rand_int__",
              EVENT, 1, 604800000]),
            ("`LISTINGSTATS.INCR ... DATE d ID id`, new ids", "listingstats.incr",
             ["LISTINGSTATS.INCR", "__rand_int__", EVENT, "DATE", "2015-12-22", "ID", "evt-__rand_int__"]),
        ]
        results = []
        for label, name, args in rows:
            keyspace = 100_000_000 if any("evt-" in str(a) for a in args) else 10_000
            results.append((label, usec_per_call(srv, name, args, requests, keyspace=keyspace)))
    native = results[0][1]
    lua = results[1][1]
    lines = [
        "## INCR: one counter update",
        "",
        "%d calls per variant, redis-benchmark with pipeline 16 and 4 clients over 10,000 listings; "
        "server-side µs per call from `INFO commandstats`, median of 3 runs." % requests,
        "",
        "| command | µs per call | × native HINCRBY | Lua ÷ this |",
        "|---|---:|---:|---:|",
    ]
    for label, us in results:
        lines.append("| %s | %.3f | %.2f | %.1f |" % (label, us, us / native, lua / us))
    incr = results[2][1]
    lua_dedup, incr_id = results[4][1], results[5][1]
    lines += [
        "",
        "Goal: INCR within 1.3× of HINCRBY (measured %.2f×) and at least 3× faster than the Lua "
        "script (measured %.1f×). With ids, INCR against the Lua dedup script: %.1f× faster. "
        "New ids create a key each, so those rows grow the keyspace and cost more than updates."
        % (incr / native, lua / incr, lua_dedup / incr_id),
    ]
    return "\n".join(lines)


SECTIONS = {
    "incr": section_incr,
}


def machine():
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    redis_v = next((w[2:] for w in version if w.startswith("v=")), "?")
    return "%s, %d cores, Redis %s, Python %s" % (
        platform.machine(), os.cpu_count(), redis_v, platform.python_version())


def main(argv):
    names = argv or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit("unknown section(s) %s; known: %s" % (unknown, ", ".join(SECTIONS)))
    parts = []
    for name in names:
        print("running %s ..." % name, file=sys.stderr)
        parts.append(SECTIONS[name]())
    body = "\n\n".join(parts)
    if argv:
        print(body)
        return
    doc = "\n".join([
        "# Benchmarks",
        "",
        "Written by `scripts/bench.sh` on %s (%s). Every figure is a ratio against a baseline "
        "measured on the same server in the same run; absolute numbers are for this machine only."
        % (datetime.date.today().isoformat(), machine()),
        "",
        "Reproduce: `scripts/bench.sh` (all sections, rewrites this file) or "
        "`scripts/bench.sh <section>` (prints one: %s)." % ", ".join(SECTIONS),
        "",
        body,
        "",
    ])
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write(doc)
    print(doc)


if __name__ == "__main__":
    main(sys.argv[1:])
