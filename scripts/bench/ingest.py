"""Benchmark `ingest`: INGEST against the same increments as pipelined HINCRBYs, for a large"""

import datetime
import json

import loadgen  # noqa: E402
from redislab import Server, commandstats  # noqa: E402
from harness import SERVER_CPU, used_memory  # noqa: E402


def ingest_table(rows, events, listings, occurrences, batch, native):
    title = ("## INGEST: batches of events against pipelined HINCRBY" if listings > 100
             else "### INGEST with a small catalogue (pre-aggregation at work)")
    lines = [
        title,
        "",
        "%d loadgen events over %d listings (%.2f listing occurrences per event), in batches of %d; "
        "server-side µs per **event** from `INFO commandstats` (µs per call × calls ÷ events)."
        % (events, listings, occurrences / events, batch),
        "",
        "| variant | µs per event | × native |",
        "|---|---:|---:|",
    ]
    for label, us in rows:
        lines.append("| %s | %.3f | %.2f |" % (label, us, us / native))
    lines += [
        "",
        "Goal: INGEST costs no more per event than the equivalent pipelined HINCRBYs, dedup included "
        "(measured %.2f× with new ids, %.2f× without ids)." % (rows[2][1] / native, rows[1][1] / native),
    ]
    return "\n".join(lines)


def strip_ids(batch):
    out = []
    for arg in batch:
        e = json.loads(arg)
        e.pop("id", None)
        out.append(json.dumps(e, separators=(",", ":")))
    return out


def section_ingest(events=50_000, batch=1000):
    """INGEST against the same increments as pipelined HINCRBYs, for a large
    catalogue (little to pre-aggregate) and a small one (much)."""
    parts = [ingest_run(events, batch, 2000, memory=True), ingest_run(events, batch, 20, memory=False)]
    return "\n\n".join(parts)


def ingest_run(events, batch, listings, memory):
    stream = list(loadgen.events(events, listings=listings, dup_share=0.0, seed=7))
    occurrences = sum(len(e["listingIds"]) for e in stream)
    batches = list(loadgen.batches(stream, batch))
    rows = []
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        day = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d")
        hincrbys = [["HINCRBY", "%s_%d" % (day(e["message_date"]), l), e["name"], 1]
                    for e in stream for l in e["listingIds"]]

        def per_event_ingest(arg_lists, reset=True):
            if reset:
                c.call("FLUSHALL")
            c.call("CONFIG", "RESETSTAT")
            for args in arg_lists:
                c.call("LISTINGSTATS.INGEST", *args)
            st = commandstats(c)["listingstats.ingest"]
            return st["usec_per_call"] * st["calls"] / events

        c.call("FLUSHALL")
        c.call("CONFIG", "RESETSTAT")
        c.send_all(hincrbys, batch=10_000)
        st = commandstats(c)["hincrby"]
        native = st["usec_per_call"] * st["calls"] / events
        rows.append(("native `HINCRBY`, one per listing occurrence, pipelined", native))
        no_ids = [strip_ids(b) for b in batches]
        rows.append(("`LISTINGSTATS.INGEST`, %d events per batch, no ids" % batch, per_event_ingest(no_ids)))
        rows.append(("`LISTINGSTATS.INGEST`, %d events per batch, every event with a new id" % batch,
                     per_event_ingest(batches)))
        rows.append(("the same batches redelivered (all duplicates)", per_event_ingest(batches, reset=False)))
        envelopes = list(loadgen.batches(stream, batch, envelope=True))
        rows.append(("`LISTINGSTATS.INGEST` of Kinesis envelopes (base64), new ids", per_event_ingest(envelopes)))

        if not memory:
            c.call("FLUSHALL")
            return ingest_table(rows, events, listings, occurrences, batch, native)
        # Memory of a remembered id: the same events with and without ids.
        c.call("FLUSHALL")
        m0 = used_memory(c)
        for args in no_ids:
            c.call("LISTINGSTATS.INGEST", *args)
        without = used_memory(c) - m0
        c.call("FLUSHALL")
        m0 = used_memory(c)
        for args in batches:
            c.call("LISTINGSTATS.INGEST", *args)
        with_ids = used_memory(c) - m0
        shards = c.call("KEYS", "listingstats:seen:*")
        shard_bytes = sum(c.call("MEMORY", "USAGE", k, "SAMPLES", 0) for k in shards)
        shard_ids = sum(c.call("HLEN", k) - 1 for k in shards)  # less the "listingstats about" field
    per_id = (with_ids - without) / events
    lines = ingest_table(rows, events, listings, occurrences, batch, native).split("\n")
    lines += [
        "",
        "Memory of a remembered event id (`used_memory` of the same events ingested with and without ids): "
        "**%.0f bytes per id** (ids like `%s`); `MEMORY USAGE` of the %d dedup shard hashes, divided by the "
        "%d ids they hold: %.0f bytes per id. Counters cost the same either way: they are plain hashes."
        % (per_id, stream[0]["id"], len(shards), shard_ids, shard_bytes / max(1, shard_ids)),
    ]
    return "\n".join(lines)
