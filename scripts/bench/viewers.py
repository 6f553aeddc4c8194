"""Benchmark `viewers`: 1 and 1,000 browsers watching the live dashboard
(dashboard/service.py) as server-sent-event streams, against one server
with 150,000 day hashes. Measured: queries per second reaching Redis
(INFO commandstats) against the distinct panels the service polls, and
the delay from an INGEST to the change on each viewer's stream (p50, p99).
The viewers run in the dashboard's venv (scripts/bench/sse_viewers.py)."""

import json
import os
import subprocess
import time
import urllib.request

from redislab import ROOT, Server, free_port  # noqa: E402
from harness import LOAD_PIN, SERVER_CPU  # noqa: E402
from query import load_days  # noqa: E402

START = "2015-12-17"
FROM, TO = START, "2016-01-15"  # every loaded day; INGEST writes to the last
AT = 1452859200  # 2016-01-15T12:00Z, the range's last day
INTERVAL = 1.0
ROUNDS = 20


def dashenv():
    return subprocess.run([os.path.join(ROOT, "scripts", "dashenv.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()


def watch(py, service, port, viewers):
    out = subprocess.run(
        [*LOAD_PIN, py, os.path.join(ROOT, "scripts", "bench", "sse_viewers.py"), service,
         str(port), str(viewers), str(ROUNDS), "from=%s&to=%s" % (FROM, TO),
         "ldp_add_to_cart_ctr", str(AT)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_viewers(listings=5000, days=30):
    py = dashenv()
    results = []
    with Server(cpu=SERVER_CPU, module_args=["hours", "yes", "hour-retention-days", "0"]) as srv:
        load_days(srv.client(), listings, days, START)
        http = free_port()
        service = subprocess.Popen(
            [*LOAD_PIN, py, os.path.join(ROOT, "dashboard", "service.py"), "--redis",
             "redis://127.0.0.1:%d" % srv.port, "--port", str(http), "--interval", str(INTERVAL)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:%d" % http
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.1)
            for viewers in (1, 1000):
                r = watch(py, url, srv.port, viewers)
                results.append(r)
                print("  %d viewers: %.1f queries/s at Redis, %d panels, p50 %.0f ms, p99 %.0f ms, "
                      "missed %d" % (viewers, r["queries_per_s"], r["panels"], r["p50_ms"],
                                     r["p99_ms"], r["missed"]))
        finally:
            service.terminate()
            service.wait(30)
    lines = [
        "## Dashboard viewers: one query per panel per interval",
        "",
        "`dashboard/service.py --interval %g` on one server with %s day hashes (%d listings × %d "
        "days, plain HSET), hours on. Viewers are server-sent-event streams of the page's view "
        "(every listing, %s … %s: 2 metrics × 5 panels), all open at once in one asyncio "
        "process. Queries per second are `LISTINGSTATS.QUERY` + `TOP` calls in `INFO "
        "commandstats` over %g s while every viewer watches; the delay is from an INGEST's reply "
        "to the first message on each viewer's stream that shows the new total (%d INGESTs, "
        "each viewer measured each time)."
        % (INTERVAL, "{:,}".format(listings * days), listings, days, FROM, TO, 10.0, ROUNDS)
        + " INGESTs come at random points of the interval.",
        "",
        "| viewers | distinct panels | queries/s at Redis | per panel per interval | "
        "INGEST → stream p50 ms | p99 ms | max ms | not seen in 30 s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append("| %d | %d | %.1f | %.2f | %.0f | %.0f | %.0f | %d |" % (
            r["viewers"], r["panels"], r["queries_per_s"],
            r["queries_per_s"] * INTERVAL / r["panels"], r["p50_ms"], r["p99_ms"], r["max_ms"],
            r["missed"]))
    one, many = results
    lines += [
        "",
        "1,000 viewers against 1: %.2f× the queries at Redis. Each page is %d queries; the same "
        "viewers polling Redis themselves once per interval would send %s a second. The delay "
        "is bounded by the interval (a change waits for the next round) plus one round of "
        "queries and the fan-out to every stream."
        % (many["queries_per_s"] / one["queries_per_s"], many["panels"],
           "{:,}".format(int(many["panels"] * many["viewers"] / INTERVAL))),
    ]
    return "\n".join(lines)
