"""Benchmark `follow`: applying a stream backlog with FOLLOW against INGEST of the same events in batches."""

import contextlib
import json
import os
import time

import loadgen  # noqa: E402
from harness import SERVER_CPU  # noqa: E402
from redislab import Server, commandstats  # noqa: E402
from star import StallProbe  # noqa: E402


def lag(c):
    rows = c.call("LISTINGSTATS.FOLLOWING")
    return sum(dict(zip(r[::2], r[1::2]))["lag"] for r in rows) if rows else 0


def section_follow(events=1_000_000, listings=2000, batch=500):
    """FOLLOW FROM 0 over a backlog of `events` entries: time to catch up and
    the worst PING wait meanwhile, against INGEST of the same events in
    batches of `batch` on a fresh server."""
    stream = [json.dumps(e, separators=(",", ":"))
              for e in loadgen.events(events, listings=listings, dup_share=0.05, seed=14)]
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        c.send_all((("XADD", "events", "*", "event", e) for e in stream), batch=5000)
        assert c.call("XLEN", "events") == events
        with StallProbe(srv.port) as probe:
            t = time.perf_counter()
            c.call("LISTINGSTATS.FOLLOW", "events")
            while lag(c) > 0:
                time.sleep(0.02)
            follow_s = time.perf_counter() - t
        state = dict(zip(*[iter(c.call("LISTINGSTATS.FOLLOWING")[0])] * 2))
        applied, dups = state["applied"], state["duplicates"]
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        c.call("CONFIG", "RESETSTAT")
        t = time.perf_counter()
        batches = (stream[i:i + batch] for i in range(0, len(stream), batch))
        c.send_all((("LISTINGSTATS.INGEST", *b) for b in batches), batch=20)
        ingest_s = time.perf_counter() - t
        stats = commandstats(c)["listingstats.ingest"]
        ingest_server_s = stats["calls"] * stats["usec_per_call"] / 1e6
    return "\n".join([
        "## FOLLOW: a stream backlog",
        "",
        "%d entries (loadgen events: %d listings, ids on all, 5%% redelivered) XADDed to one stream, then "
        "`LISTINGSTATS.FOLLOW events` (FROM 0); time until FOLLOWING shows lag 0, while another process "
        "PINGs every millisecond. Baseline: the same events through `LISTINGSTATS.INGEST` in batches of %d, "
        "on a fresh server." % (events, listings, batch),
        "",
        "| variant | seconds | entries/s | worst PING wait ms |",
        "|---|---:|---:|---:|",
        "| FOLLOW FROM 0, applied in slices | %.2f | %.0f | %.1f (%d pings) |"
        % (follow_s, events / follow_s, probe.worst * 1000, probe.pings),
        "| INGEST batches of %d (client wall) | %.2f | %.0f | - |" % (batch, ingest_s, events / ingest_s),
        "| INGEST batches of %d (server time) | %.2f | %.0f | - |" % (batch, ingest_server_s, events / ingest_server_s),
        "",
        "FOLLOW applied %d events and skipped %d redelivered ids; FOLLOW ÷ INGEST (server time): %.2f×. "
        "FOLLOW applies entries in batches of 100, each as one INGEST with per-entry accounting, and stores "
        "its position with each batch; the time includes the gaps between its 2 ms slices." % (applied, dups, follow_s / ingest_server_s),
    ])


def _caught_up(c, stream):
    rows = c.call("LISTINGSTATS.FOLLOWING")
    for r in rows:
        d = dict(zip(r[::2], r[1::2]))
        if d["stream"] == stream:
            return d["lag"] == 0, d
    return False, None


@contextlib.contextmanager
def _watched(nodes):
    """For the `with` block: a new measurement of every pass of each node's
    event loop (`watch-event-loop`), and a PING probe on each node."""
    for n in nodes:
        n.client().call("CONFIG", "SET", "listingstats.watch-event-loop", "no")
        n.client().call("CONFIG", "SET", "listingstats.watch-event-loop", "yes")
    probes = [StallProbe(n.port) for n in nodes]
    with contextlib.ExitStack() as stack:
        for p in probes:
            stack.enter_context(p)
        yield probes


def _follow_backlog(srv, probes_on, stream, entries):
    """XADDs `entries` to `stream` on `srv`, FOLLOWs it, and times until
    lag 0 with a PING probe on every server of `probes_on`."""
    c = srv.client()
    c.send_all((("XADD", stream, "*", "event", e) for e in entries), batch=5000)
    with _watched(probes_on) as probes:
        t = time.perf_counter()
        c.call("LISTINGSTATS.FOLLOW", stream)
        while True:
            done, state = _caught_up(c, stream)
            if done:
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - t
    return seconds, state, probes


def _infos(nodes):
    return [dict(l.split(":", 1) for l in n.client().call("INFO", "listingstats").splitlines()
                 if ":" in l) for n in nodes]


def _ms(infos, field):
    return " / ".join("%.1f" % (int(i.get("listingstats_" + field, 0)) / 1000) for i in infos)


def _native_load(nodes, requests=2_000_000):
    """The control: the same cluster busy with native HSETs from one
    `redis-benchmark --cluster` (no module work), PING probes on every
    node and the event loop watched; the longest PING waits and passes."""
    import subprocess
    with _watched(nodes) as probes:
        t = time.perf_counter()
        subprocess.run(["redis-benchmark", "--cluster", "-p", str(nodes[0].port), "-P", "16", "-c", "12",
                        "-n", str(requests), "-r", "100000", "-q", "-t", "hset"], check=True,
                       capture_output=True)
        seconds = time.perf_counter() - t
    return seconds, probes, _infos(nodes)


def section_follow_cluster(events=1_000_000, listings=2000):
    """FOLLOW FROM 0 of one stream's backlog on a 3-master cluster (the
    stream's master applies its own listings and sends the others their
    parts) against the same backlog on one node; the longest PING wait on
    every node meanwhile, and the totals compared."""
    from cluster import owner_of, start_cluster, stop_cluster
    stream = [json.dumps(e, separators=(",", ":"))
              for e in loadgen.events(events, listings=listings, dup_share=0.05, seed=14)]
    total = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "2015-01-01", "2016-12-31", "*",
             "GROUPBY", "TOTAL"]
    with Server() as srv:
        one_s, one_state, one_probes = _follow_backlog(srv, [srv], "events", stream)
        one_total = srv.client().call(*total)
    nodes = start_cluster(3)
    try:
        owner = owner_of(nodes, "events")
        clu_s, clu_state, clu_probes = _follow_backlog(owner, nodes, "events", stream)
        clu_total = owner.client().call(*total)
        infos = _infos(nodes)
        info = infos[nodes.index(owner)]
        native_s, native_probes, native_infos = _native_load(nodes)
    finally:
        stop_cluster(nodes)
    assert clu_total == one_total, (clu_total, one_total)
    assert (clu_state["rejected"], one_state["rejected"]) == (0, 0)
    return "\n".join([
        "## FOLLOW on a cluster: a stream backlog spread over 3 masters",
        "",
        "%d entries (loadgen events: %d listings, ids on all, 5%% redelivered) XADDed to the stream "
        "`events`, then `LISTINGSTATS.FOLLOW events` (FROM 0) on its master; time until FOLLOWING shows "
        "lag 0, while a process per node PINGs it every millisecond. The stream's master applies its own "
        "listings and sends each other master its part over the cluster bus, %s entries per batch; "
        "baseline: the same backlog followed by one node (no CPU pinning for either: the cluster's three "
        "servers share this machine's cores). The `*` totals of both are checked equal."
        % (events, listings, "500"),
        "",
        "| setup | seconds | entries/s | longest PING wait per node, ms |",
        "|---|---:|---:|---|",
        "| one node | %.2f | %.0f | %.1f |" % (one_s, events / one_s, one_probes[0].worst * 1000),
        "| 3-master cluster | %.2f | %.0f | %s |"
        % (clu_s, events / clu_s, " / ".join("%.1f" % (p.worst * 1000) for p in clu_probes)),
        "",
        "Cluster ÷ one node (time): %.2f×. Applied / duplicates: one node %d / %d, cluster %d / %d. "
        "The following master's `cluster_timeouts`: %s."
        % (clu_s / one_s, one_state["applied"], one_state["duplicates"], clu_state["applied"],
           clu_state["duplicates"], info.get("listingstats_cluster_timeouts", "?")),
        "",
        "How long each node's event loop was held, in node order (the following master is node %d), "
        "from INFO with `listingstats.watch-event-loop yes` set on every node after the XADDs:"
        % (nodes.index(owner) + 1),
        "",
        "| measure | FOLLOW backlog, ms | control: native HSET load, ms |",
        "|---|---|---|",
        "| longest pass of the event loop, wall (`longest_loop_pass_usec`) | %s | %s |"
        % (_ms(infos, "longest_loop_pass_usec"), _ms(native_infos, "longest_loop_pass_usec")),
        "| longest pass of the event loop, CPU (`longest_loop_pass_cpu_usec`) | %s | %s |"
        % (_ms(infos, "longest_loop_pass_cpu_usec"), _ms(native_infos, "longest_loop_pass_cpu_usec")),
        "| longest module slice, wall (`longest_slice_usec`) | %s | — |" % _ms(infos, "longest_slice_usec"),
        "| longest module slice, CPU (`longest_slice_cpu_usec`) | %s | — |" % _ms(infos, "longest_slice_cpu_usec"),
        "| longest PING wait | %s | %s |"
        % (" / ".join("%.1f" % (p.worst * 1000) for p in clu_probes),
           " / ".join("%.1f" % (p.worst * 1000) for p in native_probes)),
        "",
        "The control is the same cluster, after the backlog, busy for %.1f s with native `HSET`s from one "
        "`redis-benchmark --cluster -P 16 -c 12` (no module command) while the same probes PING: on this "
        "%d-core machine a PING waits that long with no module work at all. A command read during a pass "
        "is answered after that pass's timers, so a PING may wait for the rest of one pass and all of the "
        "next, plus any time the server waits for a core."
        % (native_s, os.cpu_count()),
    ])
