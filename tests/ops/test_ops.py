"""What operators do while the module works, on a master with a replica.

Each test starts a master and its replica (AOF on), gives the master work
that runs after its command (following a stream's backlog, sliced `*`
queries, a RETAIN or MIGRATE walk, an index rebuild, a metric change and
its cache warm-up), and while that work is under way does one thing an
operator does: CLIENT PAUSE WRITE/ALL, FAILOVER, SHUTDOWN with a replica,
SHUTDOWN NOSAVE, SIGTERM, REPLICAOF (demote), REPLICAOF NO ONE, DEBUG
RELOAD, BGSAVE, BGREWRITEAOF, MODULE UNLOAD. Afterwards:

* no server crashed (the harness reads every log; a stopped server must
  exit with status 0),
* while writes were paused, nothing the work does reached the replica,
* the work carries on by itself on whichever node is master and ends with
  day hashes equal to a single node's that did the same work undisturbed
  (counters, and expiries for RETAIN),
* no client is left blocked, and every query answer that came back equals
  the single node's.
"""

import json
import os
import shutil
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import redis

import harness

WORKS = ["follow", "query", "retain", "migrate", "rebuild", "metric"]
OPS = ["pause_write", "pause_all", "failover", "shutdown", "shutdown_nosave", "sigterm",
       "demote", "promote", "debug_reload", "bgsave", "bgrewriteaof", "unload"]

METRIC = "ldp_add_to_cart_ctr"
CLICK, VIEW = "ldp:sellPanel:addToCart:click", "ldp:sellPanel:addToCart:impression"
DAY0 = date(2015, 12, 1)


def node(workdir):
    # A replica's sync starts at once (not after the default 5 s wait for more).
    return harness.Node(harness.cluster_port(), workdir, cluster=False,
                        server_args=["--repl-diskless-sync-delay", "0"])


class Pair:
    """A master and its replica, not a cluster."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="listingstats-ops-")
        self.master = node(self.workdir).start()
        self.replica = node(self.workdir).start()
        self.replica.client().replicaof("127.0.0.1", self.master.port)
        harness.wait_until(lambda: synced(self.replica), 30, "replica synced")

    def nodes(self):
        return [n for n in (self.master, self.replica) if n.proc.poll() is None]

    def close(self):
        for n in sorted(self.nodes(), key=lambda n: not n.is_replica()):
            n.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def synced(replica):
    info = replica.client().info("replication")
    return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0


def is_master(n):
    return n.proc.poll() is None and n.client().execute_command("ROLE")[0] in (b"master", "master")


def day_key(day, listing):
    return f"{day.isoformat()}_{listing}"


def day_hashes(client):
    """Every day hash: {key: (fields, expiry ms or -1)}."""
    keys = list(client.scan_iter(match="20*_*", count=5000))
    out = {}
    for at in range(0, len(keys), 2000):
        batch = keys[at:at + 2000]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.hgetall(key)
            pipe.execute_command("PEXPIRETIME", key)
        got = pipe.execute(raise_on_error=False)
        for i, key in enumerate(batch):
            kind, fields, expiry = got[3 * i:3 * i + 3]
            if kind == b"hash":
                out[key] = (fields, expiry)
    return out


def following(client, stream="events"):
    for m in client.execute_command("LISTINGSTATS.FOLLOWING"):
        d = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        if d["stream"] in (stream, stream.encode()):
            return d
    return None


def ingest_day_hashes(client, listings, days):
    """`listings` × `days` day hashes through INGEST (1,000 listings an event)."""
    events = []
    for d in range(days):
        at = int(datetime(2015, 12, 1, 12, tzinfo=timezone.utc).timestamp()) + d * 86400
        for lo in range(0, listings, 1000):
            ids = list(range(lo, min(lo + 1000, listings)))
            events.append(json.dumps({"name": VIEW, "listingIds": ids, "message_date": at,
                                      "count": 10}))
            events.append(json.dumps({"name": CLICK, "listingIds": ids[::3],
                                      "message_date": at}))
    for i in range(0, len(events), 20):
        client.execute_command("LISTINGSTATS.INGEST", *events[i:i + 20])


# ---------------------------------------------------------------- the works


class Work:
    """One kind of work the module does after its command."""

    #: Whether the work writes (then nothing of it may reach the replica
    #: while writes are paused).
    writes = True

    def prepare(self, client):
        """Data the work needs, on a fresh master."""

    def start(self, pair):
        """Starts the work on the master."""

    def busy(self, client):
        """Whether the work is still under way on this node."""
        return True

    def progress(self, client):
        """Something that moves while the work writes (read on a replica)."""
        return client.dbsize()

    def finish(self, client):
        """Waits for the work to end on master `client` (starting it again
        when the operation ended it), and returns what to compare."""
        return day_hashes(client)


class Follow(Work):
    """FOLLOW catching up on a 40,000-entry backlog (ids on most, some
    redelivered)."""

    N = 40000

    def prepare(self, client):
        pipe = client.pipeline(transaction=False)
        for i in range(self.N):
            e = {"name": CLICK if i % 4 else VIEW, "listingIds": [i % 700, (i * 7) % 700],
                 "message_date": 1448971200 + (i % 12) * 86400}
            if i % 5:
                e["id"] = f"e-{i % 37000}"
            pipe.xadd("events", {"event": json.dumps(e)})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def start(self, pair):
        pair.master.client().execute_command("LISTINGSTATS.FOLLOW", "events")

    def busy(self, client):
        f = following(client)
        return f is not None and f["lag"] > 0

    def progress(self, client):
        f = following(client)
        return f and f["last-id"]

    def finish(self, client):
        if following(client) is None:  # a node that never followed (never happens)
            client.execute_command("LISTINGSTATS.FOLLOW", "events")
        harness.wait_until(lambda: following(client)["lag"] == 0, 120, "FOLLOW caught up")
        f = following(client)
        assert f["rejected"] == 0 and f["trimmed"] == 0, f
        return day_hashes(client)


class Query(Work):
    """Three clients asking `'*' GROUPBY DAY` over 40,000 day hashes,
    uncached (each answer is read and written in slices), twice each."""

    writes = False
    ASK = ["LISTINGSTATS.QUERY", METRIC, "2015-12-01", "2015-12-30", "*", "GROUPBY", "DAY"]

    def prepare(self, client):
        ingest_day_hashes(client, 2000, 20)
        client.execute_command("CONFIG", "SET", "listingstats.cache", "no")

    def start(self, pair):
        self.answers, self.errors, self.threads = [], [], []
        port = pair.master.port

        def ask():
            c = redis.Redis(port=port, socket_timeout=60)
            for _ in range(2):
                try:
                    self.answers.append(c.execute_command(*self.ASK))
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    self.errors.append(repr(e))
                    return
                except redis.ResponseError as e:
                    self.errors.append(str(e))
                    if str(e).startswith("UNBLOCKED"):  # demoted: the client is closed
                        return

        for _ in range(3):
            t = threading.Thread(target=ask, daemon=True)
            t.start()
            self.threads.append(t)

    def busy(self, client):
        return client.info("clients")["blocked_clients"] > 0

    def finish(self, client):
        for t in self.threads:
            t.join(120)
            assert not t.is_alive(), "a query never answered"
        self.answers.append(client.execute_command(*self.ASK))
        for e in self.errors:  # what a client may see of a restart or a demotion
            assert any(w in e.lower() for w in ("unblocked", "connection", "loading", "closed")), e
        return {"answers": {len(a) for a in self.answers},
                "same": all(a == self.answers[-1] for a in self.answers),
                "rows": self.answers[-1]}


class Retain(Work):
    """RETAIN over 40,000 day hashes without expiry: the old ones deleted,
    the recent ones given their expiry (retention-days 30)."""

    def prepare(self, client):
        today = datetime.now(timezone.utc).date()
        pipe = client.pipeline(transaction=False)
        for i in range(40000):
            day = today - timedelta(days=(3 if i % 2 else 100) + i % 5)
            pipe.hset(day_key(day, i), mapping={VIEW: 5, CLICK: 1})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        client.execute_command("CONFIG", "SET", "listingstats.retention-days", "30")

    def start(self, pair):
        port = pair.master.port
        self.reply = []
        threading.Thread(target=self._retain, args=(port,), daemon=True).start()

    def _retain(self, port):
        try:
            self.reply.append(redis.Redis(port=port, socket_timeout=120)
                              .execute_command("LISTINGSTATS.RETAIN"))
        except redis.RedisError as e:
            self.reply.append(e)

    def busy(self, client):
        return client.info("clients")["blocked_clients"] > 0

    def finish(self, client):
        harness.wait_until(lambda: self.reply, 120, "RETAIN answered")
        # Whatever the operation cut short, a second walk completes it.
        client.execute_command("CONFIG", "SET", "listingstats.retention-days", "30")
        client.execute_command("LISTINGSTATS.RETAIN")
        return day_hashes(client)


class Migrate(Work):
    """MIGRATE of 40,000 flat counters into day hashes."""

    def prepare(self, client):
        pipe = client.pipeline(transaction=False)
        for i in range(40000):
            day = DAY0 + timedelta(days=i % 15)
            event = "cart::checkoutnow:click" if i % 3 else "cart::checkoutnow:impression"
            pipe.set(f"{day.isoformat()}:{event}_{i % 2600}", i % 7 + 1)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def start(self, pair):
        self.reply = []
        port = pair.master.port

        def run():
            try:
                self.reply.append(redis.Redis(port=port, socket_timeout=120)
                                  .execute_command("LISTINGSTATS.MIGRATE"))
            except redis.RedisError as e:
                self.reply.append(e)

        threading.Thread(target=run, daemon=True).start()

    def busy(self, client):
        return client.info("clients")["blocked_clients"] > 0

    def finish(self, client):
        harness.wait_until(lambda: self.reply, 120, "MIGRATE answered")
        client.execute_command("LISTINGSTATS.MIGRATE")  # completes a walk cut short
        flat = [k for k in client.scan_iter(match="2015-*:*", count=1000)]
        assert not flat, flat[:5]
        return day_hashes(client)


class Rebuild(Query):
    """The `*` index rebuilt (a key-prefix change and back) while queries
    wait for it."""

    def start(self, pair):
        c = pair.master.client()
        c.execute_command("CONFIG", "SET", "listingstats.key-prefix", "other:")
        c.execute_command("CONFIG", "SET", "listingstats.key-prefix", "")
        super().start(pair)

    def busy(self, client):
        info = client.info("listingstats")
        return info["listingstats_index_building"] == 1 or info["listingstats_sliced_queries"] > 0


class Metric(Query):
    """A metric defined while the cache is on: its columns are filled by
    the warm-up in slices, and queries ask for it meanwhile."""

    ASK = ["LISTINGSTATS.QUERY", "clicks_per_view", "2015-12-01", "2015-12-30", "*",
           "GROUPBY", "DATE"]

    def prepare(self, client):
        ingest_day_hashes(client, 2000, 20)

    def start(self, pair):
        pair.master.client().execute_command(
            "LISTINGSTATS.METRIC", "SET", "clicks_per_view", CLICK, VIEW, "SCALE", "1")
        super().start(pair)

    def busy(self, client):
        info = client.info("listingstats")
        return info["listingstats_cache_warming"] == 1 or client.info("clients")[
            "blocked_clients"] > 0


WORK = {"follow": Follow, "query": Query, "retain": Retain, "migrate": Migrate,
        "rebuild": Rebuild, "metric": Metric}


# -------------------------------------------------------------- references

_reference = {}


def reference(work):
    """What a single node that did `work` undisturbed ends with."""
    if work not in _reference:
        workdir = tempfile.mkdtemp(prefix="listingstats-ref-")
        n = node(workdir).start()
        try:
            w = WORK[work]()
            w.prepare(n.client())

            class Alone:
                master = n
            w.start(Alone)
            _reference[work] = w.finish(n.client())
        finally:
            n.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return _reference[work]


# ----------------------------------------------------------- the operations


def held_still(replica, work, pause_ms):
    """While the master's writes are paused, what the work writes does not
    reach the replica (sampled over most of the pause)."""
    before = work.progress(replica.client())
    time.sleep(pause_ms / 1000 * 0.6)
    after = work.progress(replica.client())
    assert before == after, f"the replica moved during the pause: {before!r} -> {after!r}"


def wait_for_role(n, role, timeout=30):
    harness.wait_until(
        lambda: n.client().execute_command("ROLE")[0] in (role.encode(), role), timeout,
        f"{n.port} to become {role}")


def operate(op, pair, work):
    """Does `op` while `work` is under way; returns the node that is master
    afterwards and the nodes that must end equal to it."""
    m, r = pair.master, pair.replica
    mc = m.client()
    if op in ("pause_write", "pause_all"):
        kind = "WRITE" if op == "pause_write" else "ALL"
        mc.execute_command("CLIENT", "PAUSE", 1000, kind)
        if work.writes:
            held_still(r, work, 1000)
        if kind == "WRITE":
            # Reads keep working during a write pause, as native reads do.
            mc.execute_command("LISTINGSTATS.QUERY", METRIC, "2015-12-01", "2015-12-02", "1,2")
            if work.writes:
                info = mc.info("listingstats")
                assert info["listingstats_works_waiting_for_writes"] >= 1, info
        return m, [r]
    if op == "failover":
        mc.execute_command("FAILOVER")
        wait_for_role(r, "master")
        wait_for_role(m, "slave")
        return r, [m]
    if op in ("shutdown", "shutdown_nosave"):
        try:
            mc.execute_command("SHUTDOWN", *(["NOSAVE"] if op == "shutdown_nosave" else []))
        except redis.ConnectionError:
            pass
        m.expect_clean_exit()
        m.start()
        wait_synced_again(r)
        return m, [r]
    if op == "sigterm":
        m.proc.terminate()
        m.expect_clean_exit()
        m.start()
        wait_synced_again(r)
        return m, [r]
    if op == "demote":
        r.client().replicaof("no", "one")
        mc.replicaof("127.0.0.1", r.port)
        wait_for_role(r, "master")
        harness.wait_until(lambda: synced(m), 60, "old master synced as a replica")
        return r, [m]
    if op == "promote":
        r.client().replicaof("no", "one")
        wait_for_role(r, "master")
        return None, [m, r]  # both go on alone
    if op == "debug_reload":
        mc.execute_command("DEBUG", "RELOAD")
        return m, [r]
    if op == "bgsave":
        mc.bgsave()
        harness.wait_until(lambda: mc.info("persistence")["rdb_bgsave_in_progress"] == 0, 60,
                           "BGSAVE done")
        assert mc.info("persistence")["rdb_last_bgsave_status"] == "ok"
        return m, [r]
    if op == "bgrewriteaof":
        mc.bgrewriteaof()
        harness.wait_until(lambda: mc.info("persistence")["aof_rewrite_in_progress"] == 0
                           and mc.info("persistence")["aof_rewrite_scheduled"] == 0, 60,
                           "BGREWRITEAOF done")
        assert mc.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        return m, [r]
    if op == "unload":
        # Refused while the module has work under way (Redis refuses to
        # unload a module with a pending timer or blocked clients).
        with pytest.raises(redis.ResponseError):
            mc.execute_command("MODULE", "UNLOAD", "listingstats")
        assert any(mod[b"name"] == b"listingstats" if isinstance(mod, dict) else
                   b"listingstats" in mod for mod in mc.execute_command("MODULE", "LIST"))
        return m, [r]
    raise AssertionError(op)


def wait_synced_again(replica):
    harness.wait_until(lambda: synced(replica), 60, "replica synced again")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("work", WORKS)
def test_operation_while_working(work, op):
    expected = reference(work)
    pair = Pair()
    try:
        w = WORK[work]()
        w.prepare(pair.master.client())
        wait_synced_again(pair.replica)
        assert pair.master.client().execute_command("WAIT", 1, 60000) == 1
        w.start(pair)
        harness.wait_until(lambda: w.busy(pair.master.client()), 30, f"{work} under way")
        master, others = operate(op, pair, w)
        masters = [master] if master else [n for n in others if is_master(n)]
        for n in masters:
            got = w.finish(n.client())
            assert got == expected, f"{work} after {op}: differs from one node's"
        if master:
            for n in others:
                harness.wait_until(lambda n=n: synced(n), 60, "replica in step")
                harness.wait_until(
                    lambda n=n: n.client().execute_command("DEBUG", "DIGEST")
                    == master.client().execute_command("DEBUG", "DIGEST"), 30,
                    "replica equal to its master")
        for n in pair.nodes():
            harness.wait_until(lambda n=n: n.client().info("clients")["blocked_clients"] == 0,
                               30, "no client left blocked")
            assert n.client().info("listingstats")["listingstats_works_waiting_for_writes"] == 0
    finally:
        pair.close()


def test_sigterm_and_shutdown_nosave_with_work_queued_exit_0():
    """SHUTDOWN NOSAVE and SIGTERM while sliced queries, a FOLLOW backlog
    and a RETAIN are all queued: the process exits with status 0 (nothing
    is dropped at exit: module state is never destroyed)."""
    for how in ("nosave", "sigterm"):
        workdir = tempfile.mkdtemp(prefix="listingstats-exit-")
        n = node(workdir).start()
        c = n.client()
        works = [Query(), Follow()]
        for w in works:
            w.prepare(c)
        for w in works:
            w.start(type("P", (), {"master": n}))
        harness.wait_until(lambda: c.info("clients")["blocked_clients"] > 0, 30, "queries")
        assert following(c)["lag"] > 0
        if how == "nosave":
            try:
                c.execute_command("SHUTDOWN", "NOSAVE")
            except redis.ConnectionError:
                pass
        else:
            n.proc.terminate()
        n.expect_clean_exit()
        shutil.rmtree(workdir, ignore_errors=True)


def test_nothing_is_written_while_paused_on_a_single_node_with_aof():
    """Redis 7.0 asserts when anything is propagated during a pause with
    the AOF on, even without replicas: FOLLOW waits, then carries on."""
    workdir = tempfile.mkdtemp(prefix="listingstats-aof-")
    n = node(workdir).start()
    c = n.client()
    w = Follow()
    w.prepare(c)
    w.start(type("P", (), {"master": n}))
    harness.wait_until(lambda: w.busy(c), 30, "FOLLOW under way")
    c.execute_command("CLIENT", "PAUSE", 800, "WRITE")
    before = following(c)["last-id"]
    time.sleep(0.5)
    f = following(c)
    assert f["last-id"] == before
    assert b"writes are paused" in f["waiting"], f
    assert w.finish(c) == reference("follow")
    n.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_answers_in_flight_stay_under_max_query_memory():
    """100 clients ask one big `*` answer at once: the queries take turns
    under max-query-memory (never more reserved than it), memory stays
    within the bound plus what the finished answers cost in output
    buffers, and every client gets the whole answer. A query that alone
    would pass the bound is refused, naming the setting."""
    workdir = tempfile.mkdtemp(prefix="listingstats-mem-")
    n = node(workdir).start()
    c = n.client()
    ingest_day_hashes(c, 2000, 10)
    ask = ["LISTINGSTATS.QUERY", METRIC, "2015-12-01", "2015-12-10", "*", "GROUPBY", "DAY"]
    alone = c.execute_command(*ask)
    assert len(alone) == 20000
    cap = 8 << 20
    c.config_set("listingstats.max-query-memory", "8mb")
    assert c.config_get("listingstats.max-query-memory") == {
        "listingstats.max-query-memory": str(cap)}
    base = c.info("memory")["used_memory"]
    c.execute_command("MEMORY", "PURGE")
    reserved, waiting, stop = [0], [0], threading.Event()

    def watch():
        w = n.client()
        while not stop.is_set():
            info = w.info("listingstats")
            reserved[0] = max(reserved[0], info["listingstats_query_memory_reserved"])
            waiting[0] = max(waiting[0], info["listingstats_queries_waiting_for_memory"])
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = []

    def client():
        results.append(redis.Redis(port=n.port, socket_timeout=300).execute_command(*ask))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    stop.set()
    watcher.join()
    assert len(results) == 100 and all(r == alone for r in results)
    assert 0 < reserved[0] <= cap, reserved
    assert waiting[0] > 0, "queries waited for their turn"
    peak = c.info("memory")["used_memory_peak"] - base
    # Without the bound this run peaks at several hundred MB.
    assert peak < 4 * cap, f"{peak >> 20} MB above the start"
    c.config_set("listingstats.max-query-memory", "1mb")
    with pytest.raises(redis.ResponseError, match="more than max-query-memory"):
        c.execute_command(*ask)
    assert c.execute_command("LISTINGSTATS.QUERY", METRIC, "2015-12-01", "2015-12-01", "1,2")
    n.stop()
    shutil.rmtree(workdir, ignore_errors=True)
