"""Monitoring: Debian's prometheus scrapes the service's /metrics, and the
values read back through its query API are the module's (INFO, FOLLOWING,
today's totals); the shipped alert rules pass `promtool check rules` and
Prometheus loads and evaluates them."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

import harness
from conftest import VIEW, free_port, get, ingest

METRIC = "ldp_add_to_cart_ctr"
RULES = os.path.join(harness.ROOT, "dashboard", "alerts.yml")


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} missing: scripts/install-deps.sh installs Debian's prometheus")
    return path


@pytest.fixture(scope="module")
def prometheus(service):
    workdir = tempfile.mkdtemp(prefix="listingstats-prom-")
    port = free_port()
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        json.dump({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [RULES],
            "scrape_configs": [{"job_name": "listingstats",
                                "static_configs": [{"targets": [service.url[len("http://"):]]}]}],
        }, f)
    log = open(os.path.join(workdir, "prometheus.log"), "w")
    proc = subprocess.Popen([tool("prometheus"), f"--config.file={config}",
                             f"--storage.tsdb.path={workdir}/data",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        harness.wait_until(lambda: _ready(url), 60, "prometheus")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _ready(url):
    try:
        return get(url + "/-/ready")[0] == 200
    except OSError:
        return False


def instant(prom, expr):
    """{label values: value} of an instant query."""
    status, body = get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200 and body["status"] == "success", body
    return {tuple(sorted(r["metric"].items())): float(r["value"][1])
            for r in body["data"]["result"]}


def one(prom, expr):
    values = list(instant(prom, expr).values())
    return values[0] if len(values) == 1 else None


def test_promtool_accepts_the_alert_rules():
    out = subprocess.run([tool("promtool"), "check", "rules", RULES], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 4 rules found" in out.stdout, out.stdout


def test_prometheus_reads_the_module_s_numbers(server, service, prometheus):
    c = server.client()
    # A followed stream, so FOLLOW's lag is exported: entries added while
    # nothing applies them yet would be lag; applied ones leave 0.
    c.xadd("dash:events", {"event": json.dumps({"name": VIEW, "listingIds": ["2103"],
                                                "message_date": int(time.time())})})
    c.execute_command("LISTINGSTATS.FOLLOW", "dash:events", "FROM", "0")
    harness.wait_until(lambda: one(prometheus, 'listingstats_follow_lag{stream="dash:events"}')
                       == 0.0, 30, "the FOLLOW lag scraped")
    ingest(c, [{"name": VIEW, "listingIds": ["2104"], "message_date": int(time.time())}] * 3)
    info = c.info("listingstats")
    applied = float(info["listingstats_events_applied"])

    # The counters, once a scrape after the last change.
    harness.wait_until(lambda: one(prometheus, "listingstats_events_applied_total") == applied,
                       30, "events_applied scraped")
    rows = c.execute_command("LISTINGSTATS.QUERY", METRIC, "today", "today", "*", "GROUPBY", "TOTAL")
    harness.wait_until(
        lambda: one(prometheus, f'listingstats_today_denominator{{metric="{METRIC}"}}')
        == float(rows[0][4]), 30, "today's denominator scraped")
    assert one(prometheus, f'listingstats_today_numerator{{metric="{METRIC}"}}') == rows[0][3]
    assert one(prometheus, f'listingstats_today_rate{{metric="{METRIC}"}}') == \
        pytest.approx(float(rows[0][5]))
    assert one(prometheus, "listingstats_up") == 1.0
    for name in ("events_rejected_total", "duplicates_skipped_total", "cluster_timeouts_total",
                 "longest_slice_usec", "index_bytes", "cache_bytes"):
        assert one(prometheus, "listingstats_" + name) is not None, name
    assert one(prometheus, "listingstats_index_bytes") > 0

    # A rejected event makes the alert fire (for: 0m), evaluated by
    # Prometheus itself from the shipped rules.
    c.execute_command("LISTINGSTATS.INGEST", "not json")
    def firing():
        status, body = get(prometheus + "/api/v1/alerts")
        return any(a["labels"]["alertname"] == "ListingstatsEventsRejected"
                   and a["state"] == "firing" for a in body["data"]["alerts"])
    harness.wait_until(firing, 30, "ListingstatsEventsRejected firing")
    status, body = get(prometheus + "/api/v1/rules")
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert len(rules) == 4 and all(r["health"] == "ok" for r in rules), rules
    c.execute_command("LISTINGSTATS.UNFOLLOW", "dash:events")
