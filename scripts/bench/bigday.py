"""Benchmark `bigday`: the worst PING wait from another process while one
big day (600,000 listings) is queried, ranked and rendered, and while the
index is rebuilt: issue 11's stall cases at default limits."""

import random
import time

from redislab import RedisError, Server  # noqa: E402
from harness import SERVER_CPU, used_memory  # noqa: E402
from star import StallProbe  # noqa: E402

DAY = "2015-12-22"
SMALL_DAY = "2015-12-23"
SMALL = 25_000


class MemoryPeak:
    """Samples INFO used_memory every 5 ms from a thread; `peak` is the most seen."""

    def __init__(self, port):
        import threading
        from redislab import Client
        self.client = Client(port)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, used_memory(self.client))
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def section_bigday(listings=600_000):
    """Worst PING wait while a day with `listings` day hashes is queried."""
    rows = []
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()

        # Listings arrive in no particular order, as in production (the
        # index then holds them unsorted).
        order = list(range(1, listings + 1))
        random.Random(5).shuffle(order)

        def commands():
            for i in order:
                yield ["HSET", "%s_%d" % (DAY, i), "cart::checkoutNow:impression", 1 + i % 11,
                       "cart::checkoutNow:click", i % 4]
        c.send_all(commands())
        # A smaller day whose JSON answer is just at the max-json-rows limit.
        c.send_all(["HSET", "%s_%d" % (SMALL_DAY, i), "cart::checkoutNow:impression", 2,
                    "cart::checkoutNow:click", 1] for i in range(1, SMALL + 1))
        q = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", DAY, DAY, "*"]
        # The index is current (kept from the writes' notifications); the
        # cache is empty until a query reads the day.
        cases = [
            ("`QUERY * GROUPBY TOTAL`, cache cold (reads every hash, fills the cache)", q + ["GROUPBY", "TOTAL"]),
            ("`QUERY * GROUPBY TOTAL`", q + ["GROUPBY", "TOTAL"]),
            ("`QUERY * GROUPBY DAY` (%d rows)" % listings, q),
            ("`QUERY * FORMAT JSON` (%d rows): refused, over max-json-rows" % listings, q + ["FORMAT", "JSON"]),
            ("`QUERY * FORMAT JSON` of %s (%d rows, the max-json-rows default)" % (SMALL_DAY, SMALL),
             ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", SMALL_DAY, SMALL_DAY, "*", "FORMAT", "JSON"]),
            ("`TOP cart_to_checkout_ctr ... 10`",
             ["LISTINGSTATS.TOP", "cart_to_checkout_ctr", DAY, DAY, 10]),
        ]
        for label, args in cases:
            with StallProbe(srv.port) as probe:
                t = time.perf_counter()
                try:
                    c.call(*args)
                except RedisError as e:
                    if "max-json-rows" not in str(e):
                        raise
                wall = time.perf_counter() - t
            rows.append((label, probe.worst * 1000, wall * 1000))
        # Ranges of tens of millions of cells (explicit listings over the
        # years 0000-9999), with max-query-cells raised for them: the worst
        # PING wait, and the most memory the server used meanwhile.
        c.call("CONFIG", "SET", "listingstats.max-query-cells", 1_000_000_000)
        for n in (10, 30):
            ids = ",".join(str(i) for i in range(1, n + 1))
            args = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "0000-01-01", "9999-12-31", ids, "GROUPBY", "TOTAL"]
            base = used_memory(c)
            with StallProbe(srv.port) as probe, MemoryPeak(srv.port) as peak:
                t = time.perf_counter()
                c.call(*args)
                wall = time.perf_counter() - t
            rows.append(("`QUERY` %d listings over 0000-01-01..9999-12-31 (%.1fM cells), `max-query-cells 1e9`; "
                         "memory above the start: %.1f MB" % (n, n * 3_652_425 / 1e6, (peak.peak - base) / 1e6),
                         probe.worst * 1000, wall * 1000))
        c.call("CONFIG", "SET", "listingstats.max-query-cells", 1_000_000)
        c.call("CONFIG", "SET", "listingstats.key-prefix", "x:")
        c.call("CONFIG", "SET", "listingstats.key-prefix", "")
        with StallProbe(srv.port) as probe:
            t = time.perf_counter()
            c.call(*q, "GROUPBY", "TOTAL")
            wall = time.perf_counter() - t
        rows.append(("index rebuild, then `QUERY * GROUPBY TOTAL`", probe.worst * 1000, wall * 1000))
    lines = [
        "## One big day: %d listings" % listings,
        "",
        "%d day hashes on %s (two counters each, plain HSET, listings in shuffled order), default limits. A second process "
        "PINGs every millisecond while each command runs once; the longest wait is what another "
        "client would have seen." % (listings, DAY),
        "",
        "| running | longest PING wait, ms | command wall ms |",
        "|---|---:|---:|",
    ]
    for label, worst, wall in rows:
        lines.append("| %s | %.1f | %.0f |" % (label, worst, wall))
    lines += ["", "Goal (issue 11): no PING waits more than 10 ms in any of these."]
    return "\n".join(lines)
