"""What operators do to a Redis Cluster while the module works on it.

One 3-master + 3-replica cluster for the whole file, and a single node fed
the same events. Each test gives the cluster work — INGEST batches sent to
one master whose parts other masters apply, cluster-wide `*` queries,
FOLLOW of a stream whose events span every master — and meanwhile does to
one master what operators do: CLIENT PAUSE WRITE/ALL, CLUSTER FAILOVER
(default, FORCE, TAKEOVER) from its replica, SIGTERM. Afterwards no server
crashed (the harness reads every log), every answer that came back equals
the single node's, the counters equal the single node's, and no client is
left blocked. The cluster ends each test with three masters and a replica
each, so the next test starts from a healthy cluster.
"""

import json
import random
import threading
import time

import pytest
import redis

import harness
from listingstats import ListingStats

METRICS = ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]
EVENTS = ["ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click",
          "cart::checkoutNow:impression", "cart::checkoutNow:click"]
START, END = "2015-12-20", "2015-12-31"
T0 = 1450569600  # 2015-12-20 00:00 UTC
OPS = ["pause_write", "pause_all", "cluster_failover", "cluster_failover_force",
       "cluster_failover_takeover", "sigterm"]


@pytest.fixture(scope="module")
def env():
    with harness.Cluster() as cluster, harness.Single() as single:
        yield cluster, single


def events(prefix, n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ids = [str(rng.randrange(1, 400)) for _ in range(rng.choice([1, 2, 3]))]
        out.append({"id": f"{prefix}-{i}", "name": rng.choice(EVENTS), "listingIds": ids,
                    "message_date": T0 + rng.randrange(12 * 86400)})
    return out


def replica_of(cluster, master):
    for n in cluster.nodes:
        if n.proc.poll() is not None or n is master:
            continue
        role = n.client().execute_command("ROLE")
        if role[0] in (b"slave", "slave") and int(role[2]) == master.port:
            return n
    raise AssertionError(f"no replica of {master.port}")


def healthy_again(cluster):
    """Three masters, each with its replica, every node agreeing."""
    def ok():
        masters = cluster.masters()
        return (len(masters) == 3 and cluster.healthy() and cluster.replicas_synced()
                and all(replica_of(cluster, m) for m in masters))
    harness.wait_until(ok, 90, "cluster healthy with a replica per master")


def star(client):
    return {g: client.execute_command("LISTINGSTATS.QUERY", ",".join(METRICS), START, END, "*",
                                      "GROUPBY", g) for g in ("DAY", "TOTAL")}


def operate(op, cluster, target):
    """Does `op` to master `target`. Returns once it is over: the pause
    ended, the failover done, the stopped master restarted as a replica."""
    if op in ("pause_write", "pause_all"):
        kind = "WRITE" if op == "pause_write" else "ALL"
        target.client().execute_command("CLIENT", "PAUSE", 1500, kind)
        time.sleep(1.6)
        return
    if op.startswith("cluster_failover"):
        replica = replica_of(cluster, target)
        how = {"cluster_failover": [], "cluster_failover_force": ["FORCE"],
               "cluster_failover_takeover": ["TAKEOVER"]}[op]
        # A master grants one failover vote per shard per 2 × node-timeout:
        # a failover right after another one's may lose its election (the
        # replica then gives up), so an operator asks again.
        for attempt in range(4):
            replica.client().execute_command("CLUSTER", "FAILOVER", *how)
            try:
                harness.wait_until(lambda: replica in cluster.masters(), 10, "replica promoted")
                break
            except AssertionError:
                if attempt == 3:
                    raise
        harness.wait_until(lambda: target.is_replica(), 30, "old master demoted")
        return
    if op == "sigterm":
        replica = replica_of(cluster, target)
        target.proc.terminate()
        target.expect_clean_exit()
        harness.wait_until(lambda: replica in cluster.masters() and cluster.healthy(), 60,
                           "replica promoted")
        target.start()
        return
    raise AssertionError(op)


def no_client_blocked(cluster):
    for n in cluster.nodes:
        harness.wait_until(lambda n=n: n.client().info("clients")["blocked_clients"] == 0, 30,
                           "no client left blocked")
        info = n.client().info("listingstats")
        assert info["listingstats_works_waiting_for_writes"] == 0, info


def converged_equal(cluster, single):
    """The cluster's `*` answers equal the single node's, on every master."""
    want = star(single.client())
    for m in cluster.masters():
        harness.wait_until(lambda m=m: star(m.client()) == want, 30, "equal answers")


@pytest.mark.parametrize("op", OPS)
def test_ingest_parts_arriving(env, op):
    """INGEST batches sent to master A, whose events' listings other masters
    own; `op` is done to master B while its parts arrive. Parts wait while
    B's writes are paused; events B did not apply because it was demoted
    are sent again by A to the new owner within cluster-timeout. A client
    resends what is still refused (ids: each counts once)."""
    cluster, single = env
    healthy_again(cluster)
    a, b = cluster.masters()[:2]
    batch = events(f"parts-{op}", 3000, hash(op) & 0xffff)
    refused, done = [], threading.Event()

    def send():
        conn = a.client()
        for i in range(0, len(batch), 50):
            chunk = batch[i:i + 50]
            for _ in range(600):
                try:
                    r = ListingStats(conn).ingest(chunk)
                except redis.RedisError as e:
                    refused.append(str(e))
                    time.sleep(0.05)
                    continue
                again = [int(err.split(":", 1)[0]) for err in r["errors"]]
                refused.extend(err.split(": ", 1)[1] for err in r["errors"])
                if not again:
                    break
                chunk = [chunk[j] for j in again]
                time.sleep(0.05)
            else:
                raise AssertionError("events still refused after 30 s")
        done.set()

    t = threading.Thread(target=send, daemon=True)
    t.start()
    harness.wait_until(lambda: b.client().info("listingstats")[
        "listingstats_cluster_parts_served"] > 0, 30, "parts reaching B")
    operate(op, cluster, b)
    t.join(180)
    assert done.is_set(), "every batch applied"
    if op in ("cluster_failover_force", "cluster_failover_takeover"):
        # A forced failover does not wait for the replica to catch up: what
        # the old master acknowledged last may be lost, as any write to it.
        # Events with ids are sent again, and count once.
        healthy_again(cluster)
        for i in range(0, len(batch), 50):
            r = ListingStats(a.client() if not a.is_replica() else cluster.masters()[0].client())\
                .ingest(batch[i:i + 50])
            assert r["rejected"] == 0, r
    if op.startswith("pause"):
        # A pause holds the parts: the client never sees a refusal.
        assert not refused, refused[:5]
    elif op.startswith("cluster_failover"):
        # A demoted master's events, and those whose slots no master served
        # for a moment, are placed again by the asking node within
        # cluster-timeout. Only the server itself may refuse a whole
        # command while the cluster's state is down for that moment.
        assert all(r == "The cluster is down" for r in refused), refused[:5]
    else:
        # The master is gone until its replica takes over (redis-py words
        # the server's own CLUSTERDOWN as "The cluster is down").
        assert all(r.startswith(("TIMEOUT", "CLUSTERDOWN", "TRYAGAIN", "The cluster is down"))
                   for r in refused), refused[:5]
    sc = single.client()
    for i in range(0, len(batch), 200):
        sc.execute_command("LISTINGSTATS.INGEST", *[json.dumps(e) for e in batch[i:i + 200]])
    healthy_again(cluster)
    converged_equal(cluster, single)
    no_client_blocked(cluster)
    assert set(cluster.keys_outside_owned_slots().values()) == {0}


@pytest.mark.parametrize("op", OPS)
def test_cluster_star_queries(env, op):
    """Cluster-wide `*` queries asked of every node while `op` is done to a
    master: each answer equals the single node's or is a cluster error
    (never a partial answer); during a pause every query is answered
    (reads keep working)."""
    cluster, single = env
    healthy_again(cluster)
    want = star(single.client())
    target = cluster.masters()[1]
    # Answers are counted and compared as they come, not kept: askers
    # answered from shared answers loop fast, and an operation may take
    # long (a failover retried).
    answered, wrong, errors, stop = [0], [], [], threading.Event()

    def ask(n):
        while not stop.is_set():
            try:
                answer = star(n.client())
                answered[0] += 1
                if answer != want and len(wrong) < 3:
                    wrong.append(answer)
            except redis.RedisError as e:
                # redis-py drops the error's code from the text: keep its class.
                errors.append(f"{type(e).__name__} {e}")
                time.sleep(0.05)

    askers = [n for n in cluster.nodes if n is not target]
    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in askers[:3]]
    for t in threads:
        t.start()
    harness.wait_until(lambda: answered[0] >= 3, 30, "answers before the operation")
    before = answered[0]
    operate(op, cluster, target)
    if op.startswith("pause"):
        assert answered[0] > before, "queries answered during the pause"
    stop.set()
    for t in threads:
        t.join(60)
    assert not wrong, (want, wrong)
    cluster_errors = ("TryAgainError", "ClusterDownError", "MovedError", "ResponseError TIMEOUT")
    assert all(e.startswith(cluster_errors) for e in errors), errors[:5]
    if op.startswith("pause"):
        assert not errors, errors[:5]
    healthy_again(cluster)
    no_client_blocked(cluster)


@pytest.mark.parametrize("op", OPS)
def test_follow_on_a_cluster(env, op):
    """FOLLOW of a 12,000-entry stream whose events span every master; `op`
    is done to the stream's master mid-backlog. FOLLOW waits while it may
    not write and carries on from whichever node is the stream's master
    afterwards; the counters equal a single node's that followed the same
    entries."""
    cluster, single = env
    healthy_again(cluster)
    stream = f"events-{op}"
    entries = [{"event": json.dumps(e)}
               for e in events(f"follow-{op}", 12000, hash(stream) & 0xffff)]
    rc = cluster.client()
    sc = single.client()
    for c in (rc, sc):
        for i in range(0, len(entries), 1000):
            pipe = c.pipeline(transaction=False)
            for fields in entries[i:i + 1000]:
                pipe.xadd(stream, fields)
            pipe.execute()
    owner_port = rc.nodes_manager.get_node_from_slot(rc.keyslot(stream)).port
    owner = cluster.node(owner_port)
    sc.execute_command("LISTINGSTATS.FOLLOW", stream)
    owner.client().execute_command("LISTINGSTATS.FOLLOW", stream)
    harness.wait_until(lambda: 0 < lag(owner.client(), stream) < len(entries), 30,
                       "FOLLOW under way")
    operate(op, cluster, owner)
    harness.wait_until(lambda: lag(sc, stream) == 0, 60, "single node caught up")

    def caught_up():
        rc.nodes_manager.initialize()
        port = rc.nodes_manager.get_node_from_slot(rc.keyslot(stream)).port
        return lag(cluster.node(port).client(), stream) == 0
    harness.wait_until(caught_up, 120, "the cluster caught up")
    healthy_again(cluster)
    converged_equal(cluster, single)
    no_client_blocked(cluster)
    assert set(cluster.keys_outside_owned_slots().values()) == {0}


def lag(client, stream):
    for m in client.execute_command("LISTINGSTATS.FOLLOWING"):
        d = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        if d["stream"] in (stream, stream.encode()):
            return d["lag"]
    return -1
