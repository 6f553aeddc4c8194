"""Hours on a cluster: events counted in their hour on the master that owns
the listing, and any node answering by hour, in another zone, over a range
relative to now, and compared with the previous period, equal to a single
node fed the same events."""

import json
import random
import time

import pytest

import harness

METRIC = "ldp_add_to_cart_ctr"
VIEW, CLICK = "ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click"


@pytest.fixture(scope="module")
def env():
    args = ["hours", "yes", "hour-retention-days", "0"]
    with harness.Cluster() as cluster, harness.Single() as single:
        for n in cluster.nodes:
            for name, value in zip(args[::2], args[1::2]):
                n.client().config_set(f"listingstats.{name}", value)
        for name, value in zip(args[::2], args[1::2]):
            single.client().config_set(f"listingstats.{name}", value)
        yield cluster, single


def events(rng, start, hours, n):
    """Views, a third of them clicked at the same moment (so no listing
    has more clicks than views in any hour: RANK WILSON needs that)."""
    out = []
    for i in range(n):
        t = start + rng.randrange(hours * 3600)
        ids = [str(rng.randrange(1, 200)) for _ in range(rng.choice([1, 2, 3]))]
        out.append({"id": f"h-{start}-{i}", "name": VIEW, "listingIds": ids, "message_date": t})
        if rng.random() < 0.33:
            out.append({"id": f"h-{start}-{i}-c", "name": CLICK, "listingIds": ids,
                        "message_date": t})
    return out


def feed(client, evs):
    for i in range(0, len(evs), 200):
        client.execute_command("LISTINGSTATS.INGEST", *[json.dumps(e) for e in evs[i:i + 200]])


def test_any_node_answers_hours_as_one_node(env):
    cluster, single = env
    rng = random.Random(11)
    # 2016-03-12T00Z .. +96 h (New York's spring forward inside).
    evs = events(rng, 1457740800, 96, 3000)
    # And the last hours up to now, for the words relative to now.
    now = int(time.time())
    evs += events(rng, now - 6 * 3600, 6, 500)
    feed(cluster.masters()[0].client(), evs)
    feed(single.client(), evs)
    questions = [
        ["LISTINGSTATS.QUERY", METRIC, "2016-03-12T20", "2016-03-13T09", "*", "GROUPBY", "HOUR"],
        ["LISTINGSTATS.QUERY", METRIC, "2016-03-12", "2016-03-14", "*", "GROUPBY", "DATE",
         "TZ", "America/New_York"],
        ["LISTINGSTATS.QUERY", METRIC, "2016-03-12T05", "2016-03-15T07", "*", "GROUPBY", "TOTAL",
         "COMPARE", "PREVIOUS"],
        ["LISTINGSTATS.QUERY", METRIC, "2016-03-12", "2016-03-15", "1,2,3,150", "GROUPBY", "DAY",
         "COMPARE", "WEEK", "TZ", "Europe/London"],
        ["LISTINGSTATS.QUERY", METRIC, "-5h", "now", "*", "GROUPBY", "HOUR"],
        ["LISTINGSTATS.TOP", METRIC, "-3h", "now", 10, "COMPARE", "PREVIOUS"],
        ["LISTINGSTATS.TOP", METRIC, "2016-03-13T00Z", "2016-03-13T05Z", 5, "RANK", "WILSON"],
    ]
    s = single.client()
    for q in questions:
        want = s.execute_command(*q)
        assert want, q
        for n in cluster.nodes:
            c = n.client()
            if n.is_replica():
                c.execute_command("READONLY")
            assert c.execute_command(*q) == want, (q, n.port)
    # Hour keys live with their day hashes: no node holds a key of a slot
    # it does not own.
    assert set(cluster.keys_outside_owned_slots().values()) == {0}
