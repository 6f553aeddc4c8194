"""Shared by the demo, the benchmarks and the load generator: a minimal RESP
client (no third-party packages needed) and a throwaway redis-server with the
module loaded, on a free loopback port, removed on exit."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.environ.get("LISTINGSTATS_MODULE", os.path.join(ROOT, "target", "release", "liblistingstats.so"))


class RedisError(Exception):
    pass


class Client:
    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Parsing reads from `pos` on; the consumed prefix is dropped only
        # when more data arrives, so a large reply is parsed in linear time.
        self.buf = b""
        self.pos = 0

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0

    def _line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos:end]
                self.pos = end + 2
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = self.buf[self.pos:self.pos + n]
        self.pos += n + 2
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("unexpected reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.read() for _ in commands]

    def send_all(self, commands, batch=20000):
        """Sends an iterable of commands in pipelined batches of `batch`,
        discarding the replies (bulk loading)."""
        chunk = []
        for command in commands:
            chunk.append(command)
            if len(chunk) >= batch:
                self.pipeline(chunk)
                chunk = []
        if chunk:
            self.pipeline(chunk)


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 6379:
            return port


class Server:
    """A redis-server with the module, for `with Server() as srv:`."""

    def __init__(self, module_args=(), server_args=(), module=MODULE, cpu=None, keep=False, port=None):
        self.module_args = list(module_args)
        self.chosen_port = port
        # keep: leave the server running after the `with` block (its own
        # session, so the caller's Ctrl-C does not reach it).
        self.keep = keep
        self.server_args = list(server_args)
        self.module = module
        # Pinning the server to one core (benchmarks) keeps it from sharing
        # a core with the load generator on a small machine.
        self.pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []

    def __enter__(self):
        if not os.path.exists(self.module):
            raise SystemExit("module not built: %s (run cargo build --release)" % self.module)
        self.dir = tempfile.mkdtemp(prefix="listingstats-")
        self.port = self.chosen_port or free_port()
        self.log = os.path.join(self.dir, "server.log")
        cmd = [*self.pin, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--logfile", self.log, "--save", "", "--appendonly", "no",
               "--loadmodule", self.module, *self.module_args, *self.server_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=self.keep)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("redis-server exited:\n" + open(self.log).read())
            try:
                c = Client(self.port)
                c.call("PING")
                return self
            except (OSError, RedisError):
                time.sleep(0.05)
        raise SystemExit("redis-server did not start:\n" + open(self.log).read())

    def client(self):
        return Client(self.port)

    def __exit__(self, *exc):
        if self.keep and exc[0] is None:
            return
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def commandstats(client):
    """usec_per_call and calls per command, from INFO commandstats."""
    stats = {}
    for line in client.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            kv = dict(f.split("=") for f in fields.split(","))
            stats[name] = {"calls": int(kv["calls"]), "usec_per_call": float(kv["usec_per_call"])}
    return stats
