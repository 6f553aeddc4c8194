"""Benchmark `tax`: what loading the module costs traffic that never touches
it. Common commands on keys that are not day hashes, against the same
server without the module, and against a module whose keyspace callback is
empty (the module API's own floor), in instructions per call (callgrind,
the whole server) and in server microseconds per call (INFO commandstats)."""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time

from harness import LOAD_PIN, SERVER_CPU, c_module  # noqa: E402
from redislab import ROOT, MODULE, Client, commandstats, free_port  # noqa: E402

# redis-benchmark's own key names: none looks like a day hash.
COMMANDS = [
    ("SET", ["SET", "key:__rand_int__", "x"]),
    ("INCR", ["INCR", "counter:__rand_int__"]),
    ("LPUSH", ["LPUSH", "mylist", "x"]),
    ("SADD", ["SADD", "myset", "element:__rand_int__"]),
    ("ZADD", ["ZADD", "myzset", "__rand_int__", "element:__rand_int__"]),
    ("MSET (10 keys)", ["MSET"] + ["key:__rand_int__", "x"] * 10),
    ("HSET", ["HSET", "myhash", "element:__rand_int__", "x"]),
    ("GET", ["GET", "key:__rand_int__"]),
    ("HGET", ["HGET", "myhash", "element:__rand_int__"]),
    ("LRANGE 0 9", ["LRANGE", "mylist", "0", "9"]),
]

SERVERS = os.environ.get("TAX_SERVERS", "redis-7.0 valkey-9.1").split()
# A quicker look: TAX_COMMANDS=SET,MSET keeps those commands (by the first
# word of their label); TAX_QUICK=1 skips the day-hashes variant and the
# microsecond tables.
if os.environ.get("TAX_COMMANDS"):
    _wanted = {w.strip().upper() for w in os.environ["TAX_COMMANDS"].split(",")}
    COMMANDS = [c for c in COMMANDS if c[0].split()[0].upper() in _wanted]
QUICK = os.environ.get("TAX_QUICK") == "1"
DAY_HASHES = 100_000


def server_path(name):
    return subprocess.run([os.path.join(ROOT, "scripts", "servers.sh"), "--path", name],
                          check=True, capture_output=True, text=True).stdout.strip()


def variants():
    empty = c_module("empty_module")
    return [
        ("no module", []),
        ("empty callback, all classes", ["--loadmodule", empty, "all"]),
        ("empty callback, hash class", ["--loadmodule", empty, "hash"]),
        ("empty callbacks, hash class + listingstats's 5 server events", ["--loadmodule", empty, "hash", "server"]),
        ("listingstats, idle", ["--loadmodule", MODULE]),
        ("listingstats, %dk day hashes" % (DAY_HASHES // 1000), ["--loadmodule", MODULE]),
    ][: 5 if QUICK else None]


def bench(port, args, n, pipeline=16):
    run = subprocess.run([*LOAD_PIN, "redis-benchmark", "-p", str(port), "-P", str(pipeline), "-c", "1",
                          "-n", str(n), "-r", "10000", "-q", *map(str, args)],
                         capture_output=True, text=True)
    if run.returncode != 0:  # Once more: a server under valgrind can be slow to answer.
        run = subprocess.run(run.args, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError("redis-benchmark %s: %s %s" % (args, run.stdout[-500:], run.stderr[-500:]))


def wait_ready(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited")
        try:
            Client(port).call("PING")
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def load_day_hashes(port):
    """DAY_HASHES day hashes, then waits for the module's index and cache."""
    c = Client(port)
    c.send_all((["HSET", "2015-12-22_%d" % i, "cart::checkoutNow:impression", 3,
                 "cart::checkoutNow:click", 1] for i in range(DAY_HASHES)), batch=5000)
    for _ in range(600):
        info = c.call("INFO", "listingstats")
        if "index_building:0" in info and "cache_warming:0" in info:
            return
        time.sleep(0.5)


@contextlib.contextmanager
def serving(launcher, binary, extra, day_hashes):
    """A server (`launcher` + `binary`, e.g. under valgrind) on a free port,
    with DAY_HASHES day hashes loaded first when `day_hashes`; yields
    (port, process, its directory)."""
    d = tempfile.mkdtemp(prefix="tax-")
    port = free_port()
    proc = subprocess.Popen([*launcher(d), binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        if day_hashes:
            load_day_hashes(port)
        yield port, proc, d
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def instructions(binary, extra, day_hashes, calls=50_000):
    """Instructions per call of every command, the whole server counted."""
    def callgrind(d):
        return ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.%%p" % d]
    costs = {}
    with serving(callgrind, binary, ["--hz", "1", *extra], day_hashes) as (port, proc, out):
        for label, args in COMMANDS:
            bench(port, args, 5_000)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
            bench(port, args, calls)
            before = set(glob.glob(out + "/cg.*"))
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
            dump = max(set(glob.glob(out + "/cg.*")) - before, key=os.path.getmtime)
            costs[label] = total_instructions(dump) / calls
            os.remove(dump)
    return costs


def total_instructions(dump):
    with open(dump) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % dump)


def microseconds(binary, extra, day_hashes, calls=200_000):
    """Server microseconds per call (INFO commandstats), no valgrind."""
    def pinned(_d):
        return ["taskset", "-c", str(SERVER_CPU)] if shutil.which("taskset") else []
    costs = {}
    with serving(pinned, binary, extra, day_hashes) as (port, _proc, _d):
        c = Client(port)
        for label, args in COMMANDS:
            bench(port, args, 20_000)
            c.call("CONFIG", "RESETSTAT")
            bench(port, args, calls)
            costs[label] = commandstats(c)[args[0].lower()]["usec_per_call"]
    return costs


def section_tax():
    """Cost of being loaded, per server."""
    if not shutil.which("valgrind"):
        return "## Cost of being loaded\n\nvalgrind is not installed: skipped (apt-get install valgrind)."
    lines = [
        "## Cost of being loaded (unrelated traffic)",
        "",
        "redis-benchmark's own commands and key names (none looks like a day hash), pipeline 16, one "
        "client, keys drawn from 10,000. Instructions: the whole server under `valgrind --tool=callgrind`, "
        "50,000 calls after 5,000 to warm up, divided by the calls (`hz 1`: less of the server's timer "
        "work under valgrind's slow clock). The empty-callback module "
        "(`scripts/bench/c/empty_module.c`) subscribes to keyspace events and does nothing: the "
        "module API's own cost of a subscription; with `+ listingstats's 5 server events` it also "
        "subscribes empty callbacks to the server events listingstats follows (flush, swapdb, loading, "
        "config, replication role). `%dk day hashes`: that many day hashes loaded first "
        "(the module then also watches for other types written over them)." % (DAY_HASHES // 1000),
        "",
    ]
    for server in SERVERS:
        binary = server_path(server)
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
        v = next((w[2:] for w in version if w.startswith("v=")), "?")
        rows = {}
        for label, extra in variants():
            rows[label] = instructions(binary, extra, day_hashes="day hashes" in label)
        base = rows["no module"]
        labels = list(rows)
        lines += ["### %s (%s %s): instructions per call" % (server, os.path.basename(binary), v), "",
                  "| command | " + " | ".join(labels) + " |",
                  "|---|" + "---:|" * len(labels)]
        for cmd, _ in COMMANDS:
            cells = []
            for label in labels:
                n = rows[label][cmd]
                cells.append("%.0f" % n if label == "no module" else "%.0f (%+.1f%%)" % (n, 100 * (n / base[cmd] - 1)))
            lines.append("| %s | %s |" % (cmd, " | ".join(cells)))
        lines.append("")
        if QUICK:
            continue
        us = {label: microseconds(binary, extra, day_hashes="day hashes" in label)
              for label, extra in variants() if label in ("no module", "listingstats, idle") or "day hashes" in label}
        ul = list(us)
        lines += ["### %s: server µs per call (INFO commandstats, 200,000 calls, no valgrind)" % server, "",
                  "| command | " + " | ".join(ul) + " |", "|---|" + "---:|" * len(ul)]
        for cmd, _ in COMMANDS:
            b = us["no module"][cmd]
            cells = ["%.3f" % b] + ["%.3f (%.2f×)" % (us[l][cmd], us[l][cmd] / b if b else float("nan")) for l in ul[1:]]
            lines.append("| %s | %s |" % (cmd, " | ".join(cells)))
        lines.append("")
    return "\n".join(lines)
