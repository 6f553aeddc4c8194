"""Redis Cluster, for real: 3 masters + 3 replicas on loopback with the
module on every node, against a single node fed the same events.

The tests share one cluster and run in file order (routing, equal answers,
a reshard while ingesting, a failover, a restart of every node); each
compares every answer with the single node's after its step."""

import json
import random
import threading
import time

import pytest
import redis
from redis.cluster import RedisCluster

import harness
from listingstats import ListingStats

START, END = "2015-12-20", "2016-01-05"
EVENTS = ["ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click",
          "cart::checkoutNow:impression", "cart::checkoutNow:click", "search:result:click"]
METRICS = ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr", "search_ctr"]


@pytest.fixture(scope="module")
def env():
    with harness.Cluster() as cluster, harness.Single() as single:
        c = ListingStats(cluster.client())
        s = ListingStats(single.client())
        for ls in (c, s):
            ls.metric_set("search_ctr", "search:result:click", "ldp:sellPanel:addToCart:impression", scale=1000)
        yield cluster, single, c, s


def make_events(rng, n, listings, prefix):
    """n events over START..END: one to three listings each, ids on most,
    some sent twice (redelivery)."""
    t0 = 1450569600  # 2015-12-20 00:00 UTC
    out = []
    for i in range(n):
        ids = [rng.choice(listings) for _ in range(rng.choice([1, 1, 2, 3]))]
        e = {"name": rng.choice(EVENTS), "listingIds": ids,
             "message_date": t0 + rng.randrange(17 * 86400)}
        if rng.random() < 0.9:
            e["id"] = f"{prefix}-{i}"
        if rng.random() < 0.1:
            e["count"] = rng.randrange(1, 4)
        out.append(e)
        if "id" in e and rng.random() < 0.05:
            out.append(dict(e))
    return out


def feed(ls, events, batch=200):
    totals = {"applied": 0, "duplicates": 0, "rejected": 0}
    for i in range(0, len(events), batch):
        r = ls.ingest(events[i:i + batch])
        for k in totals:
            totals[k] += r[k]
    return totals


def assert_same_answers(c, s, listings):
    try:
        compare_answers(c, s, listings)
    except redis.RedisError:
        # What every node thought of the slots, for the failure report.
        for node in c.r.get_nodes():
            try:
                print(node.name, c._on(node, "CLUSTER", "NODES").decode())
            except redis.RedisError as e:
                print(node.name, e)
        raise


def compare_answers(c, s, listings):
    for groupby in ("day", "listing", "date", "total"):
        for chosen in ("*", listings[:40], listings[::7]):
            got = c.query(METRICS, START, END, chosen, groupby)
            want = s.query(METRICS, START, END, chosen, groupby)
            assert got == want, (groupby, chosen if chosen == "*" else len(chosen))
            assert want, "the comparison compares something"
    for metric in METRICS:
        for chosen in ("*", listings[:50]):
            assert c.top(metric, START, END, 10, chosen, mindenom=2) == \
                s.top(metric, START, END, 10, chosen, mindenom=2)


def assert_no_foreign_keys(cluster):
    outside = cluster.keys_outside_owned_slots()
    assert set(outside.values()) == {0}, outside


def test_routing_like_native_commands(env):
    cluster, single, c, s = env
    rc = cluster.client()
    assert c.incr("2155", "cart::checkoutNow:click", date="2015-12-22") == 1
    assert c.incr("2155", "cart::checkoutNow:click", by=4, date="2015-12-22", id="evt-17") == 5
    assert c.incr("2155", "cart::checkoutNow:click", by=4, date="2015-12-22", id="evt-17") == 5
    for ls in (s,):
        ls.incr("2155", "cart::checkoutNow:click", date="2015-12-22")
        ls.incr("2155", "cart::checkoutNow:click", by=4, date="2015-12-22", id="evt-17")
    assert c.get("2155", "2015-12-22") == {"cart::checkoutNow:click": 5}
    # A plain cluster client routes by the listing; a wrong node redirects.
    assert rc.execute_command("LISTINGSTATS.INCR", "2155", "x", "DATE", "2015-12-22") == 1
    slot = rc.keyslot("2155")
    owner = rc.nodes_manager.get_node_from_slot(slot).port
    for m in cluster.masters():
        if m.port != owner:
            with pytest.raises(redis.exceptions.MovedError, match=f"^{slot} 127.0.0.1:{owner}$"):
                m.client().execute_command("LISTINGSTATS.INCR", "2155", "x", "DATE", "2015-12-22")
            with pytest.raises(redis.exceptions.MovedError, match=f"^{slot} 127.0.0.1:{owner}$"):
                m.client().execute_command("LISTINGSTATS.GET", "2155", "2015-12-22")
            # A batch sent to the wrong node is refused per event, naming
            # the owner; nothing is written there.
            before = m.client().dbsize()
            r = ListingStats(m.client()).ingest(
                [{"name": "x", "listingId": 2155, "message_date": 1450742400}])
            assert r["rejected"] == 1 and r["errors"][0].startswith(f"0: MOVED {slot} 127.0.0.1:{owner}")
            assert m.client().dbsize() == before
            # A query naming a listing served elsewhere redirects too.
            with pytest.raises(redis.exceptions.MovedError, match=f"^{slot} 127.0.0.1:{owner}$"):
                m.client().execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr",
                                           START, END, "2155")
    out = harness.cli("-c", "-p", str(cluster.masters()[0].port),
                      "LISTINGSTATS.INCR", "2155", "x", "DATE", "2015-12-22")
    assert out.strip() == "2"
    s.incr("2155", "x", date="2015-12-22")
    s.incr("2155", "x", date="2015-12-22")
    # While the listing's slot moves, its day hashes are split between two
    # nodes: writes and reads of it wait (TRYAGAIN), as native multi-key
    # commands do, instead of creating a key the reshard would collide with.
    src = cluster.node(owner).client()
    dst_node = next(m for m in cluster.masters() if m.port != owner)
    dst = dst_node.client()
    src_id = src.execute_command("CLUSTER", "MYID").decode()
    dst_id = dst.execute_command("CLUSTER", "MYID").decode()
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        with pytest.raises(redis.exceptions.AskError):
            src.execute_command("LISTINGSTATS.INCR", "2155", "x", "DATE", "2015-12-22")
        pipe = dst.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command("LISTINGSTATS.INCR", "2155", "x", "DATE", "2015-12-22")
        asked = pipe.execute(raise_on_error=False)
        assert isinstance(asked[1], redis.exceptions.TryAgainError), asked
        r = ListingStats(src).ingest([{"name": "x", "listingId": 2155, "message_date": 1450742400}])
        assert r["errors"][0].startswith(f"0: TRYAGAIN slot {slot} (listing 2155)"), r
        with pytest.raises(redis.exceptions.TryAgainError):
            src.execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "*")
        with pytest.raises(redis.exceptions.TryAgainError):
            src.execute_command("LISTINGSTATS.METRIC", "SET", "t", "a", "b")
        # The importing node holds no key of the slot yet: nothing of it is
        # split there, so its '*' answers (a stale importing mark, which
        # Valkey 8+ can leave on a replica, must not stall it).
        assert dst.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        dst.execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "*")
    finally:
        src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    assert c.get("2155", "2015-12-22")["x"] == 2, "nothing was written while the slot moved"
    # Key specs: the listing routes, flagged not_key.
    info = rc.execute_command("COMMAND", "INFO", "listingstats.incr")["listingstats.incr"]
    assert [b"RO", b"not_key"] == info["key_specifications"][0][b"flags"]
    # Cluster mode keeps keys tagged; other commands explain themselves.
    node = cluster.masters()[0].client()
    assert node.config_get("listingstats.key-format") == {"listingstats.key-format": "tagged"}
    with pytest.raises(redis.ResponseError, match="key-format must be tagged on Redis Cluster"):
        node.config_set("listingstats.key-format", "date_listing")
    with pytest.raises(redis.ResponseError, match="not available on Redis Cluster"):
        node.execute_command("LISTINGSTATS.MIGRATE", "DRYRUN")
    with pytest.raises(redis.ResponseError, match="not available on Redis Cluster"):
        node.execute_command("LISTINGSTATS.FOLLOW", "{s}events")
    # The metric defined through the client is on every master, in slots
    # it owns.
    for m in cluster.masters():
        names = [x[0] for x in m.client().execute_command("LISTINGSTATS.METRIC", "LIST")]
        assert b"search_ctr" in names
    assert_no_foreign_keys(cluster)


def test_same_answers_as_one_node(env):
    cluster, single, c, s = env
    rng = random.Random(7)
    listings = [str(i) for i in range(2100, 2400)] + [f"sku-{i}" for i in range(50)]
    events = make_events(rng, 3000, listings, "a")
    tc, ts = feed(c, events), feed(s, events)
    assert ts["duplicates"] > 0 and tc["rejected"] == ts["rejected"] == 0
    # A whole batch retried through the cluster counts nothing again.
    again = feed(c, events[:500])
    # applied counts parts: one per master an event's listings live on.
    parts = sum(len({c._node_of(l).name for l in e["listingIds"]})
                for e in events[:500] if "id" not in e)
    assert again["applied"] == parts and again["duplicates"] > 0
    feed(s, [e for e in events[:500] if "id" not in e])
    assert_same_answers(c, s, listings)
    # A custom metric removed on every master is gone everywhere.
    c.metric_set("tmp_ctr", "search:result:click", "cart::checkoutNow:click")
    assert c.query("tmp_ctr", START, END, "*", "total")
    assert c.metric_del("tmp_ctr") == 1
    for m in cluster.masters():
        with pytest.raises(redis.ResponseError, match="unknown metric 'tmp_ctr'"):
            m.client().execute_command("LISTINGSTATS.QUERY", "tmp_ctr", START, END, "*")
    assert_no_foreign_keys(cluster)
    env[0].listings = listings


def test_reshard_while_ingesting(env):
    """INGEST and INCR run for the whole of a 500-slot reshard."""
    cluster, single, c, s = env
    listings = cluster.listings
    rng = random.Random(11)
    events = make_events(rng, 100000, listings, "b")
    incrs = [(rng.choice(listings), rng.choice(EVENTS), f"2015-12-{rng.randrange(20, 32)}",
              f"inc-{i}") for i in range(40000)]
    harness.wait_until(cluster.converged, 60, "cluster check to pass")
    masters = cluster.masters()
    src, dst = masters[0], masters[1]
    resharded = threading.Event()
    started = [threading.Event(), threading.Event()]
    sent = {"events": 0, "incrs": 0}
    errors = []

    def ingest():
        try:
            while sent["events"] < len(events) and not resharded.is_set():
                c.ingest(events[sent["events"]:sent["events"] + 50])
                sent["events"] = min(sent["events"] + 50, len(events))
                started[0].set()
                time.sleep(0.01)  # paced: the writes must outlast the reshard
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            started[0].set()

    def incr():
        own = ListingStats(cluster.client())  # a client per thread
        try:
            while sent["incrs"] < len(incrs) and not resharded.is_set():
                listing, event, day, eid = incrs[sent["incrs"]]
                own.incr(listing, event, date=day, id=eid)
                sent["incrs"] += 1
                started[1].set()
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            started[1].set()

    threads = [threading.Thread(target=ingest), threading.Thread(target=incr)]
    for t in threads:
        t.start()
    for e in started:
        e.wait(30)
    try:
        cluster.reshard(src, dst, 500)
    finally:
        resharded.set()
        for t in threads:
            t.join(300)
    assert not errors, errors
    assert sent["events"] < len(events) and sent["incrs"] < len(incrs), "writes outlasted the reshard"
    # The writes met the reshard: some parts were redirected and resent.
    print(f"sent {sent}, parts resent during the reshard: {c.resent}")
    assert c.resent > 0
    feed(s, events[:sent["events"]])
    for listing, event, day, eid in incrs[:sent["incrs"]]:
        s.incr(listing, event, date=day, id=eid)
    harness.wait_until(cluster.healthy, 30, "cluster ok after reshard")
    c._refresh()
    assert_same_answers(c, s, listings)
    assert_no_foreign_keys(cluster)
    # Redelivering everything sent, after the reshard, counts nothing twice.
    feed(c, [e for e in events[:sent["events"]] if "id" in e])
    assert_same_answers(c, s, listings)


def test_failover_loses_nothing(env):
    cluster, single, c, s = env
    listings = cluster.listings
    events = make_events(random.Random(13), 1500, listings, "c")
    feed(c, events)
    feed(s, events)
    victim = cluster.masters()[0]
    assert victim.client().execute_command("WAIT", 1, 5000) == 1
    victim.kill9()
    harness.wait_until(lambda: len(cluster.masters()) == 3 and cluster.healthy(), 60,
                       "a replica promoted")
    c._refresh()
    assert_same_answers(c, s, listings)
    # A retry of everything after the failover is recognised as seen.
    r = feed(c, [e for e in events if "id" in e])
    assert r["applied"] == 0
    assert_same_answers(c, s, listings)
    victim.start()  # comes back as a replica of the promoted one
    harness.wait_until(cluster.healthy, 60, "old master rejoined")
    assert_no_foreign_keys(cluster)


def test_restart_of_every_node_changes_nothing(env):
    cluster, single, c, s = env
    listings = cluster.listings
    before = {g: c.query(METRICS, START, END, "*", g) for g in ("day", "total")}
    keys = {m.port: m.client().dbsize() for m in cluster.masters()}
    for n in cluster.nodes:
        n.stop()
    for n in cluster.nodes:
        n.start()
    harness.wait_until(cluster.healthy, 60, "cluster ok after restart")
    c = ListingStats(cluster.client())
    after = {g: c.query(METRICS, START, END, "*", g) for g in ("day", "total")}
    assert after == before
    assert {m.port: m.client().dbsize() for m in cluster.masters()} == keys
    assert_same_answers(c, s, listings)
    assert_no_foreign_keys(cluster)


def test_a_cluster_node_refuses_another_key_format():
    """Loading with `key-format date_listing` on a cluster node fails with a
    clear line in the log, instead of writing keys a cluster cannot route."""
    import os
    import tempfile
    workdir = tempfile.mkdtemp(prefix="listingstats-refuse-")
    node = harness.Node(harness.cluster_port(), workdir, module_args=["key-format", "date_listing"])
    with pytest.raises(AssertionError, match="exited"):
        node.start()
    log = node.log()
    assert "key-format must be tagged on Redis Cluster" in log, log
    assert node.proc.poll() is not None
    # The same arguments load on a single node.
    single = harness.Node(harness.cluster_port(), os.path.join(workdir, "single"), cluster=False,
                          module_args=["key-format", "date_listing"]).start()
    try:
        assert single.client().config_get("listingstats.key-format") == \
            {"listingstats.key-format": "date_listing"}
    finally:
        single.stop()
