"""Benchmark `ingest`: INGEST against the same increments as pipelined HINCRBYs, for a large"""

import datetime
import json
import shutil

import loadgen  # noqa: E402
from redislab import Client, Server, commandstats  # noqa: E402
from harness import SERVER_CPU, c_module, call_instructions, under_callgrind, used_memory  # noqa: E402

# The dedup window's default (listingstats.dedup-window, seconds).
DEDUP_WINDOW = 604_800
FLOOR_NO_IDS = "API floor: the same Redis calls from a C module, batch given parsed and summed, no ids"
FLOOR_IDS = "API floor, every event with a new id"


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
        ("Goal (issue 19): at most 1.6× the pipelined HINCRBYs with an id on every event, 1.3× without ids; "
         "measured " if listings > 100 else "Measured: ")
        + "%.2f× with new ids, %.2f× without ids." % (rows[2][1] / native, rows[1][1] / native),
    ]
    floor = dict(rows)
    if FLOOR_NO_IDS in floor:
        lines += [
            "",
            "The API floor (`scripts/bench/c/write_floor.c`, loaded beside the module) makes the Redis calls INGEST "
            "makes for the same batches and nothing else: per key OpenKey, HashGet, HashSet, Replicate, "
            "NotifyKeyspaceEvent; per id two HashGet EXISTS and a HashSet, one replicated HSET per shard. INGEST "
            "is %.2f× the floor without ids and %.2f× with ids: that part is JSON, dates, key names, dedup "
            "bookkeeping and the index."
            % (rows[1][1] / floor[FLOOR_NO_IDS], rows[2][1] / floor[FLOOR_IDS]),
        ]
    return "\n".join(lines)


def strip_ids(batch):
    out = []
    for arg in batch:
        e = json.loads(arg)
        e.pop("id", None)
        out.append(json.dumps(e, separators=(",", ":")))
    return out


def fnv_shard(event_id):
    """The dedup shard of an id (listingstats_core::dedup::shard_of)."""
    h = 0xcbf29ce484222325
    for b in event_id.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % 64


def floor_args(batch, with_ids, now_ms):
    """FLOOR.APPLY's arguments for one INGEST batch: the (day, listing) keys in
    the order INGEST writes them, each with its summed fields, then each id
    with its current and previous shard."""
    groups = {}
    ids = []
    generation = now_ms // (DEDUP_WINDOW * 1000)
    for arg in batch:
        e = json.loads(arg)
        for listing in e["listingIds"]:
            fields = groups.setdefault("%s_%s" % (day_of(e["message_date"]), listing), {})
            fields[e["name"]] = fields.get(e["name"], 0) + e.get("count", 1)
        if with_ids:
            shard = fnv_shard(e["id"])
            ids += ["listingstats:seen:%d:%d" % (generation, shard),
                    "listingstats:seen:%d:%d" % (generation - 1, shard), e["id"]]
    args = [len(groups)]
    for key, fields in groups.items():
        args += [key, len(fields)]
        for field, delta in fields.items():
            args += [field, delta]
    return args + [len(ids) // 3] + ids


def section_ingest(events=50_000, batch=1000):
    """INGEST against the same increments as pipelined HINCRBYs, for a large
    catalogue (little to pre-aggregate) and a small one (much), and the
    same in instructions beside the API floor."""
    parts = [ingest_run(events, batch, 2000, memory=True), ingest_run(events, batch, 20, memory=False)]
    if shutil.which("valgrind"):
        parts.append(ingest_instructions(batch=batch))
    return "\n\n".join(parts)


def day_of(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d")


def strip_all(batches):
    return [strip_ids(b) for b in batches]


def callgrind_per_event(send, events, only=None):
    """Instructions per event inside Redis's call(), of one fresh server under
    callgrind (both modules loaded, 2,000 other events ingested first) that
    gets `send(client)`; with `only` (a function name), the instructions spent
    inside that function and what it calls, counted by callgrind's
    --toggle-collect."""
    def warm(port):
        c = Client(port)
        for args in loadgen.batches(list(loadgen.events(2000, listings=2000, seed=9)), 1000):
            c.call("LISTINGSTATS.INGEST", *args)

    collect = ["--collect-atstart=no", "--toggle-collect=%s" % only] if only else []
    text, total = under_callgrind(warm, lambda port: send(Client(port)),
                                  server_args=["--hz", "1", "--loadmodule", c_module("write_floor")],
                                  valgrind_args=collect)
    return (total if only else call_instructions(text)) / events


def ingest_instructions(events=20_000, batch=1000, listings=2000):
    """The INGEST rows in instructions (callgrind): exact and repeatable, and
    split into the API floor and the module's own work."""
    stream = list(loadgen.events(events, listings=listings, dup_share=0.0, seed=7))
    batches = list(loadgen.batches(stream, batch))
    hincrbys = [["HINCRBY", "%s_%d" % (day_of(e["message_date"]), l), e["name"], 1]
                for e in stream for l in e["listingIds"]]
    parse = "listingstats_core::ingest::parse_all"

    def ingest(arg_lists):
        return lambda c: [c.call("LISTINGSTATS.INGEST", *args) for args in arg_lists]

    def floor(with_ids):
        def send(c):
            now_ms = int(c.call("TIME")[0]) * 1000
            for b in batches:
                c.call("FLOOR.APPLY", *floor_args(b, with_ids, now_ms))
        return send

    native = callgrind_per_event(lambda c: c.send_all(hincrbys, batch=10_000), events)
    rows = [
        ("native `HINCRBY`, one per listing occurrence, pipelined", native, None),
        ("API floor, no ids", callgrind_per_event(floor(False), events), None),
        ("API floor, every event with a new id", callgrind_per_event(floor(True), events), None),
    ]
    for label, arg_lists in (("`LISTINGSTATS.INGEST`, no ids", strip_all(batches)),
                             ("`LISTINGSTATS.INGEST`, every event with a new id", batches)):
        rows.append((label, callgrind_per_event(ingest(arg_lists), events),
                     callgrind_per_event(ingest(arg_lists), events, only=parse)))
    lines = [
        "### INGEST in instructions, beside the API floor",
        "",
        "%d loadgen events over %d listings in batches of %d, each variant on a fresh server under "
        "`valgrind --tool=callgrind` (both modules loaded, 2,000 events ingested first); instructions per "
        "**event** inside Redis's `call()`. The floor rows are `FLOOR.APPLY` of "
        "`scripts/bench/c/write_floor.c` (the Redis calls INGEST makes, batch given parsed and summed); "
        "`parsing` is what `ingest::parse_all` and its callees cost (serde_json into borrowed "
        "structs, dates, checks), counted alone with callgrind's `--toggle-collect`." % (events, listings, batch),
        "",
        "| variant | instructions per event | × native | of which parsing |",
        "|---|---:|---:|---:|",
    ]
    for label, n, parsing in rows:
        lines.append("| %s | %.0f | %.2f | %s |" % (label, n, n / native,
                                                     "" if parsing is None else "%.0f" % parsing))
    floor_no, floor_ids = rows[1][1], rows[2][1]
    lines += [
        "",
        "The floor plus the parsing alone: %.2f× native without ids (goal 1.3×), %.2f× with ids (goal 1.6×)."
        % ((floor_no + rows[3][2]) / native, (floor_ids + rows[4][2]) / native),
    ]
    return "\n".join(lines)


def ingest_run(events, batch, listings, memory):
    stream = list(loadgen.events(events, listings=listings, dup_share=0.0, seed=7))
    occurrences = sum(len(e["listingIds"]) for e in stream)
    batches = list(loadgen.batches(stream, batch))
    rows = []
    with Server(cpu=SERVER_CPU, server_args=["--loadmodule", c_module("write_floor")]) as srv:
        c = srv.client()
        hincrbys = [["HINCRBY", "%s_%d" % (day_of(e["message_date"]), l), e["name"], 1]
                    for e in stream for l in e["listingIds"]]

        def per_event(command, arg_lists, reset=True):
            """Server µs per event of `command` over these argument lists."""
            if reset:
                c.call("FLUSHALL")
            c.call("CONFIG", "RESETSTAT")
            for args in arg_lists:
                c.call(command, *args)
            st = commandstats(c)[command.lower()]
            return st["usec_per_call"] * st["calls"] / events

        def per_event_ingest(arg_lists, reset=True):
            return per_event("LISTINGSTATS.INGEST", arg_lists, reset)

        def per_event_floor(with_ids):
            now_ms = int(c.call("TIME")[0]) * 1000
            return per_event("FLOOR.APPLY", [floor_args(b, with_ids, now_ms) for b in batches])

        c.call("FLUSHALL")
        c.call("CONFIG", "RESETSTAT")
        c.send_all(hincrbys, batch=10_000)
        st = commandstats(c)["hincrby"]
        native = st["usec_per_call"] * st["calls"] / events
        rows.append(("native `HINCRBY`, one per listing occurrence, pipelined", native))
        no_ids = strip_all(batches)
        rows.append(("`LISTINGSTATS.INGEST`, %d events per batch, no ids" % batch, per_event_ingest(no_ids)))
        rows.append(("`LISTINGSTATS.INGEST`, %d events per batch, every event with a new id" % batch,
                     per_event_ingest(batches)))
        rows.append(("the same batches redelivered (all duplicates)", per_event_ingest(batches, reset=False)))
        envelopes = list(loadgen.batches(stream, batch, envelope=True))
        rows.append(("`LISTINGSTATS.INGEST` of Kinesis envelopes (base64), new ids", per_event_ingest(envelopes)))

        rows.append((FLOOR_NO_IDS, per_event_floor(False)))
        rows.append((FLOOR_IDS, per_event_floor(True)))

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
