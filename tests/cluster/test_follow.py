"""FOLLOW on a cluster, for real: 3 masters + 3 replicas, against a single
node that follows the same stream. The master that owns a stream applies
its entries; listings other masters own are counted there, exactly once,
whatever fails meanwhile (kill -9 of the following master, kill -9 of a
master that owns listings)."""

import base64
import json
import random
import time

import pytest

import harness
from listingstats import ListingStats
from test_cluster import END, METRICS, START, assert_no_foreign_keys, make_events


@pytest.fixture(scope="module")
def env():
    with harness.Cluster() as cluster, harness.Single() as single:
        c, s = ListingStats(cluster.client()), ListingStats(single.client())
        for ls in (c, s):
            ls.metric_set("search_ctr", "search:result:click", "ldp:sellPanel:addToCart:impression",
                          scale=1000)
        yield cluster, single, c, s


def listings_of(n):
    return [str(1000 + i) for i in range(n)]


def stream_entries(seed, n, prefix):
    """n entries: events over START..END spanning masters (ids on most,
    some redelivered), a Kinesis envelope of two events now and then, and a few
    entries that are refused (no field `event`, bad JSON)."""
    rng = random.Random(seed)
    out = []
    for i, e in enumerate(make_events(rng, n, listings_of(60), prefix)):
        if i % 97 == 5:
            out.append({"other": "x"})
        elif i % 89 == 7:
            out.append({"event": "{not json"})
        elif i % 13 == 3:
            twin = dict(e, name="search:result:click")
            twin.pop("id", None)
            records = [{"kinesis": {"data": base64.b64encode(json.dumps(x).encode()).decode()}}
                       for x in (e, twin)]
            out.append({"event": json.dumps({"Records": records})})
        else:
            out.append({"event": json.dumps(e)})
    return out


def xadd_all(client, stream, entries):
    for i in range(0, len(entries), 1000):
        pipe = client.pipeline(transaction=False)
        for fields in entries[i:i + 1000]:
            pipe.xadd(stream, fields)
        pipe.execute()


def owner_of(cluster, rc, key):
    port = rc.nodes_manager.get_node_from_slot(rc.keyslot(key)).port
    return cluster.node(port)


def following(client, stream):
    for m in client.execute_command("LISTINGSTATS.FOLLOWING"):
        d = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        if d["stream"] in (stream, stream.encode()):
            return d
    return None


def reason(f):
    """The last rejection's reason, without its entry id (ids differ by node)."""
    return f["last-rejection"].split(b": ", 1)[1]


def at_end(client, stream, f=None):
    f = f or following(client, stream)
    return f["last-id"] == client.xinfo_stream(stream)["last-generated-id"]


def caught_up(client, stream):
    f = following(client, stream)
    return f is not None and f["lag"] == 0


def same_counters(c, s):
    for groupby in ("day", "listing", "total"):
        got = c.query(METRICS, START, END, "*", groupby)
        want = s.query(METRICS, START, END, "*", groupby)
        assert got == want, groupby
        assert want


def test_follow_applies_each_entry_on_its_owners(env):
    """FOLLOW through redis-cli -c (any node: it is redirected to the
    stream's master); a backlog and then live XADDs; the counters, the
    rejections and the position equal the single node's."""
    cluster, single, c, s = env
    rc = cluster.client()
    entries = stream_entries(1, 3000, "f1")
    xadd_all(rc, "events", entries)
    xadd_all(single.client(), "events", entries)
    owner = owner_of(cluster, rc, "events")
    other = next(m for m in cluster.masters() if m.port != owner.port)
    out = harness.cli("-c", "-p", str(other.port), "LISTINGSTATS.FOLLOW", "events")
    assert out.strip() == "OK", out
    assert single.client().execute_command("LISTINGSTATS.FOLLOW", "events") == b"OK"
    harness.wait_until(lambda: caught_up(owner.client(), "events"), 60, "cluster caught up")
    harness.wait_until(lambda: caught_up(single.client(), "events"), 60, "single caught up")
    got, want = following(owner.client(), "events"), following(single.client(), "events")
    for field in ("applied", "duplicates", "rejected"):
        assert got[field] == want[field], (field, got, want)
    assert reason(got) == reason(want)
    assert at_end(owner.client(), "events", got)
    assert got["rejected"] > 0 and got["duplicates"] > 0
    assert got["waiting"] == b""
    same_counters(c, s)
    # Live: entries XADDed while followed.
    more = stream_entries(2, 500, "f2")
    xadd_all(rc, "events", more)
    xadd_all(single.client(), "events", more)
    harness.wait_until(lambda: caught_up(owner.client(), "events")
                       and at_end(owner.client(), "events"), 60, "live entries")
    harness.wait_until(lambda: caught_up(single.client(), "events"), 60, "single caught up")
    same_counters(c, s)
    # The position lives in the stream's slot; no key outside owned slots.
    assert_no_foreign_keys(cluster)
    # The stream's master's replica holds the position too (and applies nothing).
    for m in cluster.masters():
        if m.port != owner.port:
            assert following(m.client(), "events") is None


def start_backlog(cluster, single, rc, stream, seed, n):
    entries = stream_entries(seed, n, f"b{seed}")
    owner = owner_of(cluster, rc, stream)
    xadd_all(owner.client(), stream, entries)
    xadd_all(single.client(), stream, entries)
    assert owner.client().execute_command("WAIT", 1, 5000) == 1
    assert single.client().execute_command("LISTINGSTATS.FOLLOW", stream) == b"OK"
    return owner


def mid_backlog(client, stream):
    f = following(client, stream)
    return f is not None and f["applied"] > 0 and f["lag"] > 0


def test_kill9_of_the_following_master_mid_backlog(env):
    """The following master dies (kill -9) while a backlog is being
    applied; its replica takes over from the replicated position and
    re-sends the parts of the batch under way: their owners recognise
    them. Nothing is lost, nothing doubled."""
    cluster, single, c, s = env
    rc = cluster.client()
    stream = "killed-follower"
    owner = start_backlog(cluster, single, rc, stream, 3, 30000)
    assert owner.client().execute_command("LISTINGSTATS.FOLLOW", stream) == b"OK"
    harness.wait_until(lambda: mid_backlog(owner.client(), stream), 30, "part of the backlog applied",)
    before = following(owner.client(), stream)
    assert before["lag"] > 0, before
    owner.kill9()
    harness.wait_until(lambda: len(cluster.masters()) == 3 and cluster.healthy(), 60,
                       "the replica promoted")
    c._refresh()
    rc = cluster.client()
    successor = owner_of(cluster, rc, stream)
    assert successor.port != owner.port
    harness.wait_until(lambda: caught_up(successor.client(), stream), 120, "successor caught up")
    harness.wait_until(lambda: caught_up(single.client(), stream), 60, "single caught up")
    got, want = following(successor.client(), stream), following(single.client(), stream)
    assert got["rejected"] == want["rejected"] and at_end(successor.client(), stream, got)
    same_counters(c, s)
    owner.start()  # back as a replica
    harness.wait_until(cluster.healthy, 60, "old master rejoined")
    assert_no_foreign_keys(cluster)


def test_kill9_of_a_master_that_owns_listings(env):
    """A master that owns some of the listings dies (kill -9) while a
    backlog is followed: FOLLOW waits and says for what (FOLLOWING's
    `waiting`), never skips; after the failover its replica gets the
    parts. The counters equal the single node's."""
    cluster, single, c, s = env
    rc = cluster.client()
    stream = "killed-owner"
    owner = start_backlog(cluster, single, rc, stream, 4, 30000)
    oc = owner.client()
    oc.config_set("listingstats.cluster-timeout", 500)
    victim = next(m for m in cluster.masters() if m.port != owner.port)
    assert oc.execute_command("LISTINGSTATS.FOLLOW", stream) == b"OK"
    harness.wait_until(lambda: mid_backlog(oc, stream), 30, "part of the backlog applied")
    victim.kill9()
    seen = []

    def waits():
        f = following(oc, stream)
        if f["waiting"]:
            seen.append(f)
        return bool(seen)

    harness.wait_until(waits, 30, "FOLLOWING says what it waits for")
    assert b"TIMEOUT" in seen[0]["waiting"] or b"CLUSTERDOWN" in seen[0]["waiting"], seen[0]
    assert seen[0]["lag"] > 0
    harness.wait_until(lambda: len(cluster.masters()) == 3 and cluster.healthy(), 60,
                       "the replica promoted")
    c._refresh()
    harness.wait_until(lambda: caught_up(oc, stream), 120, "caught up after the failover")
    harness.wait_until(lambda: caught_up(single.client(), stream), 60, "single caught up")
    got, want = following(oc, stream), following(single.client(), stream)
    assert (got["rejected"], got["waiting"]) == (want["rejected"], b"")
    assert at_end(oc, stream, got)
    same_counters(c, s)
    victim.start()
    harness.wait_until(cluster.healthy, 60, "old master rejoined")
    assert_no_foreign_keys(cluster)


def move_slot(cluster, slot, src, dst):
    """Moves one slot from master `src` to master `dst` by hand, as
    `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE of
    every key, then the new owner told to every master."""
    s, d = src.client(), dst.client()
    src_id = s.execute_command("CLUSTER", "MYID").decode()
    dst_id = d.execute_command("CLUSTER", "MYID").decode()
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    yield  # the caller looks at the moving slot
    while True:
        keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        s.execute_command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
    for m in cluster.masters():
        m.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def test_a_followed_stream_moves_with_its_slot(env):
    """Resharding the stream's slot while its backlog is followed: while
    the slot moves, FOLLOW waits (and says so); the position moves with
    the stream, and the new master continues from it within a second.
    Nothing lost, nothing doubled, no key left behind."""
    cluster, single, c, s = env
    rc = cluster.client()
    stream = "moving-stream"
    src = start_backlog(cluster, single, rc, stream, 5, 20000)
    dst = next(m for m in cluster.masters() if m.port != src.port)
    assert src.client().execute_command("LISTINGSTATS.FOLLOW", stream) == b"OK"
    harness.wait_until(lambda: mid_backlog(src.client(), stream), 30, "part of the backlog applied")
    moving = move_slot(cluster, rc.keyslot(stream), src, dst)
    next(moving)
    harness.wait_until(lambda: following(src.client(), stream)["waiting"].startswith(b"TRYAGAIN"),
                       10, "FOLLOW waits while the slot moves")
    held = following(src.client(), stream)
    time.sleep(0.3)
    assert following(src.client(), stream)["last-id"] == held["last-id"], "nothing applied meanwhile"
    next(moving, None)
    harness.wait_until(lambda: following(dst.client(), stream) is not None
                       and caught_up(dst.client(), stream), 120, "the new master caught up")
    assert following(src.client(), stream) is None
    harness.wait_until(lambda: caught_up(single.client(), stream), 60, "single caught up")
    got, want = following(dst.client(), stream), following(single.client(), stream)
    assert got["rejected"] == want["rejected"] and at_end(dst.client(), stream, got)
    c._refresh()
    same_counters(c, s)
    assert_no_foreign_keys(cluster)
