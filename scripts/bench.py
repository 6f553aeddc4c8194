"""Benchmarks. Each section measures the module against baselines doing the
same work on the same server in the same run, and reports ratios, so the
figures mean the same on any machine. Server-side cost is read from
INFO commandstats (usec_per_call); load comes from redis-benchmark.

One file per benchmark under scripts/bench/, sharing scripts/bench/harness.py;
this file runs them and writes BENCHMARKS.md."""

import datetime
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench"))
import bigday  # noqa: E402
import cluster  # noqa: E402
import dashboard  # noqa: E402
import follow  # noqa: E402
import growth  # noqa: E402
import hours  # noqa: E402
import incr  # noqa: E402
import inflight  # noqa: E402
import ingest  # noqa: E402
import instructions  # noqa: E402
import memory  # noqa: E402
import query  # noqa: E402
import star  # noqa: E402
import tax  # noqa: E402
import top_range  # noqa: E402
import viewers  # noqa: E402
from harness import machine  # noqa: E402
from redislab import ROOT  # noqa: E402

SECTIONS = {
    "incr": incr.section_incr,
    "instructions": instructions.section_instructions,
    "ingest": ingest.section_ingest,
    "query": query.section_query,
    "star": star.section_star,
    "growth": growth.section_growth,
    "memory": memory.section_memory,
    "follow": follow.section_follow,
    "follow_cluster": follow.section_follow_cluster,
    "bigday": bigday.section_bigday,
    "tax": tax.section_tax,
    "cluster": cluster.section_cluster,
    "dashboard": dashboard.section_dashboard,
    "hours": hours.section_hours,
    "viewers": viewers.section_viewers,
    "inflight": inflight.section_inflight,
    "top_range": top_range.section_top_range,
}


# Where the hand-written part of BENCHMARKS.md starts.
NOTES = "## Profiles and history"


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
    # The hand-written notes at the end (profiles, history) are kept.
    path = os.path.join(ROOT, "BENCHMARKS.md")
    notes = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        at = old.find("\n" + NOTES)
        if at >= 0:
            notes = old[at:]
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n" + notes if notes else doc)
    print(doc)


if __name__ == "__main__":
    main(sys.argv[1:])
