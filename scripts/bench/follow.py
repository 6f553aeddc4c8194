"""Benchmark `follow`: applying a stream backlog with FOLLOW against INGEST of the same events in batches."""

import json
import time

import loadgen  # noqa: E402
from harness import SERVER_CPU  # noqa: E402
from redislab import Server, commandstats  # noqa: E402
from star import StallProbe  # noqa: E402


def lag(c):
    rows = c.call("LISTINGSTATS.FOLLOWING")
    return sum(dict(zip(r[::2], r[1::2]))["lag"] for r in rows) if rows else 0


def section_follow(events=1_000_000, listings=2000, batch=500):
    """FOLLOW FROM 0 over a backlog of `events` entries: time to catch up and
    the worst PING wait meanwhile, against INGEST of the same events in
    batches of `batch` on a fresh server."""
    stream = [json.dumps(e, separators=(",", ":"))
              for e in loadgen.events(events, listings=listings, dup_share=0.05, seed=14)]
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        c.send_all((("XADD", "events", "*", "event", e) for e in stream), batch=5000)
        assert c.call("XLEN", "events") == events
        with StallProbe(srv.port) as probe:
            t = time.perf_counter()
            c.call("LISTINGSTATS.FOLLOW", "events")
            while lag(c) > 0:
                time.sleep(0.02)
            follow_s = time.perf_counter() - t
        state = dict(zip(*[iter(c.call("LISTINGSTATS.FOLLOWING")[0])] * 2))
        applied, dups = state["applied"], state["duplicates"]
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        c.call("CONFIG", "RESETSTAT")
        t = time.perf_counter()
        batches = (stream[i:i + batch] for i in range(0, len(stream), batch))
        c.send_all((("LISTINGSTATS.INGEST", *b) for b in batches), batch=20)
        ingest_s = time.perf_counter() - t
        stats = commandstats(c)["listingstats.ingest"]
        ingest_server_s = stats["calls"] * stats["usec_per_call"] / 1e6
    return "\n".join([
        "## FOLLOW: a stream backlog",
        "",
        "%d entries (loadgen events: %d listings, ids on all, 5%% redelivered) XADDed to one stream, then "
        "`LISTINGSTATS.FOLLOW events` (FROM 0); time until FOLLOWING shows lag 0, while another process "
        "PINGs every millisecond. Baseline: the same events through `LISTINGSTATS.INGEST` in batches of %d, "
        "on a fresh server." % (events, listings, batch),
        "",
        "| variant | seconds | entries/s | worst PING wait ms |",
        "|---|---:|---:|---:|",
        "| FOLLOW FROM 0, applied in slices | %.2f | %.0f | %.1f (%d pings) |"
        % (follow_s, events / follow_s, probe.worst * 1000, probe.pings),
        "| INGEST batches of %d (client wall) | %.2f | %.0f | - |" % (batch, ingest_s, events / ingest_s),
        "| INGEST batches of %d (server time) | %.2f | %.0f | - |" % (batch, ingest_server_s, events / ingest_server_s),
        "",
        "FOLLOW applied %d events and skipped %d redelivered ids; FOLLOW ÷ INGEST (server time): %.2f×. "
        "FOLLOW applies entries in batches of 100, each as one INGEST with per-entry accounting, and stores "
        "its position with each batch; the time includes the gaps between its 2 ms slices." % (applied, dups, follow_s / ingest_server_s),
    ])
