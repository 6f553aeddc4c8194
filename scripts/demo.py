"""The README demo: a week of storefront events from the load generator,
XADDed to a Redis Stream that the module follows (5% of them redelivered,
as a producer does after a failed acknowledgement), then read back with
GET, QUERY (also in the old Lua script's format) and TOP, and drawn as a
chart of daily click-through rates per listing (target/demo/ctr.png).

    python3 scripts/demo.py          the demo; its server is removed at the end
    python3 scripts/demo.py --keep   leaves the server running to explore, and
                                     starts the live dashboard on it

Hours are on (hour keys kept: the demo's days are in 2015), so the
dashboard shows hours too."""

import datetime
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import loadgen  # noqa: E402
from redislab import ROOT, Server  # noqa: E402

DAY0 = 1451260800  # 2015-12-28T00:00:00Z
DAYS = 7
EVENTS = 6000
LISTINGS = 6  # ids 2150..2155
FUNNEL = ["ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click",
          "cart::checkoutNow:impression", "cart::checkoutNow:click"]


def date(i):
    return datetime.datetime.fromtimestamp(DAY0 + i * 86400, datetime.timezone.utc).strftime("%Y-%m-%d")


def chart(c, listings, path):
    """Daily CTR per listing over the week, one panel per built-in metric."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("ldp_add_to_cart_ctr", "listing page: add-to-cart click-through rate"),
               ("cart_to_checkout_ctr", "cart: checkout click-through rate")]
    rows = c.call("LISTINGSTATS.QUERY", ",".join(m for m, _ in metrics), date(0), date(DAYS - 1),
                  ",".join(listings), "GROUPBY", "DAY")
    days = [date(i) for i in range(DAYS)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for ax, (metric, title) in zip(axes, metrics):
        for listing in listings:
            by_day = {d: float(v) for m, d, l, _n, _den, v in rows if m == metric and l == listing and v is not None}
            ax.plot([d[5:] for d in days], [by_day.get(d) for d in days], marker="o", label=listing)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("day (%s .. %s)" % (days[0], days[-1]))
        ax.set_ylabel("% (clicks / impressions x 100)")
        ax.grid(alpha=0.3)
    axes[1].legend(title="listing", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("LISTINGSTATS.QUERY ... GROUPBY DAY over the demo week")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)


def dashboard(redis_port, first, last):
    """The live dashboard on the kept server (scripts/dashboard.sh reads
    target/demo/redis.url when it is given no --redis), in its own session."""
    demo = os.path.join(ROOT, "target", "demo")
    os.makedirs(demo, exist_ok=True)
    with open(os.path.join(demo, "redis.url"), "w") as f:
        f.write("redis://127.0.0.1:%d\n" % redis_port)
    port = 8090
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:  # taken: any free port
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))
                port = free.getsockname()[1]
    log = open(os.path.join(demo, "dashboard.log"), "w")
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "dashboard.sh"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2).read()
            break
        except OSError:
            time.sleep(0.2)
    else:
        print("the dashboard did not start; see %s" % os.path.relpath(log.name, ROOT))
        return
    print()
    print("the live dashboard of the demo week (pid %d, log %s):"
          % (proc.pid, os.path.relpath(log.name, ROOT)))
    print("  http://127.0.0.1:%d/?from=%s&to=%s" % (port, first, last))
    print("  stop it with: kill %d" % proc.pid)


def main():
    keep = "--keep" in sys.argv[1:]
    step = DAYS * 86400 // EVENTS
    stream = loadgen.events(EVENTS, listings=LISTINGS, start=DAY0 + 60, step=step, dup_share=0.05, seed=2015)
    with Server(module_args=["timezone", "UTC", "hours", "yes", "hour-retention-days", "0"],
                keep=keep) as srv:
        c = srv.client()
        # Producers only XADD; the module follows the stream.
        c.send_all(("XADD", "events", "*", "event", json.dumps(e, separators=(",", ":"))) for e in stream)
        c.call("LISTINGSTATS.FOLLOW", "events")
        while True:
            state = dict(zip(*[iter(c.call("LISTINGSTATS.FOLLOWING")[0])] * 2))
            if state["lag"] == 0:
                break
            time.sleep(0.02)
        print("XADD of %d loadgen events to the stream 'events', then LISTINGSTATS.FOLLOW events:" % EVENTS)
        print("  LISTINGSTATS.FOLLOWING -> last-id %s, lag %d, applied %d, duplicates %d, rejected %d"
              % (state["last-id"], state["lag"], state["applied"], state["duplicates"], state["rejected"]))
        print("and one more click the old way:  LISTINGSTATS.INCR 2155 cart::checkoutNow:click DATE %s -> %s"
              % (date(DAYS - 1), c.call("LISTINGSTATS.INCR", "2155", "cart::checkoutNow:click", "DATE", date(DAYS - 1))))
        print()
        print("%-10s %-8s %12s %8s %14s %10s" % ("day", "listing", "impressions", "clicks", "checkout-imp", "checkouts"))
        listings = [str(2150 + i) for i in range(LISTINGS)]
        for day in range(DAYS):
            for listing in listings:
                flat = c.call("LISTINGSTATS.GET", listing, date(day))
                got = dict(zip(flat[::2], flat[1::2]))
                print("%-10s %-8s %12d %8d %14d %10d" % (date(day), listing, *[got.get(n, 0) for n in FUNNEL]))
        print()
        ids = ",".join(listings)
        first, last = date(0), date(DAYS - 1)
        print("LISTINGSTATS.QUERY cart_to_checkout_ctr,ldp_add_to_cart_ctr %s %s %s GROUPBY LISTING" % (first, last, ids))
        print("%-22s %-8s %10s %12s %8s" % ("metric", "listing", "numerator", "denominator", "value"))
        for metric, _date, listing, num, den, value in c.call(
                "LISTINGSTATS.QUERY", "cart_to_checkout_ctr,ldp_add_to_cart_ctr", first, last, ids, "GROUPBY", "LISTING"):
            shown = "%.2f%%" % float(value) if value is not None else "-"
            print("%-22s %-8s %10d %12d %8s" % (metric, listing, num, den, shown))
        print()
        print("the old Lua script's output, for the last two days (FORMAT LEGACY):")
        prev = date(DAYS - 2)
        for line in c.call("LISTINGSTATS.QUERY", "cart_to_checkout_ctr,ldp_add_to_cart_ctr", prev, last, "2150,2155",
                           "FORMAT", "LEGACY"):
            print("  " + line)
        print()
        print("top 3 listings by add-to-cart rate over the week, at least 100 impressions (LISTINGSTATS.TOP):")
        for listing, num, den, value in c.call("LISTINGSTATS.TOP", "ldp_add_to_cart_ctr", first, last, 3, "MINDENOM", 100):
            print("  %-6s %3d / %3d = %.2f%%" % (listing, num, den, float(value)))
        print("and ranked by the 95% Wilson lower bound instead (RANK WILSON: confident rates first):")
        for listing, num, den, value, bound in c.call("LISTINGSTATS.TOP", "ldp_add_to_cart_ctr", first, last, 3,
                                                      "RANK", "WILSON"):
            print("  %-6s %3d / %3d = %.2f%%, at least %.2f%%" % (listing, num, den, float(value), float(bound)))
        print()
        print("the same data, as any Redis client sees it:")
        print("  HGETALL %s_2155 ->" % date(3), c.call("HGETALL", "%s_2155" % date(3)))
        print()
        info = c.call("INFO", "listingstats")
        print("\n".join("  " + l for l in info.splitlines() if l and not l.startswith("#")))
        path = os.path.join(ROOT, "target", "demo", "ctr.png")
        chart(c, listings, path)
        print()
        print("chart of the daily click-through rates: %s" % path)
        if keep:
            print()
            print("the server keeps running with the demo data (pid %d):" % srv.proc.pid)
            print("  redis-cli -p %d" % srv.port)
            print("  stop it with: redis-cli -p %d shutdown nosave" % srv.port)
            dashboard(srv.port, first, last)


if __name__ == "__main__":
    main()
