"""Simulated dashboard viewers for the `viewers` benchmark (run in the
dashboard's venv, target/dashenv): N server-sent-event streams of the
dashboard service, all open at once in one asyncio process, then ROUNDS
INGESTs of a few events, each making the watched total grow; for every
viewer, the delay from the INGEST's reply to the first message of its
stream showing the new total. Prints one JSON line.

    python sse_viewers.py SERVICE_URL REDIS_PORT VIEWERS ROUNDS QUERY_STRING METRIC AT"""

import asyncio
import json
import random
import resource
import sys
import time

import aiohttp
import redis


async def viewer(session, url, metric, seen, ready):
    """Reads one stream; records (numerator, time) each time it changes."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as r:
        async for line in r.content:
            if not line.startswith(b"data: "):
                continue
            snap = json.loads(line[6:])
            card = next((m for m in snap["metrics"] if m["metric"] == metric), None)
            if card and card.get("total"):
                seen.append((card["total"]["numerator"], time.monotonic()))
                ready.set()


async def main(service, port, viewers, rounds, query, metric, at):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url = f"{service}/api/stream?{query}"
    c = redis.Redis(port=port)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        seen = [[] for _ in range(viewers)]
        ready = [asyncio.Event() for _ in range(viewers)]
        tasks = []
        for i in range(viewers):
            tasks.append(asyncio.create_task(viewer(session, url, metric, seen[i], ready[i])))
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
        # Queries reaching Redis while every viewer watches (nothing else
        # asks it meanwhile), and the distinct panels the service polls.
        calls0, t_0 = calls(c), time.monotonic()
        await asyncio.sleep(WINDOW)
        per_second = (calls(c) - calls0) / (time.monotonic() - t_0)
        async with session.get(f"{service}/healthz") as r:
            health = await r.json()
        delays, missed = [], 0
        rng = random.Random(1)
        for k in range(rounds):
            # Anywhere in the poller's interval.
            await asyncio.sleep(1.0 + rng.random() * 2.0)
            event = json.dumps({"name": "ldp:sellPanel:addToCart:click", "listingId": 1,
                                "message_date": at})
            # The total a viewer must see: the numerator after this INGEST.
            c.execute_command("LISTINGSTATS.INGEST", event)
            t0 = time.monotonic()
            want = c.execute_command("LISTINGSTATS.QUERY", metric, *query_range(query),
                                     "*", "GROUPBY", "TOTAL")[0][3]
            deadline = t0 + 30
            while time.monotonic() < deadline:
                if all(any(n >= want and t >= t0 for n, t in s) for s in seen):
                    break
                await asyncio.sleep(0.02)
            for s in seen:
                after = [t for n, t in s if n >= want and t >= t0]
                if after:
                    delays.append(after[0] - t0)
                else:
                    missed += 1
        for t in tasks:
            t.cancel()
    delays.sort()
    pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] * 1000 if delays else None
    print(json.dumps({"viewers": viewers, "queries_per_s": per_second,
                      "panels": health["panels"], "rounds": rounds, "observed": len(delays),
                      "missed": missed, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                      "max_ms": delays[-1] * 1000 if delays else None}))


WINDOW = 10.0


def calls(c):
    stats = c.info("commandstats")
    return sum(stats.get(f"cmdstat_listingstats.{n}", {}).get("calls", 0) for n in ("query", "top"))


def query_range(query):
    q = dict(p.split("=", 1) for p in query.split("&"))
    return q["from"], q["to"]


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(a[0], int(a[1]), int(a[2]), int(a[3]), a[4], a[5], int(a[6])))
