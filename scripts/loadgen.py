"""Load generator: realistic storefront events for listingstats.

Impressions are far more common than clicks, listing arrays repeat ids (a
cart holding the same item twice), time runs forward or backward, and a
chosen share of events is delivered twice, as a stream consumer does after a
failed acknowledgement.

  python3 scripts/loadgen.py --events 1000 > events.jsonl          # JSON lines
  python3 scripts/loadgen.py --events 50000 --port 6380 --batch 500  # INGEST batches
  python3 scripts/loadgen.py --events 1000 --backward --dup-share 0.1 --envelope --port 6380
"""

import argparse
import base64
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

# (event name, weight): impressions dominate, as they do on a storefront.
EVENTS = [
    ("ldp:sellPanel:addToCart:impression", 60),
    ("ldp:sellPanel::impression", 20),
    ("ldp:sellPanel:addToCart:click", 9),
    ("cart::impression", 6),
    ("cart::checkoutNow:impression", 4),
    ("cart::checkoutNow:click", 1),
]


def events(n, listings=20, start=1449855906, step=37, dup_share=0.0, seed=1, listings_per_event=2.0):
    """Yields n event dicts (redeliveries included), time advancing by about
    `step` seconds per event (negative runs backward)."""
    rng = random.Random(seed)
    names = [name for name, w in EVENTS for _ in range(w)]
    ids = [str(2150 + i) for i in range(listings)]
    sent = []
    t = start
    made = 0
    while made < n:
        if sent and rng.random() < dup_share:
            yield rng.choice(sent)  # a redelivery: the very same event
            made += 1
            continue
        name = rng.choice(names)
        if name.startswith("cart::"):
            # A cart: several items, sometimes the same one twice.
            k = max(1, int(rng.expovariate(1 / listings_per_event) + 0.5))
            basket = [rng.choice(ids) for _ in range(k)]
        else:
            basket = [rng.choice(ids)]
            if rng.random() < (listings_per_event - 1):
                basket.append(rng.choice(ids))
        event = {
            "id": "evt-%d-%d" % (seed, made),
            "name": name,
            "visitor_id": "v%05d" % rng.randrange(100000),
            "message_date": t,
            "listingIds": [int(x) for x in basket],
            "quantities": [1] * len(basket),
        }
        sent.append(event)
        yield event
        made += 1
        t += int(step * rng.uniform(0.5, 1.5)) or (1 if step > 0 else -1)


def batches(stream, size, envelope=False):
    """INGEST argument lists of `size` events (one envelope per batch with
    --envelope, as a Lambda function receives it from Kinesis)."""
    batch = []
    for e in stream:
        batch.append(json.dumps(e, separators=(",", ":")))
        if len(batch) == size:
            yield wrap(batch, envelope)
            batch = []
    if batch:
        yield wrap(batch, envelope)


def wrap(batch, envelope):
    if not envelope:
        return batch
    records = [{"kinesis": {"partitionKey": "p", "data": base64.b64encode(e.encode()).decode()},
                "eventSource": "aws:kinesis"} for e in batch]
    return [json.dumps({"Records": records}, separators=(",", ":"))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--listings", type=int, default=20)
    p.add_argument("--start", type=int, default=1449855906, help="unix seconds of the first event")
    p.add_argument("--step", type=int, default=37, help="mean seconds between events")
    p.add_argument("--backward", action="store_true", help="run time backward")
    p.add_argument("--dup-share", type=float, default=0.05, help="share of redelivered events")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, help="send INGEST batches to 127.0.0.1:PORT instead of printing")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--envelope", action="store_true", help="wrap each batch as a Kinesis Records envelope")
    a = p.parse_args()
    step = -abs(a.step) if a.backward else a.step
    stream = events(a.events, a.listings, a.start, step, a.dup_share, a.seed)
    if a.port is None:
        for e in stream:
            print(json.dumps(e, separators=(",", ":")))
        return
    from redislab import Client
    c = Client(a.port)
    totals = {"applied": 0, "duplicates": 0, "rejected": 0}
    for args in batches(stream, a.batch, a.envelope):
        reply = c.call("LISTINGSTATS.INGEST", *args)
        got = dict(zip(reply[::2], reply[1::2]))
        for k in totals:
            totals[k] += got[k]
    print("sent %d events: %s" % (a.events, ", ".join("%s %d" % kv for kv in totals.items())))


if __name__ == "__main__":
    main()
