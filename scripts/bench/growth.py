"""Benchmark `growth`: How QUERY time grows with keyspace size and range length."""

import datetime
import os
import time

from redislab import ROOT, Server, commandstats  # noqa: E402
from harness import SERVER_CPU, load_star  # noqa: E402


def server_ms(c, args, name, repeat=3):
    """Server-side ms per call of a command (sliced queries: their slices)."""
    c.call("CONFIG", "RESETSTAT")
    for _ in range(repeat):
        c.call(*args)
    return commandstats(c)[name]["usec_per_call"] / 1000


VARIANTS = ("explicit 100 listings, cache", "explicit 100 listings, no cache",
            "* (index), cache", "* (index), no cache")


def section_growth(sizes=(10_000, 100_000, 1_000_000), days=100, ranges=(1, 7, 28, 90)):
    """How QUERY time grows with keyspace size and range length."""
    first = datetime.date(2015, 1, 1)
    results = {}  # (variant, size, range) -> ms
    for size in sizes:
        listings = size // days
        with Server(cpu=SERVER_CPU) as srv:
            c = srv.client()
            load_star(c, listings, days, start=first.isoformat())
            explicit = ",".join(str(i) for i in range(1, 101))
            for cache in ("yes", "no"):
                c.call("CONFIG", "SET", "listingstats.cache", cache)
                tag = "cache" if cache == "yes" else "no cache"
                for r in ranges:
                    end = (first + datetime.timedelta(days=r - 1)).isoformat()
                    base = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", first.isoformat(), end]
                    # Each once first: the index exists and the cache is warm
                    # before timing.
                    c.call(*base, explicit, "GROUPBY", "TOTAL")
                    results[("explicit 100 listings, " + tag, size, r)] = server_ms(
                        c, base + [explicit, "GROUPBY", "TOTAL"], "listingstats.query")
                    c.call(*base, "*", "GROUPBY", "TOTAL")
                    results[("* (index), " + tag, size, r)] = server_ms(
                        c, base + ["*", "GROUPBY", "TOTAL"], "listingstats.query")
            # Turned back on, a pass fills the cache for every day hash.
            c.call("CONFIG", "SET", "listingstats.cache", "yes")
            field = lambda info, name: int(info.split("listingstats_%s:" % name)[1].split()[0])
            while field(c.call("INFO", "listingstats"), "cache_warming"):
                time.sleep(0.05)
            info = c.call("INFO", "listingstats")
            results[("cache bytes", size)] = field(info, "cache_bytes")
            results[("cached cells", size)] = field(info, "index_entries")
            c.call("CONFIG", "SET", "listingstats.star-source", "scan")
            end = (first + datetime.timedelta(days=27)).isoformat()
            results[("* (scan)", size, 28)] = server_ms(
                c, ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", first.isoformat(), end, "*", "GROUPBY", "TOTAL"],
                "listingstats.query", repeat=2)
    lines = [
        "## Growth: QUERY time against keyspace size and range length",
        "",
        "Keyspaces of %s day hashes (%d days × keyspace/%d listings, two counters each); "
        "`QUERY cart_to_checkout_ctr <range> <listings> GROUPBY TOTAL` (one row, so the reply does not weigh); "
        "server ms per call from `INFO commandstats`, with the cache (default, warm) and with `cache no` "
        "(every day hash read through the hash API). An explicit set of 100 listings reads 100 × days keys "
        "whatever the keyspace; `*` reads the day hashes in the range (listings × days), found through the "
        "index; `*` with `star-source scan` walks the whole keyspace. Here the listings grow with the "
        "keyspace, so a `*` range holds more day hashes too: `*` through the index grows with the day hashes "
        "in its range (about 1 µs each), not with the rest of the keyspace (see the `*` section: 2,000 "
        "listings over 500 days)."
        % (", ".join("{:,}".format(s) for s in sizes), days, days),
        "",
        "| variant | range (days) | " + " | ".join("{:,} keys".format(s) for s in sizes) + " |",
        "|---|---:|" + "---:|" * len(sizes),
    ]
    for variant in VARIANTS:
        for r in ranges:
            lines.append("| %s | %d | %s |" % (variant, r, " | ".join(
                "%.2f" % results[(variant, s, r)] for s in sizes)))
    lines.append("| * (scan) | 28 | %s |" % " | ".join("%.1f" % results[("* (scan)", s, 28)] for s in sizes))
    lines += ["", "Cache memory (`INFO listingstats` `cache_bytes`) once the warm-up that `CONFIG SET "
              "listingstats.cache yes` starts has read every day hash: %s." % ("; ".join(
                  "{:,} keys: {:,} bytes for {:,} day hashes ({:.1f} B each)".format(
                      s, results[("cache bytes", s)], results[("cached cells", s)],
                      results[("cache bytes", s)] / results[("cached cells", s)]) for s in sizes))]
    plot = plot_growth(results, sizes, ranges, days)
    if plot:
        lines += ["", "![QUERY time against keyspace size](%s)" % plot]
    else:
        lines += ["", "(matplotlib is not installed: no plot; `pip install matplotlib`)"]
    return "\n".join(lines)


def plot_growth(results, sizes, ranges, days):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"explicit 100 listings, cache": "o-", "explicit 100 listings, no cache": "o--",
              "* (index), cache": "s-", "* (index), no cache": "s--"}
    for variant, style in styles.items():
        left.plot(sizes, [results[(variant, s, 28)] for s in sizes], style, label=variant + ", 28 days")
    left.plot(sizes, [results[("* (scan)", s, 28)] for s in sizes], "^:", label="* (scan), 28 days")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("day hashes in the keyspace")
    left.set_ylabel("server ms per QUERY")
    left.set_title("against keyspace size")
    left.legend(fontsize=7)
    # Against the day hashes a `*` query covers: every size and range.
    for variant, style in (("* (index), cache", "s-"), ("* (index), no cache", "s--")):
        points = sorted(((s // days) * r, results[(variant, s, r)]) for s in sizes for r in ranges)
        right.plot([p[0] for p in points], [p[1] for p in points], style, label=variant)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("day hashes in the query's range")
    right.set_ylabel("server ms per QUERY")
    right.set_title("`*` against day hashes in range, cache on/off")
    right.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.join(ROOT, "benchmarks"), exist_ok=True)
    path = "benchmarks/query_growth.png"
    fig.savefig(os.path.join(ROOT, path), dpi=90)
    return path
