"""Benchmark `cluster`: QUERY and TOP with '*' asked of one master of a
3-master Redis Cluster (the node asks the others over the cluster bus and
merges), against one node holding the same day hashes; and the longest
PING wait on every node meanwhile."""

import datetime
import os
import socket
import subprocess
import time

from redislab import Server, commandstats  # noqa: E402
from harness import load_star, redis_benchmark  # noqa: E402
from star import StallProbe  # noqa: E402


def crc16(data):
    """CRC16/XMODEM, the hash of Redis Cluster slots."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(key):
    s = key.find("{")
    if s >= 0:
        e = key.find("}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key.encode()) % 16384


def _pair_free(port):
    for p in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def cluster_ports(n, first=30000 + os.getpid() % 15000):
    out, port = [], first
    while len(out) < n:
        if _pair_free(port):
            out.append(port)
        port += 1
    return out


def load_cluster(nodes, listings, days, start):
    """The same day hashes as `load_star`, each sent to the master owning its slot."""
    owner = {}
    for srv in nodes:
        for entry in srv.client().call("CLUSTER", "SLOTS"):
            lo, hi, master = entry[0], entry[1], entry[2]
            for s in range(lo, hi + 1):
                owner[s] = master[1]
    slots = {l: slot_of(str(l)) for l in range(1, listings + 1)}
    first = datetime.date.fromisoformat(start)
    per_port = {srv.port: [] for srv in nodes}
    for i in range(days):
        day = (first + datetime.timedelta(days=i)).isoformat()
        for listing in range(1, listings + 1):
            n = listing * 7 + i
            per_port[owner[slots[listing]]].append(
                ["HSET", "%s_{%d}" % (day, listing), "cart::checkoutNow:impression", 1 + n % 11,
                 "cart::checkoutNow:click", n % 4])
    for srv in nodes:
        srv.client().send_all(per_port[srv.port])


def start_cluster(masters):
    """`masters` redis-servers with the module made into a cluster (no
    replicas), each on its own port pair; the caller stops them."""
    ports = cluster_ports(masters)
    nodes = [Server(port=p, server_args=["--cluster-enabled", "yes", "--cluster-config-file",
                                         "nodes-%d.conf" % p]) for p in ports]
    for n in nodes:
        n.__enter__()
    try:
        subprocess.run(["redis-cli", "--cluster", "create", *["127.0.0.1:%d" % p for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
        deadline = time.time() + 60
        while not all("cluster_state:ok" in n.client().call("CLUSTER", "INFO") for n in nodes):
            if time.time() > deadline:
                raise SystemExit("cluster did not come up")
            time.sleep(0.1)
    except BaseException:
        stop_cluster(nodes)
        raise
    return nodes


def stop_cluster(nodes):
    for n in nodes:
        n.__exit__(None, None, None)


def owner_of(nodes, key):
    """The node that owns `key`'s slot."""
    slot = slot_of(key)
    for srv in nodes:
        for entry in srv.client().call("CLUSTER", "SLOTS"):
            if entry[0] <= slot <= entry[1]:
                return next(n for n in nodes if n.port == entry[2][1])
    raise SystemExit("no owner for slot %d" % slot)


def section_cluster(listings=10_000, days=30, start="2015-06-01"):
    """QUERY/TOP '*' on a 3-master cluster against one node; PING stalls."""
    nodes = start_cluster(3)
    try:
        load_cluster(nodes, listings, days, start)
        keys = sum(n.client().call("DBSIZE") for n in nodes)
        end = (datetime.date.fromisoformat(start) + datetime.timedelta(days=days - 1)).isoformat()
        query = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", start, end, "*"]
        variants = [("`QUERY ... * GROUPBY TOTAL`", query + ["GROUPBY", "TOTAL"]),
                    ("`QUERY ... * GROUPBY LISTING` (%d rows)" % listings, query + ["GROUPBY", "LISTING"]),
                    ("`QUERY ... *` (GROUPBY DAY, %d rows)" % (listings * days), query),
                    ("`TOP cart_to_checkout_ctr ... 10`",
                     ["LISTINGSTATS.TOP", "cart_to_checkout_ctr", start, end, 10])]
        asked = nodes[0]
        c = asked.client()
        for _, args in variants:
            c.call(*args)  # indexes built, answers warm
        rows = []
        stalls = []
        with Server() as single:
            s = single.client()
            load_star(s, listings, days, start)
            for label, args in variants:
                s.call(*args)
                mine, theirs = c.call(*args), s.call(*args)
                assert mine == theirs, label
                t_cluster = 1.0 / redis_benchmark(asked.port, args, 5, pipeline=1, clients=1)
                t_single = 1.0 / redis_benchmark(single.port, args, 5, pipeline=1, clients=1)
                rows.append((label, t_single * 1000, t_cluster * 1000))
        for label, args in variants:
            probes = [StallProbe(n.port) for n in nodes]
            for p in probes:
                p.__enter__()
            for _ in range(3):
                c.call(*args)
            for p in probes:
                p.__exit__(None, None, None)
            stalls.append((label, [p.worst * 1000 for p in probes], sum(p.pings for p in probes)))
        waits = commandstats(c)
        info = dict(l.split(":", 1) for l in c.call("INFO", "listingstats").splitlines() if ":" in l)
    finally:
        stop_cluster(nodes)
    lines = [
        "## Cluster: any node answers for the whole cluster",
        "",
        "%d day hashes (%d listings × %d days, two counters each, written with plain HSET to their "
        "owners) on a 3-master Redis Cluster on loopback, every query sent to one master, which asks "
        "the others over the cluster bus (64 KB frames, 4 in flight per transfer) and merges; against "
        "one node holding the same day hashes. Both answers are checked equal first. Client wall time "
        "from `redis-benchmark -c 1 -P 1` (a C client), best of 5." % (keys, listings, days),
        "",
        "| query | one node, ms | cluster (asked of one master), ms |",
        "|---|---:|---:|",
    ]
    for label, one, clu in rows:
        lines.append("| %s | %.1f | %.1f |" % (label, one, clu))
    lines += [
        "",
        "### Stall: a client PINGs every node every millisecond during three runs",
        "",
        "| running | longest PING wait per node, ms | PINGs |",
        "|---|---|---:|",
    ]
    for label, worst, pings in stalls:
        lines.append("| %s | %s | %d |" % (label, " / ".join("%.1f" % w for w in worst), pings))
    lines += [
        "",
        "Goal (issue 21): no node holds its event loop more than 10 ms for its part or for the merge. "
        "The asking master's `cluster_wait_usec` over its %s cluster-wide queries: %.1f ms each "
        "on average (asking to the last part)."
        % (info.get("listingstats_cluster_queries", "?"),
           int(info.get("listingstats_cluster_wait_usec", 0)) / max(1, int(info.get("listingstats_cluster_queries", 1))) / 1000),
    ]
    del waits
    return "\n".join(lines)
