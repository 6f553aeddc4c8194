"""Benchmark `dashboard`: the five panels of a site-wide dashboard polled by
1 and 1,000 connections, with and without `MAXAGE 1000`, at 150,000 and
1,000,000 day hashes, on one node and on a 3-master cluster; and how the
site-wide answer by date grows with the number of listings (analytics on
write: O(days)).

While the 1,000 connections poll, a writer INGESTs events (one batch of
20 events every 10 ms, about 2,000 events a second, to the day the panels
end on), as a live site does: the answers change as events arrive, so
calls without MAXAGE share only computations under way."""

import contextlib
import csv
import datetime
import io
import subprocess
import threading
import time

from redislab import Client, Server, commandstats  # noqa: E402
from harness import LOAD_PIN, SERVER_CPU  # noqa: E402
from query import load_days  # noqa: E402
from cluster import slot_of, start_cluster, stop_cluster  # noqa: E402

START = "2015-12-17"
# Calls per size of the growth table.
CALLS = 5000
METRIC = "cart_to_checkout_ctr"


def day(n):
    return (datetime.date.fromisoformat(START) + datetime.timedelta(days=n - 1)).isoformat()


def panels():
    d1, d24, d30 = day(1), day(24), day(30)
    return [
        ("`QUERY m D1 D30 '*' GROUPBY DATE`", ["LISTINGSTATS.QUERY", METRIC, d1, d30, "*", "GROUPBY", "DATE"]),
        ("`QUERY m D24 D30 '*' GROUPBY TOTAL`", ["LISTINGSTATS.QUERY", METRIC, d24, d30, "*", "GROUPBY", "TOTAL"]),
        ("`TOP m D30 D30 10`", ["LISTINGSTATS.TOP", METRIC, d30, d30, 10]),
        ("`TOP m D24 D30 10 RANK WILSON`", ["LISTINGSTATS.TOP", METRIC, d24, d30, 10, "RANK", "WILSON"]),
        ("`QUERY m D1 D30 2155 GROUPBY DAY`", ["LISTINGSTATS.QUERY", METRIC, d1, d30, "2155", "GROUPBY", "DAY"]),
    ]


def benchmark(ports, args, clients, requests):
    """redis-benchmark against each of `ports` at once (clients split
    between them): (requests per second, p50 ms, p99 ms), the worst p99;
    (the error, None, None) when the server refused a call."""
    procs = []
    for port in ports:
        procs.append(subprocess.Popen(
            [*LOAD_PIN, "redis-benchmark", "-p", str(port), "-c", str(max(1, clients // len(ports))),
             "-n", str(max(1, requests // len(ports))), "--csv", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    rps, p50, p99 = 0.0, 0.0, 0.0
    error = None
    for p in procs:
        out, err = p.communicate()
        rows = [r for r in csv.reader(io.StringIO(out)) if r and r[0] != "test"]
        if not rows:
            # An error reply stops redis-benchmark: say which.
            failed = [l for l in err.splitlines() if l.startswith("Error from server")]
            if not failed:
                raise SystemExit("redis-benchmark %s gave no result:\n%s%s" % (args, out, err))
            error = failed[0][len("Error from server: "):]
            continue
        r = rows[-1]
        rps += float(r[1])
        p50 = max(p50, float(r[4]))
        p99 = max(p99, float(r[6]))
    if error:
        return error, None, None
    return rps, p50, p99


def settle(conns, timeout=120):
    """Waits until no node has cluster work under way (queries waiting for
    parts, transfers not acknowledged, works queued): a refused run leaves
    parts behind that the next run would otherwise queue behind."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = 0
        for c in conns:
            info = c.call("INFO", "listingstats")
            for name in ("cluster_queries_waiting", "cluster_transfers",
                         "works_waiting_for_memory", "queries_waiting_for_memory"):
                busy += int(info.split("listingstats_%s:" % name)[1].split()[0])
        if busy == 0:
            return
        time.sleep(0.2)


def cpu_seconds(clients):
    total = 0.0
    for c in clients:
        info = c.call("INFO", "cpu")
        for line in info.splitlines():
            if line.startswith(("used_cpu_sys:", "used_cpu_user:")):
                total += float(line.split(":")[1])
    return total


class Writer:
    """INGESTs a batch of 20 events every 10 ms to `port` (a cluster node
    forwards each to its owner) until stopped."""

    def __init__(self, port, listings):
        self.port, self.listings = port, listings
        self.stop = threading.Event()
        self.sent = 0

    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def run(self):
        c = Client(self.port)
        at = int(datetime.datetime.fromisoformat(day(30) + "T12:00:00+00:00").timestamp())
        i = 0
        while not self.stop.is_set():
            events = []
            for _ in range(20):
                i += 1
                events.append('{"name":"cart::checkoutNow:%s","listingId":%d,"message_date":%d}'
                              % ("click" if i % 5 == 0 else "impression", 1 + i * 7919 % self.listings, at))
            c.call("LISTINGSTATS.INGEST", *events)
            self.sent += 20
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_panels(ports, clients, listings, results, label):
    """Every panel at 1 and 1,000 connections, with and without MAXAGE."""
    conns = [Client(p) for p in ports]
    for c in conns:
        # The day hashes were written by plain HSET on a running server:
        # the first '*' query reads every one of them (their totals are
        # not known yet), 1,000,020 at the largest size.
        c.call("CONFIG", "SET", "listingstats.max-query-cells", 2000000)
    for name, args in panels():
        for c in conns:
            c.call(*args)  # warm: indexes built, rows cached
        for n_clients in (1, 1000):
            for maxage in (None, 1000):
                asked = list(args) + (["MAXAGE", maxage] if maxage else [])
                settle(conns)
                requests = 200 if n_clients == 1 else 10000
                if n_clients == 1:
                    # One client alone: each call computes (nothing to share
                    # it with, and no kept answer without MAXAGE).
                    for c in conns:
                        c.call("CONFIG", "SET", "listingstats.answer-cache-memory",
                               "64mb" if maxage else "0")
                    cpu0 = cpu_seconds(conns)
                    rps, p50, p99 = benchmark(ports[:1], asked, 1, requests)
                else:
                    for c in conns:
                        c.call("CONFIG", "SET", "listingstats.answer-cache-memory", "64mb")
                    with Writer(ports[0], listings):
                        cpu0 = cpu_seconds(conns)
                        rps, p50, p99 = benchmark(ports, asked, n_clients, requests)
                cpu = (cpu_seconds(conns) - cpu0) / requests * 1000
                if isinstance(rps, str):  # refused: the error, no figures
                    results.append((label, name, n_clients, maxage, rps, None, None, None))
                    print("  %s %s c=%d maxage=%s: %s" % (label, name, n_clients, maxage, rps))
                    continue
                results.append((label, name, n_clients, maxage, rps, p50, p99, cpu))
                print("  %s %s c=%d maxage=%s: %.0f/s p50 %.1f p99 %.1f cpu %.3f ms" % (
                    label, name, n_clients, maxage, rps, p50, p99, cpu))
    # The floor of this machine at these connections, asked the same way:
    # a native PING, which costs the server next to nothing.
    name = "`PING` (native control)"
    for n_clients in (1, 1000):
        settle(conns)
        requests = 200 if n_clients == 1 else 10000
        with Writer(ports[0], listings) if n_clients > 1 else contextlib.nullcontext():
            cpu0 = cpu_seconds(conns)
            rps, p50, p99 = benchmark(ports if n_clients > 1 else ports[:1], ["PING"], n_clients, requests)
        cpu = (cpu_seconds(conns) - cpu0) / requests * 1000
        results.append((label, name, n_clients, None, rps, p50, p99, cpu))
        print("  %s %s c=%d: %.0f/s p50 %.1f p99 %.1f cpu %.3f ms" % (label, name, n_clients, rps, p50, p99, cpu))


def growth(sizes=(500, 5000, 33334), days=30):
    """Server µs per `'*' GROUPBY DATE` over 30 days, one client, no kept
    answers, by the number of listings (day hashes = listings × 30)."""
    out = []
    for listings in sizes:
        with Server(cpu=SERVER_CPU) as srv:
            c = srv.client()
            load_days(c, listings, days, START)
            c.call("CONFIG", "SET", "listingstats.answer-cache-memory", "0")
            # Written by HSET: the first call reads every day hash once.
            c.call("CONFIG", "SET", "listingstats.max-query-cells", 2000000)
            args = ["LISTINGSTATS.QUERY", METRIC, day(1), day(30), "*", "GROUPBY", "DATE"]
            want = c.call(*args)
            c.call("CONFIG", "RESETSTAT")
            for _ in range(CALLS):
                assert c.call(*args) == want
            us = commandstats(c)["listingstats.query"]["usec_per_call"]
            info = c.call("INFO", "listingstats")
            totals = int(info.split("listingstats_totals_days:")[1].split()[0])
            out.append((listings * days, us, totals))
            print("  growth %d day hashes: %.1f us per call (totals days %d)" % (listings * days, us, totals))
    return out


def load_cluster_days(nodes, listings, days):
    """load_days' hashes, tagged, each sent to its owner."""
    owner = {}
    for srv in nodes:
        for entry in srv.client().call("CLUSTER", "SLOTS"):
            for s in range(entry[0], entry[1] + 1):
                owner[s] = entry[2][1]
    first = datetime.date.fromisoformat(START)
    per = {srv.port: [] for srv in nodes}
    for i in range(days):
        d = (first + datetime.timedelta(days=i)).isoformat()
        for listing in range(1, listings + 1):
            n = listing * 7 + i
            per[owner[slot_of(str(listing))]].append(
                ["HSET", "%s_{%d}" % (d, listing),
                 "ldp:sellPanel:addToCart:impression", 20 + n % 50, "ldp:sellPanel:addToCart:click", n % 9,
                 "cart::checkoutNow:impression", n % 11, "cart::checkoutNow:click", n % 4])
    for srv in nodes:
        srv.client().send_all(per[srv.port], batch=5000)


def section_dashboard(sizes=((5000, "150,000"), (33334, "1,000,000"))):
    """The dashboard panels, one node and a 3-master cluster."""
    results = []
    for listings, label in sizes:
        with Server(cpu=SERVER_CPU) as srv:
            load_days(srv.client(), listings, 30, START)
            run_panels([srv.port], 1, listings, results, "one node, %s" % label)
        nodes = start_cluster(3)
        try:
            load_cluster_days(nodes, listings, 30)
            run_panels([n.port for n in nodes], 1, listings, results, "cluster, %s" % label)
        finally:
            stop_cluster(nodes)
    grown = growth()
    lines = [
        "## Dashboards: five panels, 1 and 1,000 connections",
        "",
        "Day hashes of 30 days written with plain HSET (four counters each). Each panel is "
        "asked by `redis-benchmark --csv` (a C client; on the cluster, one redis-benchmark per "
        "master, the connections split between them: any node answers). One connection: 200 "
        "calls, every one computed (`answer-cache-memory 0` without MAXAGE). 1,000 connections: "
        "10,000 calls while a writer INGESTs about 2,000 events a second to the last day, so "
        "answers change as events arrive. Latencies are the client's (p50, p99, ms; on the "
        "cluster the worst node's); server CPU is `used_cpu_user + used_cpu_sys` of every node "
        "per call.",
        "",
        "| data | panel | connections | MAXAGE | calls/s | p50 ms | p99 ms | server CPU ms/call |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, name, n, maxage, rps, p50, p99, cpu in results:
        if isinstance(rps, str):
            lines.append("| %s | %s | %d | %s | refused: `%s` | | | |" % (
                label, name, n, maxage or "—", rps[:120]))
            continue
        lines.append("| %s | %s | %d | %s | %.0f | %.2f | %.2f | %.3f |" % (
            label, name, n, maxage or "—", rps, p50, p99, cpu))
    lines += [
        "",
        "Goals at 1,000 connections: p99 ≤ 50 ms with MAXAGE 1000, ≤ 200 ms without.",
        "",
        "### `'*' GROUPBY DATE` by the number of day hashes",
        "",
        "One client, %d calls (each answer checked), every one computed; server time from `INFO commandstats` (with 200 calls the 1,000,000 row once measured 1.9×: the first calls after loading are slower)." % CALLS,
        "",
        "| day hashes | server µs per call | days from their totals (INFO) |",
        "|---:|---:|---:|",
    ]
    for keys, us, totals in grown:
        lines.append("| %d | %.1f | %d |" % (keys, us, totals))
    lines += [
        "",
        "Goal: at 1,000,000 day hashes within 1.5× the time at 15,000 (measured %.2f×)."
        % (grown[-1][1] / grown[0][1]),
    ]
    return "\n".join(lines)
