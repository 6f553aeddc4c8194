"""Benchmark `memory`: Bytes per counter and per day hash; the index's own memory."""

import datetime

from redislab import Server  # noqa: E402
from harness import SERVER_CPU, used_memory  # noqa: E402


def section_memory(listings=1000, days=100):
    """Bytes per counter and per day hash; the index's own memory."""
    first = datetime.date(2015, 1, 1)
    fields = ["cart::checkoutNow:impression", "cart::checkoutNow:click"]
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()

        def write(module):
            c.call("FLUSHALL")
            m0 = used_memory(c)
            c.send_all(["LISTINGSTATS.INCR", l, f, "BY", 3, "DATE", day] if module
                       else ["HINCRBY", "%s_%d" % (day, l), f, 3]
                       for day in ((first + datetime.timedelta(days=i)).isoformat() for i in range(days))
                       for l in range(1, listings + 1) for f in fields)
            return used_memory(c) - m0

        # The index is current (built by a '*' query) so writes keep it.
        c.call("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "2015-01-01", "2015-01-01", "*")
        native = write(module=False)
        module = write(module=True)
        info = c.call("INFO", "listingstats")
        entries = int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("listingstats_index_entries")))
        with_index = used_memory(c)
        c.call("CONFIG", "SET", "listingstats.key-format", "tagged")  # another key scheme: the index is freed
        index_bytes = with_index - used_memory(c)
        c.call("CONFIG", "SET", "listingstats.key-format", "date_listing")
        sample = c.call("MEMORY", "USAGE", "%s_1" % first.isoformat(), "SAMPLES", 0)
    hashes = listings * days
    counters = hashes * len(fields)
    return "\n".join([
        "## Memory",
        "",
        "%d day hashes with %d counters each, written once with native `HINCRBY` and once with "
        "`LISTINGSTATS.INCR` (`used_memory` before and after, same server). The data is plain hashes either way."
        % (hashes, len(fields)),
        "",
        "| written by | bytes per day hash | bytes per counter |",
        "|---|---:|---:|",
        "| native `HINCRBY` | %.1f | %.1f |" % (native / hashes, native / counters),
        "| `LISTINGSTATS.INCR` | %.1f | %.1f |" % (module / hashes, module / counters),
        "",
        "Both rows include the index entry each new day hash adds (the index follows every writer).",
        "",
        "`MEMORY USAGE` of one such day hash: %d bytes. The per-day listing index held %d entries and took "
        "%.0f bytes of `used_memory` (%.1f bytes per day hash indexed), measured by dropping it."
        % (sample, entries, index_bytes, index_bytes / max(1, entries)),
    ])
