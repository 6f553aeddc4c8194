"""Real servers for the cluster and operations tests: a 3-master +
3-replica Redis Cluster on loopback, and single nodes, each with the
freshly built module.

The server binary is $REDIS_SERVER (default `redis-server`), the module
$LISTINGSTATS_MODULE (default target/debug/liblistingstats.so). Cluster
ports are picked so that port + 10000 (the cluster bus) is free too.

No crash passes unseen: every node started is remembered (`STARTED`); a
node stopped (SIGTERM, as an operator does) must exit with status 0, and
`crashes()` lists every node whose log or stderr shows an assertion, a
crash, a bug report or a panic, or that exited by itself with another
status. The conftest fixtures fail any test after which it is not empty."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.environ.get("REDIS_SERVER", "redis-server")
MODULE = os.environ.get(
    "LISTINGSTATS_MODULE", os.path.join(ROOT, "target", "debug", "liblistingstats.so")
)
CLI = shutil.which("redis-cli") or "redis-cli"


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ephemeral_low():
    """Where the kernel starts picking local ports for outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports whose bus port (+10000) is below the ephemeral range too: no
# outgoing connection (a cluster link, a replica's) can take one of them as
# its local port while a test restarts the node that must bind it again
# (it did: "Could not create server TCP listening socket ... Address
# already in use" on a bus port). Machines whose ephemeral range starts too
# low for that fall back to 20000-44999.
_LOW, _HIGH = 12000, _ephemeral_low() - 10000
if _HIGH - _LOW < 2000:
    _LOW, _HIGH = 20000, 45000
_next = [_LOW + (os.getpid() * 37) % (_HIGH - _LOW)]


def cluster_port():
    """A free port whose bus port (+10000) is free too, both below the
    ephemeral range where the machine allows it."""
    for _ in range(_HIGH - _LOW):
        port = _next[0]
        _next[0] = _LOW + (_next[0] - _LOW + 1) % (_HIGH - _LOW)
        if port != 6379 and _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


def wait_until(check, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except AssertionError:
            raise  # a check that can never pass (a server that exited)
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


CRASH_MARKERS = ("ASSERTION", "crashed by signal", "panicked", "BUG REPORT",
                 "listingstats: internal error")

# Every node started by this process, for `crashes()`.
STARTED = []


def crash_marker(text):
    return next((m for m in CRASH_MARKERS if m in text), None)


def crashes():
    """(node, why) for every node started that crashed: a marker in its log
    or stderr, or an exit status other than 0 that no test asked for
    (`kill9`). Each crash is reported once."""
    out = []
    for node in STARTED:
        why = node.crash()
        if why and why not in node.reported:
            node.reported.add(why)
            out.append((node, why))
    return out


@pytest.fixture(autouse=True)
def no_server_crashed():
    """Fails the test after which any server it (or its fixtures) started
    logged an assertion, a crash or a panic, or exited with a status other
    than 0 that no test asked for."""
    yield
    found = crashes()
    assert not found, "\n\n".join(why for _, why in found)


class Node:
    """One server process; `restart()` keeps its directory (data, nodes.conf)."""

    def __init__(self, port, workdir, cluster=True, module_args=(), server_args=()):
        self.port = port
        self.dir = os.path.join(workdir, str(port))
        os.makedirs(self.dir, exist_ok=True)
        self.cluster = cluster
        self.module_args = list(module_args)
        self.server_args = list(server_args)
        self.proc = None
        self.exit_expected = False  # the process ended as a test asked (kill -9, a refused start)
        self.reported = set()
        # Logs of earlier runs of this node (a restart starts a new log).
        self.old_logs = ""

    def start(self):
        if self.proc is not None:
            self.old_logs += self.log(whole=True)
        self.exit_expected = False
        args = [
            SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--logfile", "server.log", "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--enable-module-command", "local",
            "--enable-debug-command", "local",
            "--loadmodule", MODULE, *self.module_args,
        ]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "2000"]
        args += self.server_args
        for name in ("server.log", "stderr.log"):
            try:
                os.remove(os.path.join(self.dir, name))
            except OSError:
                pass
        with open(os.path.join(self.dir, "stderr.log"), "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        if self not in STARTED:
            STARTED.append(self)
        wait_until(self._pong, 20, f"server on {self.port}")
        return self

    def _pong(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"server {self.port} exited:\n{self.log()}")
        return self.client().ping()

    def log(self, whole=False):
        text = ""
        for name in ("server.log", "stderr.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text if whole else text[-4000:]

    def crash(self):
        """Why this node counts as crashed (this run and earlier ones), or None."""
        text = self.old_logs + self.log(whole=True)
        marker = crash_marker(text)
        if marker:
            at = text.index(marker)
            return f"server {self.port} logged {marker!r}:\n{text[max(0, at - 1500):at + 2500]}"
        code = self.proc.poll() if self.proc else None
        if code not in (None, 0) and not self.exit_expected:
            return f"server {self.port} exited with status {code}:\n{text[-3000:]}"
        return None

    def client(self, **kw):
        return redis.Redis(port=self.port, socket_timeout=30, **kw)

    def kill9(self):
        self.exit_expected = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM, as an operator would; fails unless the server exits with
        status 0 within `timeout` (a master with replicas first waits for
        them, up to its shutdown-timeout)."""
        if self.proc and self.proc.poll() is None:
            # Redis refuses a SIGTERM while it writes its first AOF (a
            # replica that just synced: "Writing initial AOF, can't exit")
            # and does not try again: an operator sends it again.
            deadline = time.time() + timeout
            while self.proc.poll() is None and time.time() < deadline:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.kill9()
                raise AssertionError(f"server {self.port} ignored SIGTERM for {timeout} s:\n"
                                     f"{self.log()}")
        self.expect_clean_exit()

    def expect_clean_exit(self, timeout=30):
        """Waits for the process to end (asked by SHUTDOWN, SIGTERM, ...) and
        fails unless it exited with status 0 and logged no crash."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"server {self.port} did not exit:\n{self.log()}")
        if code != 0 and not self.exit_expected:
            raise AssertionError(f"server {self.port} exited with status {code}:\n{self.log()}")
        why = self.crash()
        if why:
            self.reported.add(why)
            raise AssertionError(why)

    def restart(self):
        self.stop()
        return self.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def is_replica(self):
        if not self.proc or self.proc.poll() is not None:
            return False
        try:
            return self.client().execute_command("ROLE")[0] in (b"slave", "slave")
        except redis.RedisError:
            return False


class Cluster:
    """3 masters + 3 replicas made with `redis-cli --cluster create`."""

    def __init__(self, masters=3, replicas=1):
        self.workdir = tempfile.mkdtemp(prefix="listingstats-cluster-")
        count = masters * (1 + replicas)
        self.nodes = [Node(cluster_port(), self.workdir) for _ in range(count)]
        self.replicas = replicas

    def __enter__(self):
        try:
            for n in self.nodes:
                n.start()
            cli(
                "--cluster", "create", *[n.addr for n in self.nodes],
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            )
            wait_until(self.healthy, 60, "cluster ok on every node")
            wait_until(self.replicas_synced, 60, "every replica synced")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        # Replicas first: a master stopped before its replicas waits for them.
        errors = []
        for n in sorted(self.nodes, key=lambda n: not n.is_replica()):
            try:
                n.stop()
            except AssertionError as e:
                errors.append(str(e))
        if exc[0] is None and not errors:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors and exc[0] is None:
            raise AssertionError("\n".join(errors))

    def healthy(self):
        for n in self.nodes:
            if n.proc.poll() is not None:
                continue
            info = n.client().execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
        return True

    def replicas_synced(self):
        """Every live replica has loaded its master's data and applies its
        stream: link up, no sync under way. (A Valkey 9 replica acknowledges
        offsets, and so counts for WAIT, while it still downloads its first
        RDB: WAIT alone does not say the data is there.)"""
        for n in self.nodes:
            if n.proc.poll() is not None:
                continue
            info = n.client().info("replication")
            if info.get("role") == "slave" and (info.get("master_link_status") != "up"
                                                or info.get("master_sync_in_progress") != 0):
                return False
        return True

    def converged(self):
        """`redis-cli --cluster check` passes: every node reachable, all
        agree on the slots, no slot open."""
        first = next(n for n in self.nodes if n.proc.poll() is None)
        out = subprocess.run([CLI, "--cluster", "check", first.addr], capture_output=True,
                             text=True, timeout=60)
        return out.returncode == 0 and "[ERR]" not in out.stdout

    def reshard(self, src, dst, slots):
        """Moves `slots` slots from master `src` to master `dst` with
        `redis-cli --cluster reshard`, once the cluster has converged (a
        check that fails before anything moved is retried)."""
        ids = {n.port: n.client().execute_command("CLUSTER", "MYID").decode() for n in (src, dst)}
        for attempt in range(3):
            wait_until(self.converged, 60, "cluster check to pass")
            out = subprocess.run(
                [CLI, "--cluster", "reshard", src.addr, "--cluster-from", ids[src.port],
                 "--cluster-to", ids[dst.port], "--cluster-slots", str(slots), "--cluster-yes",
                 "--cluster-pipeline", "20"], capture_output=True, text=True, timeout=600)
            if out.returncode == 0:
                return
            if "Moving slot" in out.stdout or attempt == 2:
                raise AssertionError(f"reshard failed:\n{out.stdout}\n{out.stderr}")

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def masters(self):
        out = []
        for n in self.nodes:
            if n.proc.poll() is not None:
                continue
            role = n.client().execute_command("ROLE")[0]
            if role in (b"master", "master"):
                out.append(n)
        return out

    def client(self):
        first = next(n for n in self.nodes if n.proc.poll() is None)
        return redis.cluster.RedisCluster(host="127.0.0.1", port=first.port, socket_timeout=30)

    def keys_outside_owned_slots(self):
        """Per live master: DBSIZE minus the keys counted in the slots it
        owns (CLUSTER COUNTKEYSINSLOT); 0 everywhere when no node holds a
        key of a slot it does not own."""
        out = {}
        for n in self.masters():
            c = n.client()
            owned = owned_slots(c)
            pipe = c.pipeline(transaction=False)
            for s in owned:
                pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", s)
            in_owned = sum(pipe.execute()) if owned else 0
            out[n.port] = c.dbsize() - in_owned
        return out


def owned_slots(client):
    myself = None
    for line in client.execute_command("CLUSTER", "NODES").decode().splitlines():
        f = line.split()
        if "myself" in f[2].split(","):
            myself = f
    slots = []
    for part in myself[8:]:
        if part.startswith("["):
            continue
        a, _, b = part.partition("-")
        slots.extend(range(int(a), int(b or a) + 1))
    return slots


def cli(*args, timeout=300):
    out = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"redis-cli {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


class Single:
    """One node, not a cluster, `tagged` keys like the cluster's."""

    def __enter__(self):
        self.workdir = tempfile.mkdtemp(prefix="listingstats-single-")
        self.node = Node(cluster_port(), self.workdir, cluster=False,
                         module_args=["key-format", "tagged"]).start()
        return self

    def __exit__(self, *exc):
        self.node.stop()
        if exc[0] is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self):
        return self.node.client()
