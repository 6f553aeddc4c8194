"""The dashboard service against a real server: its numbers are the
module's, every distinct panel query runs once per interval however many
viewers watch, Grafana's Infinity endpoints answer every query of the
example dashboard, and bad input gets a clear message while the service
keeps running and retries."""

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import harness
import redis
from conftest import Service, events, free_port, get, ingest

METRIC = "ldp_add_to_cart_ctr"


def query(client, *args):
    return client.execute_command("LISTINGSTATS.QUERY", METRIC, *args)


def card(snap, metric=METRIC):
    return next(m for m in snap["metrics"] if m["metric"] == metric)


def test_the_numbers_are_the_module_s(server, service):
    c = server.client()
    status, snap = get(service.url + "/api/dashboard")
    assert status == 200 and snap["error"] is None, snap
    m = card(snap)
    total = query(c, "-6d", "today", "*", "GROUPBY", "TOTAL")[0]
    assert (m["total"]["numerator"], m["total"]["denominator"]) == (total[3], total[4])
    days = query(c, "-6d", "today", "*", "GROUPBY", "DATE")
    assert [(d["date"], d["numerator"], d["denominator"]) for d in m["days"]] == \
        [(r[1].decode(), r[3], r[4]) for r in days]
    top = c.execute_command("LISTINGSTATS.TOP", METRIC, "-6d", "today", 10)
    assert [(t["listing"], t["numerator"]) for t in m["top"]] == [(r[0].decode(), r[1]) for r in top]
    # Hours: today's, summed over every listing (ratios of sums).
    sums = {}
    for r in query(c, "today", "today", "*", "GROUPBY", "HOUR"):
        n, d = sums.get(r[1].decode(), (0, 0))
        sums[r[1].decode()] = (n + r[3], d + r[4])
    assert snap["hours"] is True and len(m["hours"]) >= 1
    assert {h["hour"]: (h["numerator"], h["denominator"]) for h in m["hours"]} == sums
    # One listing picked.
    status, snap = get(service.url + "/api/dashboard?listing=2105&from=-2d&to=today")
    one = query(c, "-2d", "today", "2105", "GROUPBY", "TOTAL")[0]
    assert (card(snap)["total"]["numerator"], card(snap)["total"]["denominator"]) == (one[3], one[4])


def test_every_distinct_panel_runs_once_per_interval_whatever_the_viewers(tmp_path):
    """60 browsers on the same dashboard (server-sent events): the server
    (its own, no other service polls it) sees the panels' queries once per
    interval, not once per viewer."""
    node = harness.Node(harness.cluster_port(), str(tmp_path), cluster=False,
                        module_args=["hours", "yes", "hour-retention-days", "0"]).start()
    c = node.client()
    ingest(c, events(500, 3))
    s = Service(f"redis://127.0.0.1:{node.port}", interval=1.0)
    stop = threading.Event()
    received = []

    def viewer():
        with urllib.request.urlopen(s.url + "/api/stream", timeout=30) as r:
            while not stop.is_set():
                line = r.readline()
                if line.startswith(b"data: "):
                    received.append(time.time())

    threads = [threading.Thread(target=viewer, daemon=True) for _ in range(60)]
    for t in threads:
        t.start()
    harness.wait_until(lambda: len(received) >= 60, 30, "every viewer's first page")
    calls = lambda: sum(v["calls"] for k, v in c.info("commandstats").items()
                        if k in ("cmdstat_listingstats.query", "cmdstat_listingstats.top"))
    before, t0 = calls(), time.time()
    time.sleep(5)
    per_second = (calls() - before) / (time.time() - t0)
    stop.set()
    # 2 metrics x 5 panels, once a second, whatever the 60 viewers.
    assert 10 * 0.7 <= per_second <= 10 * 1.3, per_second
    s.stop()
    node.stop()


def test_grafana_infinity_endpoints_answer_the_example_dashboard(server, service):
    with open(harness.ROOT + "/dashboard/grafana-dashboard.json") as f:
        dash = json.load(f)
    now = int(time.time() * 1000)
    values = {"${service}": service.url, "${metric}": METRIC, "${__from}": str(now - 7 * 86400000),
              "${__to}": str(now)}
    sub = lambda v: values.get(v, v)
    checked = 0
    for panel in dash["panels"]:
        for t in panel["targets"]:
            params = {p["key"]: sub(p["value"]) for p in t["url_options"]["params"]}
            url = t["url"].replace("${service}", service.url) + "?" + urllib.parse.urlencode(params)
            status, rows = get(url)
            assert status == 200, (panel["title"], rows)
            assert rows, panel["title"]
            for row in rows:
                for col in t["columns"]:
                    assert col["selector"] in row, (panel["title"], col, row)
                    if col["type"] == "timestamp_epoch":
                        assert now - 9 * 86400000 < row[col["selector"]] <= now + 3600000
            checked += 1
    assert checked == 5


def test_bad_input_gets_a_clear_message(server, service):
    status, body = get(service.url + "/api/dashboard?from=2015-13-01")
    assert status == 400 and "from must be a date" in body["error"], body
    status, body = get(service.url + "/api/dashboard?from=2015-12-10&to=2015-12-01")
    assert status == 400 and "after" in body["error"], body
    status, body = get(service.url + "/api/dashboard?listing=a%20b")
    assert status == 400 and "listing must be" in body["error"], body
    status, body = get(service.url + "/api/total?metric=nope&from=2015-12-01&to=2015-12-02")
    assert status == 502 and "unknown metric 'nope'" in body["error"], body
    status, body = get(service.url + "/api/series?metric=" + METRIC + "&from=soon&to=later")
    assert status == 400 and "epoch milliseconds" in body["error"], body
    status, _ = get(service.url + "/healthz")
    assert status == 200


def test_a_malformed_url_is_said_and_the_service_keeps_running():
    s = Service("http://127.0.0.1:1", interval=0.3)
    status, snap = get(s.url + "/api/dashboard")
    assert status == 200 and "is not a Redis URL" in snap["error"], snap
    time.sleep(1)  # a few rounds of the poller
    status, health = get(s.url + "/healthz")
    assert status == 200 and health["rounds"] >= 2 and "not a Redis URL" in health["error"]
    s.stop()


def test_a_wrong_url_then_a_server_without_the_module_then_the_module(tmp_path):
    """The service keeps running and retries: no server, then a server
    without the module, then the module loaded (MODULE LOAD)."""
    port = harness.cluster_port()
    s = Service(f"redis://127.0.0.1:{port}", interval=0.3)
    status, snap = get(s.url + "/api/dashboard")
    assert status == 200 and f"cannot reach redis://127.0.0.1:{port}" in snap["error"], snap
    # A server without the module (loaded later by MODULE LOAD).
    plain_args = [harness.SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                  str(tmp_path), "--save", "", "--enable-module-command", "local"]
    proc = subprocess.Popen(plain_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        harness.wait_until(lambda: "no listingstats module" in (get(s.url + "/api/dashboard")[1]
                                                                ["error"] or ""), 20,
                           "the service to see the server without the module")
        redis.Redis(port=port).execute_command("MODULE", "LOAD", harness.MODULE)
        harness.wait_until(lambda: get(s.url + "/api/dashboard")[1]["error"] is None, 20,
                           "the service to recover")
    finally:
        proc.terminate()
        proc.wait(10)
    s.stop()


def test_pointed_at_any_cluster_node_it_shows_the_whole_cluster():
    with harness.Cluster(masters=3, replicas=0) as cluster:
        evs = events(1500, 7, listings=60)
        ingest(cluster.masters()[0].client(), evs)
        want = query(cluster.masters()[1].client(), "-6d", "today", "*", "GROUPBY", "TOTAL")[0]
        for node in cluster.nodes:
            s = Service(f"redis://127.0.0.1:{node.port}", interval=0.3)
            status, snap = get(s.url + "/api/dashboard")
            got = card(snap)["total"]
            assert (got["numerator"], got["denominator"]) == (want[3], want[4]), node.port
            status, text = get(s.url + "/metrics")
            # INFO of every node of the cluster.
            assert text.count("listingstats_up{") == 3, text
            s.stop()


def test_a_user_that_may_only_read_and_a_refused_password(server):
    """An ACL user that may read (+@read) and list metrics, with no CONFIG
    or INFO:
    the numbers still show (UTC days, no hour chart). A wrong password is
    said on the page."""
    c = server.client()
    # The module checks each read as the native command it equals (HMGET,
    # HGETALL of the metric registry): +@read has those.
    c.execute_command("ACL", "SETUSER", "dash", "on", ">s3cret", "~*", "+@read",
                      "+listingstats.query", "+listingstats.top", "+listingstats.metric")
    s = Service(f"redis://dash:s3cret@127.0.0.1:{server.port}", interval=0.3)
    status, snap = get(s.url + "/api/dashboard")
    assert status == 200 and snap["error"] is None and snap["hours"] is False, snap
    assert not card(snap)["errors"], card(snap)["errors"]
    total = query(c, "-6d", "today", "*", "GROUPBY", "TOTAL")[0]
    assert (card(snap)["total"]["numerator"], card(snap)["total"]["denominator"]) == \
        (total[3], total[4])
    s.stop()
    s = Service(f"redis://dash:wrong@127.0.0.1:{server.port}", interval=0.3)
    status, snap = get(s.url + "/api/dashboard")
    assert status == 200 and "refused the user or password" in snap["error"], snap
    s.stop()
    c.execute_command("ACL", "DELUSER", "dash")
