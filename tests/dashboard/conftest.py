import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import harness  # noqa: E402
# Every test fails when a server it started crashed (see harness).
from harness import no_server_crashed  # noqa: E402,F401

VIEW, CLICK = "ldp:sellPanel:addToCart:impression", "ldp:sellPanel:addToCart:click"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(n, seed, days=7, listings=20, now=None):
    """Views over the last `days` days, a quarter clicked."""
    rng = random.Random(seed)
    now = now or int(time.time())
    out = []
    for i in range(n):
        t = now - rng.randrange(days * 86400)
        l = str(2100 + rng.randrange(listings))
        out.append({"name": VIEW, "listingIds": [l], "message_date": t})
        if rng.random() < 0.25:
            out.append({"name": CLICK, "listingIds": [l], "message_date": t})
    return out


def ingest(client, evs):
    for i in range(0, len(evs), 500):
        client.execute_command("LISTINGSTATS.INGEST", *[json.dumps(e) for e in evs[i:i + 500]])


def get(url, timeout=10):
    """(status, JSON body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            return r.status, (json.loads(body) if r.headers.get_content_type() == "application/json"
                              else body.decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Service:
    """The dashboard service (dashboard/service.py) on a free port. Every
    one started is stopped after its test, failed or not."""

    running = []

    def __init__(self, redis_url, interval=0.5):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="dashboard-", suffix=".log", delete=False)
        args = [sys.executable, os.path.join(ROOT, "dashboard", "service.py"), "--port",
                str(self.port), "--interval", str(interval)]
        if redis_url:
            args += ["--redis", redis_url]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        Service.running.append(self)
        harness.wait_until(lambda: get(self.url + "/healthz")[0] == 200, 30, "the service")

    def stop(self):
        if self in Service.running:
            Service.running.remove(self)
        self.proc.terminate()
        self.proc.wait(10)
        with open(self.log.name) as f:
            log = f.read()
        assert "Traceback" not in log, log
        os.unlink(self.log.name)


@pytest.fixture(autouse=True)
def stop_services_of_the_test():
    """A test's own services (not the module's shared one) stop with it."""
    shared = list(Service.running)
    yield
    for s in [s for s in Service.running if s not in shared]:
        s.proc.kill()
        s.proc.wait(10)
        Service.running.remove(s)


@pytest.fixture(scope="module")
def server():
    workdir = tempfile.mkdtemp(prefix="listingstats-dash-")
    node = harness.Node(harness.cluster_port(), workdir, cluster=False,
                        module_args=["hours", "yes", "hour-retention-days", "0"]).start()
    ingest(node.client(), events(3000, 1))
    yield node
    node.stop()


@pytest.fixture(scope="module")
def service(server):
    s = Service(f"redis://127.0.0.1:{server.port}")
    yield s
    s.stop()
