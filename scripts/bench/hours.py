"""Benchmark `hours`: what hour buckets cost. INGEST with `hours yes`
against `hours no` (server time, same run), memory per hour counter next to
per day counter, `GROUPBY HOUR` of 1,000 listings × 48 hours against
`GROUPBY DAY` over the same 2 days, and a day query with hours on against
off (hours nobody asks for cost nothing on reads)."""

import datetime
import json
import random

from redislab import Server, commandstats  # noqa: E402
from harness import SERVER_CPU, c_module, redis_benchmark, used_memory  # noqa: E402
from query import load_days  # noqa: E402

T0 = 1450742400  # 2015-12-22T00:00Z
METRIC = "ldp_add_to_cart_ctr"
VIEW, CLICK = "ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click"


def batches(listings, hours, events, per_batch, seed):
    rng = random.Random(seed)
    out = []
    for i in range(0, events, per_batch):
        batch = []
        for j in range(per_batch):
            batch.append(json.dumps({
                "name": VIEW if (i + j) % 3 else CLICK,
                "listingIds": [1 + rng.randrange(listings)],
                "message_date": T0 + rng.randrange(hours * 3600)}))
        out.append(batch)
    return out


def ingest_cost(hours_on, data):
    """Server µs per event of INGEST (commandstats), hours on or off."""
    with Server(cpu=SERVER_CPU, module_args=["hours", "yes" if hours_on else "no",
                                             "hour-retention-days", "0"]) as srv:
        c = srv.client()
        for batch in data[:20]:  # warm
            c.call("LISTINGSTATS.INGEST", *batch)
        c.call("CONFIG", "RESETSTAT")
        for batch in data[20:]:
            c.call("LISTINGSTATS.INGEST", *batch)
        us = commandstats(c)["listingstats.ingest"]["usec_per_call"]
        return us / len(data[0])


def floor_args(batch, hours_on):
    """FLOOR.APPLY's arguments (scripts/bench/c/write_floor.c: the Redis
    calls of INGEST's write path, nothing else) for one batch: its day
    hashes' summed fields, and with `hours_on` its hour keys' too."""
    groups = {}
    for arg in batch:
        e = json.loads(arg)
        t = datetime.datetime.fromtimestamp(e["message_date"], datetime.timezone.utc)
        for listing in e["listingIds"]:
            targets = [("%s_%s" % (t.strftime("%Y-%m-%d"), listing), e["name"])]
            if hours_on:
                targets.append(("%sh_%s" % (t.strftime("%Y-%m-%d"), listing),
                                "%02d:%s" % (t.hour, e["name"])))
            for key, field in targets:
                fields = groups.setdefault(key, {})
                fields[field] = fields.get(field, 0) + 1
    args = [len(groups)]
    for key, fields in groups.items():
        args += [key, len(fields)]
        for field, delta in fields.items():
            args += [field, delta]
    return args + [0]


def floor_cost(data):
    """Server µs per event of the write floor, day hashes only and day
    hashes with hour keys (each on a fresh server)."""
    out = []
    for hours_on in (False, True):
        with Server(cpu=SERVER_CPU, server_args=["--loadmodule", c_module("write_floor")]) as srv:
            c = srv.client()
            args = [floor_args(b, hours_on) for b in data]
            for a in args[:20]:
                c.call("FLOOR.APPLY", *a)
            c.call("CONFIG", "RESETSTAT")
            for a in args[20:]:
                c.call("FLOOR.APPLY", *a)
            out.append(commandstats(c)["floor.apply"]["usec_per_call"] / len(data[0]))
    return out


def section_hours(listings=1000, hours=48, events=200_000, per_batch=100):
    data = batches(listings, hours, events, per_batch, 7)
    # INGEST: hours on against off, alternated (three rounds each).
    on, off = [], []
    for _ in range(3):
        off.append(ingest_cost(False, data))
        on.append(ingest_cost(True, data))
    with Server(cpu=SERVER_CPU, module_args=["hours", "yes", "hour-retention-days", "0"]) as srv:
        c = srv.client()
        base = used_memory(c)
        for batch in data:
            c.call("LISTINGSTATS.INGEST", *batch)
        day_keys = [k for k in c.call("KEYS", "2015-*") if "h_" not in k]
        hour_keys = [k for k in c.call("KEYS", "2015-*h_*")]
        day_fields = sum(c.call("HLEN", k) for k in day_keys)
        hour_fields = sum(c.call("HLEN", k) for k in hour_keys)
        total = used_memory(c) - base
        # Memory of the day hashes alone: delete the hour keys.
        for i in range(0, len(hour_keys), 1000):
            c.call("DEL", *hour_keys[i:i + 1000])
        days_only = used_memory(c) - base
        hours_bytes = total - days_only
    ids = ",".join(str(i) for i in range(1, listings + 1))
    with Server(cpu=SERVER_CPU, module_args=["hours", "yes", "hour-retention-days", "0"]) as srv:
        c = srv.client()
        for batch in data:
            c.call("LISTINGSTATS.INGEST", *batch)
        by_hour = ["LISTINGSTATS.QUERY", METRIC, "2015-12-22T00Z", "2015-12-23T23Z", ids, "GROUPBY", "HOUR"]
        by_day = ["LISTINGSTATS.QUERY", METRIC, "2015-12-22", "2015-12-23", ids, "GROUPBY", "DAY"]
        rows_hour, rows_day = len(c.call(*by_hour)), len(c.call(*by_day))
        c.call("CONFIG", "SET", "listingstats.answer-cache-memory", "0")
        c.call("CONFIG", "RESETSTAT")
        redis_benchmark(srv.port, by_hour, 50, pipeline=1, clients=1)
        hour_us = commandstats(c)["listingstats.query"]["usec_per_call"]
        c.call("CONFIG", "RESETSTAT")
        redis_benchmark(srv.port, by_day, 50, pipeline=1, clients=1)
        day_us_on = commandstats(c)["listingstats.query"]["usec_per_call"]
    floor_off, floor_on = floor_cost(data)
    # As many rows by day as GROUPBY HOUR gives (1,000 listings x 48 days,
    # day hashes by plain HSET, cached): what that many rows cost.
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        load_days(c, listings, hours, "2015-12-01")
        last = (datetime.date(2015, 12, 1) + datetime.timedelta(days=hours - 1)).isoformat()
        as_many = ["LISTINGSTATS.QUERY", METRIC, "2015-12-01", last, ids, "GROUPBY", "DAY"]
        rows_many = len(c.call(*as_many))
        c.call("CONFIG", "SET", "listingstats.answer-cache-memory", "0")
        c.call("CONFIG", "RESETSTAT")
        redis_benchmark(srv.port, as_many, 50, pipeline=1, clients=1)
        many_us = commandstats(c)["listingstats.query"]["usec_per_call"]
    with Server(cpu=SERVER_CPU, module_args=["hours", "no"]) as srv:
        c = srv.client()
        for batch in data:
            c.call("LISTINGSTATS.INGEST", *batch)
        c.call(*by_day)
        c.call("CONFIG", "SET", "listingstats.answer-cache-memory", "0")
        c.call("CONFIG", "RESETSTAT")
        redis_benchmark(srv.port, by_day, 50, pipeline=1, clients=1)
        day_us_off = commandstats(c)["listingstats.query"]["usec_per_call"]
    ratio = [a / b for a, b in zip(on, off)]
    lines = [
        "## Hours: what hour buckets cost",
        "",
        "%d events (one listing each, over %d listings and %d hours), INGESTed in batches of %d "
        "to a fresh server with `hours yes` and with `hours no`, alternated three times; server "
        "time per event from `INFO commandstats`." % (events, listings, hours, per_batch),
        "",
        "| | µs per event, hours no | µs per event, hours yes | yes ÷ no |",
        "|---|---:|---:|---:|",
    ]
    for i, (a, b, r) in enumerate(zip(off, on, ratio)):
        lines.append("| round %d | %.2f | %.2f | %.2f |" % (i + 1, a, b, r))
    lines += [
        "",
        "Goal: at most 1.5× (measured %.2f–%.2f×)." % (min(ratio), max(ratio)),
        "",
        "The floor: the same batches through `FLOOR.APPLY` (`scripts/bench/c/write_floor.c`, the "
        "Redis calls of INGEST's write path and nothing else: open, read, write, replicate each "
        "key, batch given parsed and summed), day hashes only: %.2f µs per event; day hashes and "
        "hour keys: %.2f µs per event, **%.2f×**. An event with hours on is two counters in two "
        "keys (the day hash must stay exactly what HINCRBY writes, so hours cannot share it), "
        "and the second key's Redis calls alone add %.2f µs; the module adds %.2f µs with hours "
        "(parsing, the hour key's name and field) over the floor's increase."
        % (floor_off, floor_on, floor_on / floor_off, floor_on - floor_off,
           (sum(on) / len(on) - sum(off) / len(off)) - (floor_on - floor_off)),
        "",
        "Memory after all events: %d day hashes holding %d counters, %d hour keys holding %d "
        "counters; `used_memory` %.1f MB in all, %.1f MB without the hour keys: **%.0f bytes per "
        "hour counter** against **%.0f bytes per day counter** (each with its share of its key)."
        % (len(day_keys), day_fields, len(hour_keys), hour_fields, total / 1e6, days_only / 1e6,
           hours_bytes / max(1, hour_fields), days_only / max(1, day_fields)),
        "",
        "| query (%d listings, one client, every call computed) | rows | server µs per call |" % listings,
        "|---|---:|---:|",
        "| `GROUPBY HOUR` over 48 hours (hour keys) | %d | %.0f |" % (rows_hour, hour_us),
        "| `GROUPBY DAY` over the same 2 days, hours yes | %d | %.0f |" % (rows_day, day_us_on),
        "| `GROUPBY DAY` over the same 2 days, hours no | %d | %.0f |" % (rows_day, day_us_off),
        "| `GROUPBY DAY` over 48 days (as many rows as by hour; day hashes by HSET, cached) | %d | %.0f |"
        % (rows_many, many_us),
        "",
        "Goals: `GROUPBY HOUR` within 3× `GROUPBY DAY` (measured %.2f×); hours on while nobody "
        "asks for them cost nothing on reads of days (measured %.2f× hours no). By hour gives "
        "%.0f× the rows of by day over the same 2 days; the same number of rows by day costs "
        "%.0f µs, so by hour is %.2f× what as many rows cost from the day cache."
        % (hour_us / day_us_on, day_us_on / day_us_off, rows_hour / max(1, rows_day), many_us,
           hour_us / many_us),
    ]
    return "\n".join(lines)
