"""Redis Cluster, for real: 3 masters + 3 replicas on loopback with the
module on every node, against a single node fed the same events.

The tests share one cluster and run in file order (routing, equal answers,
a reshard while ingesting, a failover, a restart of every node); each
compares every answer with the single node's after its step."""

import json
import random
import signal
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
            # A batch sent to another node is applied on the owner, nothing
            # of it here.
            before = m.client().dbsize()
            event = {"name": "routed", "listingId": 2155, "message_date": 1450742400}
            r = ListingStats(m.client()).ingest([event])
            assert (r["applied"], r["rejected"]) == (1, 0), r
            assert m.client().dbsize() == before
            s.ingest([event])
            # A query naming a listing served elsewhere is answered here:
            # the node asks the owner (never a MOVED a client would follow).
            assert m.client().execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr",
                                              START, END, "2155", "GROUPBY", "TOTAL") == \
                [[b"cart_to_checkout_ctr", b"*", b"*", 5, 0, None]]
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
        # A '*' asked of any node waits (TRYAGAIN): the slot's day hashes
        # may be split between two nodes.
        for node in (src, dst):
            with pytest.raises(redis.exceptions.TryAgainError):
                node.execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "*")
        with pytest.raises(redis.exceptions.TryAgainError):
            src.execute_command("LISTINGSTATS.METRIC", "SET", "t", "a", "b")
        # The importing node holds no key of the slot yet: nothing of it is
        # split there, so once the owner is stable, '*' answers (a stale
        # importing mark, which Valkey 8+ can leave on a replica, must not
        # stall it).
        src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        assert dst.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        dst.execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "*")
    finally:
        src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    assert c.get("2155", "2015-12-22")["x"] == 2, "nothing was written while the slot moved"
    # Key specs: the listing routes, flagged not_key.
    info = rc.execute_command("COMMAND", "INFO", "listingstats.incr")["listingstats.incr"]
    assert [b"RO", b"not_key"] == info["key_specifications"][0][b"flags"]
    # Tips: none. QUERY, TOP and METRIC name no key and carry no policy,
    # so a cluster client sends them to any node, which answers for (or
    # changes) the whole cluster.
    raw = cluster.masters()[0].client().execute_command(
        "COMMAND", "INFO", "listingstats.metric.set", "listingstats.query")
    tips = {}
    for entry in (raw.values() if isinstance(raw, dict) else raw):
        name = entry.get("name") if isinstance(entry, dict) else entry[0]
        tips[name.decode() if isinstance(name, bytes) else name] = \
            entry.get("tips") if isinstance(entry, dict) else entry[7]
    flat = lambda t: {x.decode() if isinstance(x, bytes) else x for x in (t or [])}
    assert flat(tips["listingstats.metric.set"]) == set()
    assert flat(tips["listingstats.query"]) == set()
    # Cluster mode keeps keys tagged; other commands explain themselves.
    node = cluster.masters()[0].client()
    assert node.config_get("listingstats.key-format") == {"listingstats.key-format": "tagged"}
    with pytest.raises(redis.ResponseError, match="key-format must be tagged on Redis Cluster"):
        node.config_set("listingstats.key-format", "date_listing")
    with pytest.raises(redis.ResponseError, match="not available on Redis Cluster"):
        node.execute_command("LISTINGSTATS.MIGRATE", "DRYRUN")
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


def raw_answers(r, listings):
    """Every form of QUERY and TOP, as plain replies, from connection r."""
    out = []

    class Recorder:
        def execute_command(self, *args):
            try:
                out.append(r.execute_command(*args))
            except redis.ResponseError as e:  # compared like an answer
                out.append(("error", str(e)))
    rec = Recorder()
    chosen = ("*", ",".join(listings[:40]), ",".join(listings[::7]))
    for groupby in ("DAY", "LISTING", "DATE", "TOTAL"):
        for ids in chosen:
            for fmt in ("RESP", "LEGACY", "JSON"):
                if (fmt == "LEGACY" and groupby != "DAY") or (fmt == "JSON" and groupby == "LISTING"):
                    continue
                rec.execute_command("LISTINGSTATS.QUERY", ",".join(METRICS), START, END,
                                    ids, "GROUPBY", groupby, "FORMAT", fmt)
    for ids in chosen[:2]:
        for metric in METRICS[:2]:
            rec.execute_command("LISTINGSTATS.TOP", metric, START, END, 10,
                                "LISTINGS", ids, "MINDENOM", 2)
            rec.execute_command("LISTINGSTATS.TOP", metric, START, END, 10,
                                "LISTINGS", ids, "RANK", "WILSON", 0.9)
    return out


def test_any_node_answers_for_the_whole_cluster(env):
    """Plain connections to every master and to a replica (READONLY), and
    redis-cli -c, get exactly the single node's replies: every grouping
    and format, `*` and sets spanning masters, TOP by value and Wilson."""
    cluster, single, c, s = env
    listings = cluster.listings
    want = raw_answers(single.client(), listings)
    assert len(want) == 32 and sum(1 for w in want if w and w[0] != "error") >= 24
    masters = cluster.masters()
    for m in masters:
        got = raw_answers(m.client(), listings)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, (m.port, i)
    replica = next(n for n in cluster.nodes if n not in masters)
    r = replica.client()
    master = cluster.node(int(r.info("replication")["master_port"])).client()
    harness.wait_until(lambda: r.info("replication")["master_link_status"] == "up"
                       and r.dbsize() == master.dbsize(), 60, "the replica in sync")
    r.execute_command("READONLY")
    assert raw_answers(r, listings) == want
    # redis-py's RedisCluster routes a command without keys when told a
    # node (or with its DynamicPolicyResolver); any node answers.
    rc = cluster.client()
    q = ["LISTINGSTATS.QUERY", ",".join(METRICS), START, END, ",".join(listings[:40]),
         "GROUPBY", "LISTING"]
    want_q = single.client().execute_command(*q)
    for node in rc.get_primaries():
        assert rc.execute_command(*q, target_nodes=node) == want_q
    # redis-cli -c with a set on every master: one answer, no redirect loop.
    ids = ",".join(listings[:40])
    args = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, ids, "GROUPBY", "TOTAL"]
    out = harness.cli("-c", "-p", str(masters[0].port), *args, timeout=20)
    row = single.client().execute_command(*args)[0]
    assert out.split()[:5] == ["cart_to_checkout_ctr", "*", "*", str(row[3]), str(row[4])]
    # A non-proportion under RANK WILSON is named as one node names it.
    for ls in (c, s):
        ls.incr(listings[3], "search:result:click", by=50, date="2015-12-21")
    err = lambda r: pytest.raises(redis.ResponseError, match="RANK WILSON needs a proportion")
    with err(None) as e1:
        single.client().execute_command("LISTINGSTATS.TOP", "search_ctr", START, END, 5, "RANK", "WILSON", 0.9)
    for m in masters:
        with err(None) as e2:
            m.client().execute_command("LISTINGSTATS.TOP", "search_ctr", START, END, 5, "RANK", "WILSON", 0.9)
        assert str(e2.value) == str(e1.value)
    # The client's own API: one call, the server's answer.
    for ls in (c, s):
        for i, (clicks, views) in enumerate([(3, 10), (30, 100), (1, 2), (0, 4)]):
            ls.incr(f"wil-{i}", "cart::checkoutNow:click", by=clicks, date="2015-12-21") if clicks else None
            ls.incr(f"wil-{i}", "cart::checkoutNow:impression", by=views, date="2015-12-21")
    wil = [f"wil-{i}" for i in range(4)]
    assert len({c._node_of(w).name for w in wil}) > 1, "the set spans masters"
    got = c.top("cart_to_checkout_ctr", START, END, 3, wil, rank="wilson", confidence=0.9)
    assert got == s.top("cart_to_checkout_ctr", START, END, 3, wil, rank="wilson", confidence=0.9)
    assert [r.listing for r in got] == ["wil-1", "wil-0", "wil-2"] and got[0].bound is not None
    info = masters[0].client().info("listingstats")
    assert info["listingstats_cluster_queries"] > 0 and info["listingstats_cluster_queries_waiting"] == 0


def test_identical_calls_without_maxage_share_and_stay_fresh(env):
    """Calls without MAXAGE that reach the asking node before its requests
    to the masters go out take one cluster-wide computation; none is
    answered with data older than it: every INCR acknowledged before a
    call was sent is in its answer, while another master takes INCRs."""
    cluster, single, c, s = env
    coordinator = cluster.masters()[0]
    # A listing another master owns, written while the calls run.
    listing = next(f"share-{i}" for i in range(100)
                   if c._node_of(f"share-{i}").port != coordinator.port)
    q = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "*", "GROUPBY", "TOTAL"]

    def denominator(rows):
        return int(rows[0][4]) if rows else 0

    base = denominator(coordinator.client().execute_command(*q))
    acked = [0]
    stop = threading.Event()
    stale, answers, errors = [], [0], []

    def writer():
        while not stop.is_set():
            c.incr(listing, "cart::checkoutNow:impression", date=START)
            acked[0] += 1

    def asker():
        r = coordinator.client()
        try:
            while not stop.is_set():
                before = acked[0]
                got = denominator(r.execute_command(*q))
                answers[0] += 1
                if got < base + before:
                    stale.append((got, base + before))
        except redis.RedisError as e:
            errors.append(e)

    shared0 = coordinator.client().info("listingstats")["listingstats_shared_answers"]
    threads = [threading.Thread(target=writer)] + [threading.Thread(target=asker) for _ in range(40)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert not stale, stale[:5]
    assert acked[0] > 10 and answers[0] > 100, (acked[0], answers[0])
    shared = coordinator.client().info("listingstats")["listingstats_shared_answers"] - shared0
    assert shared > 0, "no call joined another"
    # The single node gets the same writes; the answers agree again.
    s.incr(listing, "cart::checkoutNow:impression", by=acked[0], date=START)
    assert coordinator.client().execute_command(*q) == single.client().execute_command(*q)


def test_acl_users_are_the_same_on_every_node(env):
    """A part runs as the user who asked: a user who may read only some
    day hashes gets exactly what one node gives that user; a user missing
    on a node gets an error naming the node."""
    cluster, single, c, s = env
    nodes = [n.client() for n in cluster.nodes] + [single.client()]
    for n in nodes:
        n.acl_setuser("partial", enabled=True, passwords=["+pw"],
                      commands=["+@read", "+listingstats.query", "+listingstats.top"],
                      keys=["*{21*}"])
    try:
        def as_user(port):
            r = redis.Redis(port=port, username="partial", password="pw")
            return r.execute_command("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END,
                                     "*", "GROUPBY", "LISTING")
        want = as_user(single.node.port)
        assert want and all(row[2].startswith(b"21") for row in want)
        for m in cluster.masters():
            assert as_user(m.port) == want
        # Named listings the user may not read: the single node's error.
        with pytest.raises(redis.ResponseError) as e1:
            redis.Redis(port=single.node.port, username="partial", password="pw").execute_command(
                "LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "2101,sku-1")
        m = cluster.masters()[0]
        with pytest.raises(redis.ResponseError) as e2:
            redis.Redis(port=m.port, username="partial", password="pw").execute_command(
                "LISTINGSTATS.QUERY", "cart_to_checkout_ctr", START, END, "2101,sku-1")
        assert str(e2.value) == str(e1.value)
        # Missing on one master: an error naming it, not another user's view.
        gone = cluster.masters()[1]
        gone.client().acl_deluser("partial")
        with pytest.raises(redis.ResponseError, match=f"does not exist or is disabled on node 127.0.0.1:{gone.port}"):
            as_user(m.port)
    finally:
        for n in nodes:
            n.acl_deluser("partial")


def test_any_node_ingests_for_the_whole_cluster(env):
    """INGEST through a plain connection to any master (and redis-cli -c)
    of events whose listings live on several masters applies them as one
    node would: the same reply, the same counters; ids count once per
    listing wherever a batch is resent; STRICT refuses the whole batch
    before anything is written anywhere."""
    cluster, single, c, s = env
    listings = cluster.listings
    rng = random.Random(21)
    events = make_events(rng, 600, listings[:80], "plain")
    masters = cluster.masters()
    one = single.client()
    for i, m in enumerate(masters):
        batch = [json.dumps(e) for e in events[i * 200:(i + 1) * 200]]
        got = m.client().execute_command("LISTINGSTATS.INGEST", *batch)
        want = one.execute_command("LISTINGSTATS.INGEST", *batch)
        assert got == want, (m.port, got, want)
        assert spans(c, events[i * 200:(i + 1) * 200]), "the batch spans masters"
    # The first batch again, to another master: only events without ids count again.
    batch = [json.dumps(e) for e in events[:200]]
    got = masters[2].client().execute_command("LISTINGSTATS.INGEST", *batch)
    want = one.execute_command("LISTINGSTATS.INGEST", *batch)
    dups = want[b"duplicates"] if isinstance(want, dict) else want[3]
    assert got == want and dups > 0, (got, want)
    # redis-cli -c: one event on three masters.
    ev = {"id": "cli-1", "name": "cart::checkoutNow:click", "listingIds": listings[:6],
          "message_date": 1450742400}
    assert spans(c, [ev])
    out = harness.cli("-c", "-p", str(masters[0].port), "LISTINGSTATS.INGEST", json.dumps(ev))
    assert out.split()[:2] == ["applied", "1"], out
    one.execute_command("LISTINGSTATS.INGEST", json.dumps(ev))
    # STRICT: one invalid event, nothing anywhere.
    before = [m.client().dbsize() for m in masters]
    bad = [json.dumps({"id": "s-1", "name": "x", "listingIds": ["strict-1", "strict-2", "strict-3"],
                       "message_date": 1450742400}), json.dumps({"name": "no listing"})]
    with pytest.raises(redis.ResponseError, match="STRICT batch refused, nothing written: event 1"):
        masters[1].client().execute_command("LISTINGSTATS.INGEST", "STRICT", *bad)
    assert [m.client().dbsize() for m in masters] == before
    assert_same_answers(c, s, listings)


def reply_field(reply, name):
    """A field of INGEST's reply: a map under RESP3, a flat array under RESP2."""
    if isinstance(reply, dict):
        return reply.get(name.encode(), reply.get(name))
    flat = [x.decode() if isinstance(x, bytes) else x for x in reply]
    return flat[flat.index(name) + 1]


def spans(c, events):
    return any(len({c._node_of(str(l)).name for l in e["listingIds"]}) > 1 for e in events)


def registry_keys(node):
    return [k for k in node.scan_iter(match="*listingstats:metrics*", count=1000)]


def test_metric_definitions_are_cluster_wide(env):
    """METRIC SET/DEL sent to any master apply on every master before the
    reply (replicas follow by replication); one copy per master; a master
    that was not answering adopts them when it answers again."""
    cluster, single, c, s = env
    masters = cluster.masters()
    listing = lambda m: [x[:3] for x in m.client().execute_command("LISTINGSTATS.METRIC", "LIST")]
    b = masters[1].client()
    assert b.execute_command("LISTINGSTATS.METRIC", "SET", "wide_ctr", "search:result:click",
                             "cart::checkoutNow:impression", "SCALE", 10) in (b"OK", "OK", True)
    lists = [listing(m) for m in masters]
    assert all(l == lists[0] for l in lists) and any(x[0] == b"wide_ctr" for x in lists[0])
    for n in cluster.nodes:
        if n not in masters:
            harness.wait_until(lambda: listing(n) == lists[0], 20, "a replica has the definition")
    for m in masters:
        assert 1 <= len(registry_keys(m.client())) <= 2, registry_keys(m.client())
    # A replica of another master has a change within its own replication
    # lag (its master adopted it before the reply), not at the 1 s sync:
    # five times in a row under 300 ms.
    other = next(n for n in cluster.nodes if n not in masters and int(
        n.client().execute_command("ROLE")[2]) != masters[1].port)
    rc = other.client()
    rc.execute_command("READONLY")
    for i in range(5):
        b.execute_command("LISTINGSTATS.METRIC", "SET", f"lag_{i}", "x:click", "x:view")
        at = time.time()
        harness.wait_until(lambda: any(x[0] == f"lag_{i}".encode() for x in rc.execute_command(
            "LISTINGSTATS.METRIC", "LIST")), 5, "the replica has it")
        assert time.time() - at < 0.3, f"the replica saw lag_{i} after {time.time() - at:.2f} s"
        b.execute_command("LISTINGSTATS.METRIC", "DEL", f"lag_{i}")
    # Queries through any node use it.
    for ls in (s,):
        ls.metric_set("wide_ctr", "search:result:click", "cart::checkoutNow:impression", scale=10)
    assert c.query("wide_ctr", START, END, "*", "total") == s.query("wide_ctr", START, END, "*", "total")
    # A master that does not answer: the change is made everywhere else,
    # the reply comes after cluster-timeout, and it catches up on its own.
    stopped = masters[2]
    a = masters[0].client()
    a.config_set("listingstats.cluster-timeout", 300)
    stopped.proc.send_signal(signal.SIGSTOP)
    try:
        assert a.execute_command("LISTINGSTATS.METRIC", "DEL", "wide_ctr") == 1
        assert listing(masters[1]) == listing(masters[0])
        assert not any(x[0] == b"wide_ctr" for x in listing(masters[0]))
    finally:
        stopped.proc.send_signal(signal.SIGCONT)
        a.config_set("listingstats.cluster-timeout", 5000)
    harness.wait_until(lambda: listing(stopped) == listing(masters[0]), 20, "the stopped master caught up")
    # The copy is a plain key: DEBUG RELOAD keeps it.
    before = listing(masters[1])
    b.execute_command("DEBUG", "RELOAD")
    assert listing(masters[1]) == before
    s.metric_del("wide_ctr")
    assert_no_foreign_keys(cluster)


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

    # Plain connections to the masters, with ids: any master takes any
    # batch; a batch with a rejected event (a slot moving) is resent
    # until nothing is rejected, which must count each event once.
    plain_events = [e for e in make_events(rng, 20000, listings, "p") if "id" in e]
    sent["plain"] = 0
    resent_plain = [0]

    def plain():
        conns = [m.client() for m in masters]
        turn = 0
        try:
            while sent["plain"] < len(plain_events) and not resharded.is_set():
                args = [json.dumps(e) for e in plain_events[sent["plain"]:sent["plain"] + 50]]
                for _ in range(200):
                    r = conns[turn % len(conns)].execute_command("LISTINGSTATS.INGEST", *args)
                    turn += 1
                    if reply_field(r, "rejected") == 0:
                        break
                    resent_plain[0] += 1
                    time.sleep(0.02)
                else:
                    raise AssertionError(f"a batch was never applied: {r}")
                sent["plain"] = min(sent["plain"] + 50, len(plain_events))
                started[2].set()
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            started[2].set()

    started.append(threading.Event())
    threads = [threading.Thread(target=ingest), threading.Thread(target=incr),
               threading.Thread(target=plain)]
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
    # The writes met the reshard (they ran from before it started to after
    # it ended). A part sent to a node that no longer owns its listing is
    # now forwarded by that node, so resends (TRYAGAIN while a slot moves)
    # are rare; the plain batches crossed masters.
    print(f"sent {sent}, parts resent during the reshard: client {c.resent}, plain {resent_plain[0]}")
    assert sent["plain"] > 0 and sum(
        m.client().info("listingstats")["listingstats_cluster_parts_served"] for m in masters) > 0
    feed(s, events[:sent["events"]])
    feed(s, plain_events[:sent["plain"]])
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


def test_plain_ingest_across_a_failover(env):
    """Batches with ids sent through a plain connection to one master
    while another master is killed (kill -9) and replaced by its replica:
    events that master did not answer for come back with TIMEOUT or
    CLUSTERDOWN and the reason; resending exactly those, until none is
    refused, ends with the single node's counters (each listing once)."""
    cluster, single, c, s = env
    listings = cluster.listings
    rng = random.Random(22)
    events = make_events(rng, 3000, listings[:120], "pf")
    for i, e in enumerate(events):
        e.setdefault("id", f"pf-noid-{i}")
    sender, victim = cluster.masters()[:2]
    conn = sender.client()
    conn.config_set("listingstats.cluster-timeout", 500)
    refused_reasons = []
    done = threading.Event()

    def send_all():
        for i in range(0, len(events), 100):
            batch = events[i:i + 100]
            for _ in range(300):
                try:
                    r = ListingStats(conn).ingest(batch)
                except redis.RedisError as e:  # the node itself is fine; be safe
                    refused_reasons.append(str(e))
                    time.sleep(0.1)
                    continue
                again = [int(err.split(":", 1)[0]) for err in r["errors"]]
                refused_reasons.extend(err.split(": ", 1)[1] for err in r["errors"])
                if not again:
                    break
                batch = [batch[j] for j in again]
                time.sleep(0.1)
            else:
                raise AssertionError("events still refused after 30 s")
            time.sleep(0.02)
        done.set()

    t = threading.Thread(target=send_all)
    t.start()
    time.sleep(0.5)
    victim.kill9()
    t.join(180)
    assert done.is_set(), "the sender finished"
    assert any(r.startswith(("TIMEOUT", "CLUSTERDOWN")) for r in refused_reasons), refused_reasons[:5]
    harness.wait_until(lambda: len(cluster.masters()) == 3 and cluster.healthy(), 60,
                       "a replica promoted")
    for i in range(0, len(events), 100):
        single.client().execute_command("LISTINGSTATS.INGEST", *[json.dumps(e) for e in events[i:i + 100]])
    c._refresh()
    assert_same_answers(c, s, listings)
    victim.start()
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
    node.exit_expected = True  # it refused to load, as it should
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


def test_a_hung_or_dead_master_fails_the_query_naming_it():
    """Never what the other masters said: a master that does not answer
    within cluster-timeout (SIGSTOP), or that is gone (kill -9), fails the
    query with an error naming it; the asking node stays responsive."""
    with harness.Cluster(masters=3, replicas=0) as cl:
        c = ListingStats(cl.client())
        for n in range(1, 31):
            c.incr(str(n), "cart::checkoutNow:click", date="2015-12-22")
        a, b, _ = cl.masters()
        ra = a.client()
        ra.config_set("listingstats.cluster-timeout", 300)
        q = ("LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "2015-12-22", "2015-12-22", "*",
             "GROUPBY", "TOTAL")
        assert ra.execute_command(*q)[0][3] == 30
        b.proc.send_signal(signal.SIGSTOP)
        try:
            t = time.time()
            with pytest.raises(redis.ResponseError,
                               match=f"^TIMEOUT no answer from node 127.0.0.1:{b.port} .*within cluster-timeout 300 ms"):
                ra.execute_command(*q)
            assert 0.25 < time.time() - t < 5
            assert ra.ping()
        finally:
            b.proc.send_signal(signal.SIGCONT)
        harness.wait_until(lambda: ra.execute_command(*q)[0][3] == 30, 10, "answers again")
        assert ra.info("listingstats")["listingstats_cluster_timeouts"] == 1
        # INGEST with a master stopped: its part is reported, not dropped;
        # resent, the event counts exactly once per listing.
        ids = [str(n) for n in range(1, 31)]
        ev = {"id": "hung-1", "name": "cart::checkoutNow:click", "listingIds": ids,
              "message_date": 1450742400}
        b.proc.send_signal(signal.SIGSTOP)
        try:
            r = ListingStats(ra).ingest([ev])
            assert r["rejected"] == 1 and f"no answer from node 127.0.0.1:{b.port}" in r["errors"][0], r
        finally:
            b.proc.send_signal(signal.SIGCONT)
        harness.wait_until(lambda: ListingStats(ra).ingest([ev])["rejected"] == 0, 10, "applied")
        assert ListingStats(ra).ingest([ev]) == {"applied": 0, "duplicates": 1, "rejected": 0, "errors": []}
        assert ra.execute_command(*q)[0][3] == 60, "each listing counted once more"
        b.kill9()
        with pytest.raises(redis.ResponseError, match=f"127.0.0.1:{b.port}"):
            ra.execute_command(*q)
        assert ra.ping()
