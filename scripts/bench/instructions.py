"""Benchmark `instructions`: INCR against HINCRBY and Lua by instruction counts."""

import shutil

from harness import EVENT, LUA_DEDUP, LUA_HINCRBY, call_instructions, redis_benchmark, under_callgrind  # noqa: E402


def callgrind_call_cost(srv_args, bench_args, calls=20_000):
    """Instructions per call spent in Redis's call() (the command itself,
    its replication and stats), counted by callgrind."""
    text, _ = under_callgrind(lambda port: redis_benchmark(port, bench_args, 2000, clients=1),
                              lambda port: redis_benchmark(port, bench_args, calls, clients=1),
                              server_args=srv_args)
    return call_instructions(text) / calls


def section_instructions():
    """INCR against HINCRBY and Lua by instruction counts."""
    if not shutil.which("valgrind"):
        return "## Instructions per call\n\nvalgrind is not installed: skipped (apt-get install valgrind)."
    rows = [
        ("native `HINCRBY key field 1`", ["HINCRBY", "2015-12-22___rand_int__", EVENT, 1]),
        ("Lua `EVAL` doing the same HINCRBY", ["EVAL", LUA_HINCRBY, 1, "2015-12-22___rand_int__", EVENT, 1]),
        ("`LISTINGSTATS.INCR listing event DATE d`", ["LISTINGSTATS.INCR", "__rand_int__", EVENT, "DATE", "2015-12-22"]),
        ("Lua `EVAL` with dedup (EXISTS, HINCRBY, SET PX), with ids",
         ["EVAL", LUA_DEDUP, 2, "2015-12-22___rand_int__", "listingstats:seen:evt-__rand_int__", EVENT, 1, 604800000]),
        ("`LISTINGSTATS.INCR ... DATE d ID id`, with ids",
         ["LISTINGSTATS.INCR", "__rand_int__", EVENT, "DATE", "2015-12-22", "ID", "evt-__rand_int__"]),
    ]
    costs = [(label, callgrind_call_cost([], args)) for label, args in rows]
    native, lua = costs[0][1], costs[1][1]
    lines = [
        "## Instructions per call (callgrind)",
        "",
        "Timings on a small shared machine move by ±30% from run to run; instruction counts move much less "
        "(incremental rehashing still varies a little), and their ratios hardly at all. "
        "20,000 calls each under `valgrind --tool=callgrind`, pipeline 16; instructions inclusive of Redis's "
        "`call()` (the command, its replication, its stats). Keys drawn from 10,000 (ids from 10,000 too, so "
        "later ids repeat and are skipped: the dedup rows mix new and known ids for both).",
        "",
        "| command | instructions per call | × native HINCRBY | Lua ÷ this |",
        "|---|---:|---:|---:|",
    ]
    for label, n in costs:
        lines.append("| %s | %.0f | %.2f | %.2f |" % (label, n, n / native, lua / n))
    lines += ["", "INCR against the Lua script doing the same HINCRBY: %.2f× fewer instructions; with ids, "
              "against the Lua dedup script: %.2f×." % (lua / costs[2][1], costs[3][1] / costs[4][1])]
    return "\n".join(lines)
