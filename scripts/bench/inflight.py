"""Benchmark `inflight`: what answers in flight hold. 200 clients ask the
same `'*' GROUPBY DAY` over 150,000 day hashes (about 20 MB of reply
each) twice each, at once, under `max-query-memory` 1tb (no bound in
practice), 256mb (the default) and 64mb; then 1,000 clients under 256mb
and 64mb (without a bound they would need about 20 GB of output buffers):
`used_memory_peak` over the memory before, the most reserved at once
(INFO, sampled every 10 ms), and how long the calls took."""

import asyncio
import threading
import time

from redislab import Client, Server  # noqa: E402
from harness import SERVER_CPU, load_star  # noqa: E402

QUERY = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr", "2015-12-01", "2015-12-30", "*",
         "GROUPBY", "DAY"]


def field(info, name):
    return int(next(l for l in info.splitlines() if l.startswith(name + ":")).split(":")[1])


def command(args):
    """One command in RESP."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def reply_bytes(port):
    """The answer's size in bytes on the wire (every call gets the same)."""
    import socket
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(command(["CLIENT", "SETNAME", "sizer"]) + command(QUERY))
        data = b""
        while not data.startswith(b"+OK\r\n") or len(data) < 6:
            data += s.recv(65536)
        data = data[5:]
        # RESP2 array of rows: read until the whole array parsed.
        while True:
            try:
                return parse_end(data)
            except (IndexError, ValueError):  # incomplete: read more
                data += s.recv(1 << 20)


def parse_end(data, at=0):
    """The offset just past the RESP value at `at` (IndexError or
    ValueError: `data` ends before it)."""
    kind = data[at:at + 1]
    nl = data.index(b"\r\n", at)
    if kind in (b"+", b"-", b":"):
        return nl + 2
    n = int(data[at + 1:nl])
    if kind == b"$":
        end = nl + 2 + max(n, 0) + (2 if n >= 0 else 0)
        if end > len(data):
            raise IndexError
        return end
    at = nl + 2
    for _ in range(max(n, 0)):
        at = parse_end(data, at)
    return at


async def ask_all(port, clients, size):
    """`clients` connections, each sending the query twice and reading the
    two answers as they come, keeping none (a reader that never holds an
    answer: redis-benchmark holds each whole, 1,000 of them 17 GB)."""
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):
            writer.write(command(QUERY))
            await writer.drain()
            left = size
            while left:
                chunk = await reader.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("server closed the connection")
                left -= len(chunk)
        writer.close()
    await asyncio.gather(*(one() for _ in range(clients)))


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
        size = reply_bytes(srv.port)
        t0 = time.time()
        asyncio.run(ask_all(srv.port, clients, size))
        elapsed = time.time() - t0
        stop.set()
        watcher.join()
        peak = field(c.call("INFO", "memory"), "used_memory_peak")
        return rows, size, (peak - base) / 2**20, reserved[0] / 2**20, elapsed


RUNS = (("1099511627776", 200), ("256mb", 200), ("64mb", 200), ("256mb", 1000), ("64mb", 1000))


def section_inflight():
    results = []
    # 1099511627776 is 1tb, the largest setting (Redis's units stop at gb).
    for cap, clients in RUNS:
        rows, size, peak, reserved, elapsed = run(cap, clients)
        results.append((cap, clients, peak, reserved, elapsed))
        print("  %s, %d clients: peak +%.0f MB, reserved at most %.0f MB, %.1f s"
              % (cap, clients, peak, reserved, elapsed))
    lines = [
        "## Answers in flight",
        "",
        "Clients (asyncio connections that read each answer as it comes and keep none) each ask "
        "`%s` twice, at once, on a server holding "
        "150,000 day hashes (5,000 listings × 30 days): %d rows, %.1f MB of reply each. "
        "Identical calls share one computation; each waiting client's replay counts under "
        "`max-query-memory` like a reply being built. Peak is `used_memory_peak` over "
        "`used_memory` before the calls (the answers being built or replayed, and the clients' "
        "output buffers the server still holds); reserved is the most "
        "`listingstats_query_memory_reserved` seen (INFO every 10 ms)."
        % (" ".join(QUERY), rows, size / 1e6),
        "",
        "| max-query-memory | clients | peak over before, MB | reserved at most, MB | "
        "the calls took, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for cap, clients, peak, reserved, elapsed in results:
        shown = "1tb (no bound in practice)" if cap.isdigit() else cap
        lines.append("| %s | %d | %.0f | %.0f | %.1f |" % (shown, clients, peak, reserved, elapsed))
    lines += [
        "",
        "What the bound cannot hold back is what the server already wrote to a client and the "
        "client has not read yet (its output buffer, bounded by `client-output-buffer-limit`).",
    ]
    return "\n".join(lines)
