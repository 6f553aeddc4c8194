"""The README demo: a week of storefront events for a few listings, written
through LISTINGSTATS.INCR (with redelivered events), then read back."""

import datetime
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))
from redislab import Server  # noqa: E402

LISTINGS = ["2149", "2150", "2152", "2155", "2156"]
DAY0 = 1451260800  # 2015-12-28T00:00:00Z
DAYS = 7
FUNNEL = [  # event, chance given the step before it happened
    ("ldp:sellPanel:addToCart:impression", 1.0),
    ("ldp:sellPanel:addToCart:click", 0.2),
    ("cart::checkoutNow:impression", 0.8),
    ("cart::checkoutNow:click", 0.4),
]


def events(rng):
    n = 0
    for day in range(DAYS):
        for listing in LISTINGS:
            for _visit in range(rng.randint(10, 40)):
                at = DAY0 + day * 86400 + rng.randint(0, 86399)
                for step, (name, chance) in enumerate(FUNNEL):
                    if rng.random() >= chance:
                        break
                    n += 1
                    yield listing, name, at + step * 30, "evt-%d" % n


def main():
    rng = random.Random(2015)
    stream = list(events(rng))
    redelivered = rng.sample(stream, len(stream) // 20)  # 5% sent twice
    with Server(module_args=["timezone", "UTC"]) as srv:
        c = srv.client()
        replies = c.pipeline([["LISTINGSTATS.INCR", l, n, "AT", at, "ID", i] for l, n, at, i in stream + redelivered])
        errors = [r for r in replies if isinstance(r, Exception)]
        print("sent %d events (%d of them redelivered) through LISTINGSTATS.INCR, %d errors"
              % (len(stream) + len(redelivered), len(redelivered), len(errors)))
        print()
        print("%-10s %-8s %12s %8s %14s %10s" % ("day", "listing", "impressions", "clicks", "checkout-imp", "checkouts"))
        for day in range(DAYS):
            date = datetime.datetime.fromtimestamp(DAY0 + day * 86400, datetime.timezone.utc).strftime("%Y-%m-%d")
            for listing in LISTINGS:
                flat = c.call("LISTINGSTATS.GET", listing, date)
                got = dict(zip(flat[::2], flat[1::2]))
                print("%-10s %-8s %12d %8d %14d %10d" % (date, listing, *[got.get(n, 0) for n, _ in FUNNEL]))
        print()
        ids = ",".join(LISTINGS)
        first = datetime.datetime.fromtimestamp(DAY0, datetime.timezone.utc).strftime("%Y-%m-%d")
        last = datetime.datetime.fromtimestamp(DAY0 + (DAYS - 1) * 86400, datetime.timezone.utc).strftime("%Y-%m-%d")
        print("LISTINGSTATS.QUERY cart_to_checkout_ctr,ldp_add_to_cart_ctr %s %s %s GROUPBY LISTING" % (first, last, ids))
        print("%-22s %-8s %10s %12s %8s" % ("metric", "listing", "numerator", "denominator", "value"))
        for metric, _date, listing, num, den, value in c.call(
                "LISTINGSTATS.QUERY", "cart_to_checkout_ctr,ldp_add_to_cart_ctr", first, last, ids, "GROUPBY", "LISTING"):
            shown = "%.2f%%" % float(value) if value is not None else "-"
            print("%-22s %-8s %10d %12d %8s" % (metric, listing, num, den, shown))
        print()
        print("the old Lua script's output, for the last two days (FORMAT LEGACY):")
        prev = datetime.datetime.fromtimestamp(DAY0 + (DAYS - 2) * 86400, datetime.timezone.utc).strftime("%Y-%m-%d")
        for line in c.call("LISTINGSTATS.QUERY", "cart_to_checkout_ctr,ldp_add_to_cart_ctr", prev, last, "2149,2155",
                           "FORMAT", "LEGACY"):
            print("  " + line)
        print()
        print("top 3 listings by add-to-cart rate over the week, at least 50 impressions (LISTINGSTATS.TOP):")
        for listing, num, den, value in c.call("LISTINGSTATS.TOP", "ldp_add_to_cart_ctr", first, last, 3, "MINDENOM", 50):
            print("  %-6s %3d / %3d = %.2f%%" % (listing, num, den, float(value)))
        print()
        print("the same data, as any Redis client sees it:")
        print("  HGETALL 2015-12-31_2155 ->", c.call("HGETALL", "2015-12-31_2155"))
        print()
        info = c.call("INFO", "listingstats")
        print("\n".join("  " + l for l in info.splitlines() if l and not l.startswith("#")))


if __name__ == "__main__":
    main()
