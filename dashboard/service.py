"""The listingstats dashboard: a live web page of the module's numbers,
Prometheus metrics, and JSON endpoints for Grafana's Infinity data source.

    python dashboard/service.py [--redis redis://HOST:PORT] [--port 8090] [--interval 2]

`scripts/dashboard.sh` runs it in its own venv. Without --redis it uses the
server the demo left running (`scripts/demo.sh --keep` writes its address
to target/demo/redis.url).

One poller runs every distinct panel query once per `--interval`, however
many browsers watch: viewers register what they look at, and every page
(server-sent events) and JSON call is answered from the poller's last
results. Queries carry `MAXAGE` of the interval, so several services (or
other dashboards) polling one server share the module's answers too.
Pointed at any node of a Redis Cluster, the numbers are the whole
cluster's (any node answers for it).

Endpoints:

    GET /                       the page
    GET /api/dashboard?...      every panel for (from, to, listing), JSON
    GET /api/stream?...         the same, as server-sent events, on change
    GET /api/series?...         rows for Grafana (Infinity): time in epoch ms
    GET /api/total?...          the site total and its change
    GET /api/top?...            the best listings (rank=value|wilson)
    GET /metrics                Prometheus text format
    GET /healthz                the service and its server's state
"""

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import os
import re
import sys
import time
import zoneinfo

import redis
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest, CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
from listingstats import ListingStats  # noqa: E402

DEMO_URL_FILE = os.path.join(ROOT, "target", "demo", "redis.url")
DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")
WORDS = re.compile(r"\A(today|yesterday|now|-\d{1,5}[dh])\Z")
# Panels nobody asked for since this many seconds are no longer polled.
IDLE_AFTER = 30.0


class BadRequest(Exception):
    """A request the service refuses before asking the server."""


class BadURL(Exception):
    """--redis is not a Redis URL: said on the page, as any server error."""


def text(v):
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


# ------------------------------------------------------------ the server


class Server:
    """The Redis server the numbers come from: reconnects on failure, and
    says what is wrong in words a person can act on."""

    def __init__(self, url):
        self.url = url
        self.client = None
        self.error = None
        self.zone = datetime.timezone.utc
        self.hours = False
        self.metrics = []

    def connect(self):
        if self.url is None:
            raise ConnectionError("no server: give --redis redis://HOST:PORT "
                                  "(or run scripts/demo.sh --keep first)")
        if self.client is None:
            try:
                self.client = redis.Redis.from_url(self.url, socket_timeout=10,
                                                   socket_connect_timeout=3)
            except ValueError as e:
                raise BadURL(f"{self.url!r} is not a Redis URL ({e}): give "
                             "redis://[user:password@]HOST:PORT[/db]") from None
        return self.client

    def call(self, *args):
        """Runs one command; on a lost connection, one new try."""
        return self.run(lambda c: c.r.execute_command(*args))

    def run(self, work):
        """work(ListingStats over this server's connection); on a lost
        connection, one new try."""
        for attempt in (0, 1):
            try:
                return work(ListingStats(self.connect()))
            except (redis.ConnectionError, redis.TimeoutError):
                self.client = None
                if attempt:
                    raise
        return None

    def refresh(self):
        """Reads what the page needs to know of the server (every poll):
        the module is loaded, its zone, whether hours are on, the metrics."""
        try:
            try:
                self.metrics = [m[0] for m in self.run(lambda c: c.metric_list())]
            except redis.ResponseError as e:
                if "unknown command" not in str(e).lower():
                    raise
                raise RuntimeError(f"the server at {self.url} has no listingstats module "
                                   "(MODULE LOAD /path/to/liblistingstats.so)") from None
            try:
                conf = self.call("CONFIG", "GET", "listingstats.*")
            except redis.exceptions.NoPermissionError:
                conf = {}  # a user without CONFIG GET: UTC days, no hours shown
            if isinstance(conf, list):
                conf = dict(zip(conf[::2], conf[1::2]))
            conf = {text(k): text(v) for k, v in conf.items()}
            try:
                self.zone = zoneinfo.ZoneInfo(conf.get("listingstats.timezone", "UTC"))
            except zoneinfo.ZoneInfoNotFoundError:
                self.zone = datetime.timezone.utc
            self.hours = conf.get("listingstats.hours") == "yes"
            self.error = None
        except (redis.RedisError, OSError, RuntimeError, ConnectionError, BadURL) as e:
            self.error = describe(self.url, e)
        return self.error is None

    def nodes(self):
        """Every node to read INFO from: on a cluster, each one that is
        not failed (redis-py parses CLUSTER NODES into a dict by address)."""
        client = self.connect()
        if not client.info("cluster").get("cluster_enabled"):
            return [(None, client)]
        out = []
        for addr, node in client.cluster("nodes").items():
            if "fail" in node["flags"] or "noaddr" in node["flags"]:
                continue
            host, port = addr.split(",")[0].rsplit(":", 1)
            out.append((addr, redis.Redis(host=host, port=int(port), socket_timeout=5)))
        return out


def describe(url, e):
    if isinstance(e, redis.AuthenticationError):
        return f"{url} refused the user or password: {e}; retrying"
    if isinstance(e, (redis.ConnectionError, OSError, ConnectionError)):
        return f"cannot reach {url}: {e}; retrying"
    return str(e)


# ---------------------------------------------------------------- panels


def panel_specs(metric, start, end, listing, hours):
    """The queries of one metric's card: (name, client method, arguments),
    run with the project's client (clients/python)."""
    who = listing or "*"
    out = [
        ("days", "query", (metric, start, end, who, "date")),
        ("total", "query", (metric, start, end, who, "total", "previous")),
        ("top", "top", (metric, start, end, 10, "*", 1, "value")),
        ("wilson", "top", (metric, start, end, 10, "*", 1, "wilson")),
    ]
    if hours:
        # The hours of the range's last day (today: up to now).
        out.append(("hours", "query", (metric, end, end, who, "hour")))
    return out


def run_panel(client, method, args, max_age):
    """One panel's rows from the client (ListingStats)."""
    if method == "query":
        metric, start, end, who, groupby, *compare = args
        return client.query(metric, start, end, who, groupby=groupby,
                            compare=compare[0] if compare else None, max_age=max_age)
    metric, start, end, n, who, mindenom, rank = args
    return client.top(metric, start, end, n, who, mindenom=mindenom, rank=rank,
                      max_age=max_age)


def shape(name, rows):
    """A panel's rows (the client's Row / TopRow) as JSON with named fields."""
    if name == "days":
        return [{"date": r.date, "numerator": r.numerator, "denominator": r.denominator,
                 "value": r.value} for r in rows]
    if name == "hours":
        # One row per (hour, listing): summed per hour (ratios of sums).
        sums = {}
        for r in rows:
            n, d = sums.get(r.date, (0, 0))
            sums[r.date] = (n + r.numerator, d + r.denominator)
        scale = scale_of(rows)
        return [{"hour": h, "numerator": n, "denominator": d,
                 "value": (n / d * scale) if d else None}
                for h, (n, d) in sorted(sums.items(), key=lambda kv: hour_ms(kv[0]))]
    if name == "total":
        if not rows:
            return {"numerator": 0, "denominator": 0, "value": None, "previous": None,
                    "change": None}
        r, p = rows[0], rows[0].previous
        return {"numerator": r.numerator, "denominator": r.denominator, "value": r.value,
                "previous": p and {"numerator": p.numerator, "denominator": p.denominator,
                                   "value": p.value},
                "change": p and p.change}
    out = []
    for r in rows:
        row = {"listing": r.listing, "numerator": r.numerator, "denominator": r.denominator,
               "value": r.value}
        if name == "wilson":
            row["bound"] = r.bound
        out.append(row)
    return out


def scale_of(rows):
    """A metric's scale from one of its rows (value / ratio)."""
    for r in rows:
        if r.denominator and r.value is not None and r.numerator:
            return r.value / (r.numerator / r.denominator)
    return 100.0


def hour_ms(label):
    """Epoch ms of an ISO hour label (`2015-12-22T13:00+01:00`, `...Z`)."""
    return int(datetime.datetime.fromisoformat(label.replace("Z", "+00:00")).timestamp() * 1000)


class Poller:
    """Runs each distinct panel query once per interval for whoever asked
    for it in the last IDLE_AFTER seconds, in one thread (the server sees
    one client), and keeps the results."""

    def __init__(self, server, interval):
        self.server = server
        self.interval = interval
        self.wanted = {}   # key (tuple of args) -> last time asked
        self.results = {}  # key -> (data or None, error or None, at)
        self.rounds = 0
        self.queries = 0
        self.changed = asyncio.Condition()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def want(self, method, args):
        key = (method, tuple(args))
        first = key not in self.wanted
        self.wanted[key] = time.monotonic()
        return key, first

    def poll_once(self):
        """One round (in the worker thread): every wanted query once."""
        now = time.monotonic()
        # A copy: viewers register queries from the event loop meanwhile.
        for key in [k for k, at in list(self.wanted.items()) if now - at > IDLE_AFTER]:
            del self.wanted[key]
            self.results.pop(key, None)
        ok = self.server.refresh()
        for key in list(self.wanted):
            if not ok:
                self.results[key] = (None, self.server.error, time.time())
                continue
            try:
                # MAXAGE: another poller's answer of this interval will do.
                method, args = key
                reply = self.server.run(lambda c: run_panel(c, method, args,
                                                            int(self.interval * 1000)))
                self.results[key] = (reply, None, time.time())
                self.queries += 1
            except (redis.ConnectionError, redis.TimeoutError) as e:
                self.results[key] = (None, describe(self.server.url, e), time.time())
            except redis.ResponseError as e:
                self.results[key] = (None, str(e), time.time())
        self.rounds += 1

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await loop.run_in_executor(self.pool, self.poll_once)
            except Exception as e:  # noqa: BLE001 - the poller must outlive any one round
                self.server.error = f"the dashboard service failed a round: {e!r}; retrying"
                print(self.server.error, file=sys.stderr, flush=True)
            async with self.changed:
                self.changed.notify_all()
            await asyncio.sleep(max(0.05, self.interval - (loop.time() - started)))

    async def fresh(self, keys):
        """Waits for the first results of keys just wanted (one round)."""
        if all(k in self.results for k in keys):
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pool, self.poll_once)


def real_date(v):
    """v when it is a date of the calendar (2015-12-22), else None."""
    try:
        return datetime.date.fromisoformat(v) if DATE.match(v) else None
    except ValueError:
        return None


def check_range(start, end):
    for what, v in (("from", start), ("to", end)):
        if not (real_date(v) or WORDS.match(v)):
            raise BadRequest(f"{what} must be a date (YYYY-MM-DD) or today, yesterday, -Nd, "
                             f"got {v!r}")
    if real_date(start) and real_date(end) and start > end:
        raise BadRequest(f"from {start} is after to {end}")


def check_listing(listing):
    if listing and not re.match(r"\A[A-Za-z0-9._-]{1,64}\Z", listing):
        raise BadRequest(f"listing must be an id of letters, digits, . _ -, got {listing!r}")


class Service:
    def __init__(self, server, interval):
        self.server = server
        self.poller = Poller(server, interval)
        # Set at shutdown: open streams end (a browser reconnects).
        self.closing = False
        # view -> (poller round, stream message, its numbers): one per round.
        self.messages = {}

    def params(self, request):
        q = request.query
        start, end = q.get("from") or "-6d", q.get("to") or "today"
        listing = q.get("listing") or ""
        check_range(start, end)
        check_listing(listing)
        only = q.get("metric")
        return start, end, listing, only

    async def snapshot(self, start, end, listing, only=None):
        """Every panel of every metric (or of `only`), from the poller."""
        if not self.server.metrics and self.server.error is None:
            await asyncio.get_running_loop().run_in_executor(self.poller.pool, self.server.refresh)
        metrics = [only] if only else list(self.server.metrics)
        cards, keys = [], []
        for metric in metrics:
            panels = []
            for name, method, args in panel_specs(metric, start, end, listing,
                                                  self.server.hours):
                key, _ = self.poller.want(method, args)
                keys.append(key)
                panels.append((name, key))
            cards.append((metric, panels))
        await self.poller.fresh(keys)
        out = {"server": self.server.url, "from": start, "to": end, "listing": listing,
               "hours": self.server.hours, "error": self.server.error, "metrics": []}
        for metric, panels in cards:
            card = {"metric": metric, "errors": {}}
            for name, key in panels:
                reply, error, at = self.poller.results.get(key, (None, None, None))
                if error:
                    card["errors"][name] = error
                    card[name] = None
                elif reply is not None:
                    card[name] = shape(name, reply)
                    card["at"] = at
            out["metrics"].append(card)
        return out

    # ---- the page and its stream

    async def index(self, request):
        return web.FileResponse(os.path.join(HERE, "static", "index.html"))

    async def dashboard(self, request):
        try:
            start, end, listing, only = self.params(request)
        except BadRequest as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(await self.snapshot(start, end, listing, only))

    async def stream(self, request):
        try:
            start, end, listing, only = self.params(request)
        except BadRequest as e:
            return web.json_response({"error": str(e)}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        last = None
        try:
            while not self.closing:
                event, same = await self.message(start, end, listing, only)
                if same != last:
                    await response.write(event)
                    last = same
                async with self.poller.changed:
                    try:
                        await asyncio.wait_for(self.poller.changed.wait(), 15)
                    except asyncio.TimeoutError:
                        await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def message(self, start, end, listing, only):
        """The stream's message for a view, and its numbers without times
        (a page changes when a number changes): built once per poller round
        and view, however many browsers watch it."""
        view = (start, end, listing, only)
        kept = self.messages.get(view)
        if kept and kept[0] == self.poller.rounds:
            return kept[1], kept[2]
        snap = await self.snapshot(start, end, listing, only)
        event = f"data: {json.dumps(snap, sort_keys=True)}\n\n".encode()
        same = json.dumps(strip_times(snap), sort_keys=True)
        if len(self.messages) > 1000:
            self.messages.clear()
        self.messages[view] = (self.poller.rounds, event, same)
        return event, same

    # ---- Grafana (Infinity)

    def grafana_range(self, request):
        """from/to as Grafana sends them (epoch ms, `${__from}`) or dates."""
        q = request.query
        out = []
        for what in ("from", "to"):
            v = q.get(what, "")
            if v.isdigit():
                t = datetime.datetime.fromtimestamp(int(v) / 1000, self.server.zone)
                out.append(t)
            elif real_date(v):
                d = real_date(v)
                out.append(datetime.datetime(d.year, d.month, d.day, tzinfo=self.server.zone))
            else:
                raise BadRequest(f"{what} must be epoch milliseconds (${{__{what}}}) or "
                                 f"YYYY-MM-DD, got {v!r}")
        if out[0] > out[1]:
            raise BadRequest("from is after to")
        return out

    async def grafana(self, request, name):
        try:
            metric = request.query.get("metric", "")
            if not metric:
                raise BadRequest("metric is required")
            start, end = self.grafana_range(request)
            who = request.query.get("listing") or "*"
            check_listing(who if who != "*" else "")
            step = request.query.get("step", "day")
            if step not in ("day", "hour"):
                raise BadRequest(f"step must be day or hour, got {step!r}")
            rank = request.query.get("rank", "value")
            if rank not in ("value", "wilson"):
                raise BadRequest(f"rank must be value or wilson, got {rank!r}")
            n = int(request.query.get("n", 10))
            if name == "series" and step == "hour":
                utc = datetime.timezone.utc
                a, b = (t.astimezone(utc).strftime("%Y-%m-%dT%HZ") for t in (start, end))
                method, args = "query", (metric, a, b, who, "hour")
            else:
                a, b = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
                method, args = {
                    "series": ("query", (metric, a, b, who, "date")),
                    "total": ("query", (metric, a, b, who, "total", "previous")),
                    "top": ("top", (metric, a, b, n, "*", 1, rank)),
                }[name]
        except (BadRequest, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)
        key, _ = self.poller.want(method, args)
        await self.poller.fresh([key])
        reply, error, _ = self.poller.results.get(key, (None, "no answer yet", None))
        if error:
            return web.json_response({"error": error}, status=502)
        if name == "series":
            if step == "hour":
                rows = [dict(r, time=hour_ms(r.pop("hour"))) for r in shape("hours", reply)]
            else:
                rows = []
                for r in shape("days", reply):
                    d = datetime.date.fromisoformat(r.pop("date"))
                    t = datetime.datetime(d.year, d.month, d.day, tzinfo=self.server.zone)
                    rows.append(dict(r, time=int(t.timestamp() * 1000)))
            return web.json_response(rows)
        if name == "total":
            t = shape("total", reply)
            prev = t.pop("previous") or {}
            return web.json_response([dict(t, metric=metric, previous_value=prev.get("value"),
                                           previous_numerator=prev.get("numerator"),
                                           previous_denominator=prev.get("denominator"))])
        return web.json_response(shape("wilson" if rank == "wilson" else "top", reply))

    # ---- Prometheus

    async def metrics(self, request):
        loop = asyncio.get_running_loop()
        registry = CollectorRegistry()
        registry.register(ModuleCollector(self.server, self.poller.interval))
        body = await loop.run_in_executor(self.poller.pool, generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request):
        return web.json_response({"server": self.server.url, "error": self.server.error,
                                  "rounds": self.poller.rounds, "queries": self.poller.queries,
                                  "panels": len(self.poller.wanted)})


def strip_times(snap):
    return {**snap, "metrics": [{k: v for k, v in m.items() if k != "at"}
                                for m in snap.get("metrics", [])]}


# INFO fields exported, and how: counters only grow, gauges move.
COUNTERS = {
    "events_applied": "Events applied by INGEST, FOLLOW and cluster parts",
    "duplicates_skipped": "Events or INCRs skipped as already seen",
    "events_rejected": "Malformed events skipped",
    "increments_applied": "Counter updates written by INCR",
    "keys_examined": "Day hashes read by GET, QUERY and TOP",
    "calls": "Commands run",
    "errors": "Commands that answered with an error",
    "cluster_timeouts": "Cluster-wide requests a master did not answer in time",
    "followed_entries": "Stream entries taken by FOLLOW",
    "shared_answers": "QUERY/TOP calls answered by an identical computation",
}
GAUGES = {
    "longest_slice_usec": "The longest slice of background work, microseconds",
    "index_bytes": "Heap bytes of the per-day index",
    "cache_bytes": "Heap bytes of the query cache",
    "index_entries": "Day hashes in the index",
    "followed_streams": "Streams followed",
    "query_memory_reserved": "Bytes reserved by queries in flight",
    "works_waiting_for_writes": "Works waiting for writes to be allowed",
    "answer_cache_bytes": "Bytes of answers kept for identical calls",
}


class ModuleCollector:
    """Reads INFO listingstats (every node of a cluster), FOLLOWING, and
    today's site totals per metric at each scrape."""

    def __init__(self, server, interval):
        self.server = server
        self.interval = interval

    def collect(self):
        up = GaugeMetricFamily("listingstats_up", "1 when the server answered with the module",
                               labels=["node"])
        counters = {k: CounterMetricFamily(f"listingstats_{k}", h, labels=["node"])
                    for k, h in COUNTERS.items()}
        gauges = {k: GaugeMetricFamily(f"listingstats_{k}", h, labels=["node"])
                  for k, h in GAUGES.items()}
        lag = GaugeMetricFamily("listingstats_follow_lag",
                                "Entries of a followed stream not applied yet",
                                labels=["node", "stream"])
        rate = GaugeMetricFamily("listingstats_today_rate",
                                 "Today's site-wide value of a metric (ratio of sums)",
                                 labels=["metric"])
        num = GaugeMetricFamily("listingstats_today_numerator", "Today's site-wide numerator",
                                labels=["metric"])
        den = GaugeMetricFamily("listingstats_today_denominator", "Today's site-wide denominator",
                                labels=["metric"])
        ok = self.server.refresh()
        up_node = self.server.url or ""
        try:
            nodes = self.server.nodes() if ok else []
        except redis.RedisError:
            nodes = []
        if not nodes:
            up.add_metric([up_node], 0)
        for addr, client in nodes:
            node = addr or up_node
            try:
                info = client.info("listingstats")
                up.add_metric([node], 1 if info else 0)
                for k, fam in counters.items():
                    if f"listingstats_{k}" in info:
                        fam.add_metric([node], float(info[f"listingstats_{k}"]))
                for k, fam in gauges.items():
                    if f"listingstats_{k}" in info:
                        fam.add_metric([node], float(info[f"listingstats_{k}"]))
                for m in client.execute_command("LISTINGSTATS.FOLLOWING"):
                    d = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
                    d = {text(k): v for k, v in d.items()}
                    lag.add_metric([node, text(d["stream"])], float(d["lag"]))
            except redis.RedisError:
                up.add_metric([node], 0)
        if ok:
            for metric in self.server.metrics:
                try:
                    rows = self.server.run(lambda c, m=metric: c.query(
                        m, "today", "today", "*", groupby="total",
                        max_age=int(self.interval * 1000)))
                except redis.RedisError:
                    continue
                n, d, v = (rows[0].numerator, rows[0].denominator, rows[0].value) if rows \
                    else (0, 0, None)
                num.add_metric([metric], n)
                den.add_metric([metric], d)
                if v is not None:
                    rate.add_metric([metric], v)
        yield up
        yield from counters.values()
        yield from gauges.values()
        yield lag
        yield rate
        yield num
        yield den


# ------------------------------------------------------------------ main


def make_app(url, interval):
    service = Service(Server(url), interval)
    app = web.Application()
    app.router.add_get("/", service.index)
    app.router.add_static("/static/", os.path.join(HERE, "static"))
    app.router.add_get("/api/dashboard", service.dashboard)
    app.router.add_get("/api/stream", service.stream)
    for name in ("series", "total", "top"):
        app.router.add_get(f"/api/{name}", lambda r, n=name: service.grafana(r, n))
    app.router.add_get("/metrics", service.metrics)
    app.router.add_get("/healthz", service.healthz)

    async def start_poller(app):
        app["poller"] = asyncio.create_task(service.poller.run())

    async def stop_poller(app):
        app["poller"].cancel()

    async def end_streams(app):
        service.closing = True
        async with service.poller.changed:
            service.poller.changed.notify_all()

    app.on_startup.append(start_poller)
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(stop_poller)
    app["service"] = service
    return app


def default_url():
    try:
        with open(DEMO_URL_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis", default=None,
                   help="redis://HOST:PORT of any node (default: the demo's server)")
    p.add_argument("--port", type=int, default=8090, help="HTTP port (default 8090)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--interval", type=float, default=2.0,
                   help="seconds between two runs of each panel query (default 2)")
    a = p.parse_args(argv)
    url = a.redis or default_url()
    print(f"listingstats dashboard on http://{a.host}:{a.port}/ for {url or '(no server yet)'}",
          flush=True)
    web.run_app(make_app(url, a.interval), host=a.host, port=a.port, print=None)


if __name__ == "__main__":
    main()
