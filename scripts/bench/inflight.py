"""Benchmark `inflight`: what answers in flight hold. 50 clients ask the
same `'*' GROUPBY DAY` over 150,000 day hashes (about 20 MB of reply
each) twice each, at once, under `max-query-memory` 1tb (no bound in
practice), 256mb (the default) and 64mb: `used_memory_peak` over the
memory before, the most reserved at once (INFO, sampled every 10 ms), and
how long the 100 calls took."""

import subprocess
import threading
import time

from redislab import Client, Server  # noqa: E402
from harness import LOAD_PIN, SERVER_CPU, load_star  # noqa: E402

QUERY = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "2015-12-01", "2015-12-30", "*",
         "GROUPBY", "DAY"]


def field(info, name):
    return int(next(l for l in info.splitlines() if l.startswith(name + ":")).split(":")[1])


def run(cap, clients):
    with Server(cpu=SERVER_CPU, server_args=["--maxmemory", "0"]) as srv:
        c = srv.client()
        load_star(c, 5000, 30, "2015-12-01")
        c.call("CONFIG", "SET", "listingstats.max-query-memory", cap)
        rows = len(c.call(*QUERY))
        base = field(c.call("INFO", "memory"), "used_memory")
        reserved = [0]
        stop = threading.Event()

        def watch():
            w = Client(srv.port)
            while not stop.is_set():
                reserved[0] = max(reserved[0], field(w.call("INFO", "listingstats"),
                                                      "listingstats_query_memory_reserved"))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        t0 = time.time()
        subprocess.run([*LOAD_PIN, "redis-benchmark", "-p", str(srv.port), "-c", str(clients),
                        "-n", str(clients * 2), "-q", *QUERY], capture_output=True, check=True)
        elapsed = time.time() - t0
        stop.set()
        watcher.join()
        peak = field(c.call("INFO", "memory"), "used_memory_peak")
        return rows, (peak - base) / 2**20, reserved[0] / 2**20, elapsed


def section_inflight(clients=50):
    results = []
    for cap in ("1tb", "256mb", "64mb"):
        rows, peak, reserved, elapsed = run(cap, clients)
        results.append((cap, peak, reserved, elapsed))
        print("  %s: peak +%.0f MB, reserved at most %.0f MB, %.1f s" % (cap, peak, reserved,
                                                                       elapsed))
    lines = [
        "## Answers in flight",
        "",
        "%d clients (redis-benchmark) each ask `%s` twice, at once, on a server holding "
        "150,000 day hashes (5,000 listings × 30 days): %d rows, about 20 MB of reply each. "
        "Identical calls share one computation; each waiting client's replay counts under "
        "`max-query-memory` like a reply being built. Peak is `used_memory_peak` over "
        "`used_memory` before the calls (the answers being built or replayed, and the clients' "
        "output buffers the server still holds); reserved is the most "
        "`listingstats_query_memory_reserved` seen (INFO every 10 ms)."
        % (clients, " ".join(QUERY), rows),
        "",
        "| max-query-memory | peak over before, MB | reserved at most, MB | %d calls took, s |"
        % (clients * 2),
        "|---|---:|---:|---:|",
    ]
    for cap, peak, reserved, elapsed in results:
        lines.append("| %s | %.0f | %.0f | %.1f |" % (cap, peak, reserved, elapsed))
    lines += [
        "",
        "What the bound cannot hold back is what the server already wrote to a client and the "
        "client has not read yet (its output buffer, bounded by `client-output-buffer-limit`).",
    ]
    return "\n".join(lines)
