"""Benchmark `top_range`: TOP over 7 days against TOP over one day, on the
same server in the same run (issue 31: within 2x of the one-day time).

5,000 listings x 30 days (150,000 day hashes) and 33,334 x 30 (1,000,020),
written by plain HSET, read once so the cache knows every row. Each call is
computed: `answer-cache-memory 0` keeps no answer, and one client at a time
never meets a computation under way. Server CPU per call is the server's
own used_cpu_user + used_cpu_sys over the calls; instructions (150,000 only)
are callgrind's count of the calls, exact and repeatable."""

import os

from redislab import MODULE, Server  # noqa: E402
from harness import SERVER_CPU, redis_benchmark, under_callgrind  # noqa: E402
from query import load_days  # noqa: E402
from dashboard import cpu_seconds, day  # noqa: E402

METRIC = "cart_to_checkout_ctr"


def calls():
    d24, d30 = day(24), day(30)
    return [
        ("`TOP m D30 D30 10` (1 day)", ["LISTINGSTATS.TOP", METRIC, d30, d30, 10]),
        ("`TOP m D24 D30 10` (7 days)", ["LISTINGSTATS.TOP", METRIC, d24, d30, 10]),
        ("`TOP m D24 D30 10 RANK WILSON` (7 days)", ["LISTINGSTATS.TOP", METRIC, d24, d30, 10, "RANK", "WILSON"]),
    ]


def warm(c):
    c.call("CONFIG", "SET", "listingstats.answer-cache-memory", 0)
    # 30 days of 33,334 listings are more than the default 1,000,000.
    c.call("CONFIG", "SET", "listingstats.max-query-cells", 2000000)
    # Every row read once: the cache knows them all.
    c.call("LISTINGSTATS.TOP", METRIC, day(1), day(30), 10)


def cpu_per_call(srv, c, args, n):
    before = cpu_seconds([c])
    redis_benchmark(srv.port, args, n, pipeline=1, clients=1)
    return (cpu_seconds([c]) - before) * 1000.0 / n


def section_top_range():
    # TOP_RANGE_BASELINE=path/to/another/liblistingstats.so adds its rows,
    # measured the same way in the same run (an older build, say).
    builds = [("this build", MODULE)]
    if os.environ.get("TOP_RANGE_BASELINE"):
        builds.append(("baseline", os.environ["TOP_RANGE_BASELINE"]))
    rows = []
    for listings, n in ((5000, 400), (33334, 100)):
        for build, module in builds:
            with Server(cpu=SERVER_CPU, module=module) as srv:
                c = srv.client()
                load_days(c, listings, 30)
                warm(c)
                first = None
                for label, args in calls():
                    c.call(*args)
                    # Median of three runs: this machine's timings wander.
                    ms = sorted(cpu_per_call(srv, c, args, n) for _ in range(3))[1]
                    first = first or ms
                    rows.append((listings * 30, build, label, ms, ms / first))
    counts = []

    def load(port):
        from redislab import Client
        c = Client(port)
        load_days(c, 5000, 30)
        warm(c)

    for label, args in calls():
        def measured(port, args=args):
            redis_benchmark(port, args, 20, pipeline=1, clients=1)
        _, total = under_callgrind(load, measured)
        counts.append((label, total / 20))
    lines = [
        "## TOP over a range",
        "",
        "Reproduce: `scripts/bench.sh top_range`. " + __doc__.split("\n\n", 1)[1].replace("\n", " "),
        "",
        "| day hashes | build | call | server CPU ms per call | vs 1 day |",
        "|---|---|---|---|---|",
    ]
    for hashes, build, label, ms, ratio in rows:
        lines.append("| {:,} | {} | {} | {:.3f} | {:.2f}x |".format(hashes, build, label, ms, ratio))
    lines += ["", "| call (150,000 day hashes) | instructions per call | vs 1 day |", "|---|---|---|"]
    for label, total in counts:
        lines.append("| {} | {:,.0f} | {:.2f}x |".format(label, total, total / counts[0][1]))
    return "\n".join(lines)
