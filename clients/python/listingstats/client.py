"""`ListingStats(client)`: the module's commands for `redis.Redis` (one
node) and `redis.cluster.RedisCluster`.

On a cluster, INCR and GET go through the cluster client, which routes them
by the listing (the module declares it as a `NOT_KEY` key spec). INGEST is
split by node; QUERY, TOP and METRIC go to one master, which answers for
(and, for METRIC SET/DEL, changes) the whole cluster. Redirections the
module reports (`MOVED`, `TRYAGAIN`, `CLUSTERDOWN`) and lost connections
make the client re-read the slot map and send again what was not applied."""

import random
import datetime
import json
import time

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, TimeoutError as RedisTimeoutError

from . import merge
from .merge import Row, TopRow

REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def _day(d):
    if isinstance(d, (datetime.date, datetime.datetime)):
        return d.strftime("%Y-%m-%d")
    return merge.text(d)


def _is_redirect(err):
    return str(err).split(" ", 1)[0] in REDIRECTS


def _strict_redirect(err):
    """A STRICT batch refused because an event was redirected (`... event
    3: MOVED 12 host:port`): nothing was written, so it can be sent again."""
    text = str(err)
    return text.startswith("STRICT batch refused") and any(
        f": {code} " in text for code in REDIRECTS)


class ListingStats:
    def __init__(self, client, attempts=40, backoff=0.05):
        self.r = client
        self.cluster = isinstance(client, RedisCluster)
        self.attempts = attempts
        self.backoff = backoff
        # Event parts sent again after a redirection or a lost connection.
        self.resent = 0

    # ------------------------------------------------------------ plumbing

    def _refresh(self):
        self.r.nodes_manager.initialize()

    def _node_of(self, listing):
        slot = self.r.keyslot(listing)
        return self.r.nodes_manager.get_node_from_slot(slot)

    def _primaries(self):
        return self.r.get_primaries()

    def _on(self, node, *args):
        return self.r.get_redis_connection(node).execute_command(*args)

    def _retrying(self, attempt):
        """Runs attempt() until it stops raising redirections or lost
        connections, re-reading the slot map in between."""
        last = None
        for i in range(self.attempts):
            try:
                return attempt()
            except ResponseError as e:
                if not _is_redirect(e):
                    raise
                last = e
            except (RedisConnectionError, RedisTimeoutError) as e:
                last = e
            time.sleep(min(self.backoff * (i + 1), 0.5))
            try:
                self._refresh()
            except (RedisConnectionError, RedisTimeoutError) as e:
                last = e
        raise last

    # ------------------------------------------------------------ commands

    def incr(self, listing, event, by=1, date=None, at=None, id=None):
        args = ["LISTINGSTATS.INCR", str(listing), event]
        if by != 1:
            args += ["BY", int(by)]
        if date is not None:
            args += ["DATE", _day(date)]
        if at is not None:
            if isinstance(at, datetime.datetime):
                at = int(at.timestamp())
            args += ["AT", int(at)]
        if id is not None:
            args += ["ID", str(id)]
        return int(self.r.execute_command(*args))

    def get(self, listing, date):
        reply = self.r.execute_command("LISTINGSTATS.GET", str(listing), _day(date))
        if isinstance(reply, dict):
            return {merge.text(k): int(v) for k, v in reply.items()}
        return {merge.text(reply[i]): int(reply[i + 1]) for i in range(0, len(reply), 2)}

    def ingest(self, events, strict=False):
        """Applies a batch. Returns {applied, duplicates, rejected, errors}
        with errors as "index: reason", index counting the events given
        (an envelope's records one each). On a cluster an event whose
        listings live on k masters is sent as k parts (same id), and
        applied/duplicates count parts; STRICT holds per node."""
        head = ["LISTINGSTATS.INGEST"] + (["STRICT"] if strict else [])
        if not self.cluster:
            bodies = [e if isinstance(e, (str, bytes)) else json.dumps(e) for e in events]
            return merge.parse_ingest_reply(self.r.execute_command(*head, *bodies))
        total = {"applied": 0, "duplicates": 0, "rejected": 0, "errors": []}
        final = {}
        pending = None  # (index, body) still to send after a redirection
        for i in range(self.attempts):
            if pending is None:
                fallback = self._primaries()[0]
                parts = merge.split_events(events, self._node_of, fallback)
            else:
                parts = self._resplit(pending)
            pending = []
            for node, sent in parts.items():
                try:
                    reply = merge.parse_ingest_reply(self._on(node, *head, *[b for _, b in sent]))
                except ResponseError as e:
                    if not (_is_redirect(e) or _strict_redirect(e)):
                        raise
                    pending.extend(sent)
                    continue
                except (RedisConnectionError, RedisTimeoutError):
                    # Applied or not, unknown: sent again (ids make it safe).
                    pending.extend(sent)
                    continue
                errors, retry = merge.error_parts(reply, sent)
                for index, reason in errors.items():
                    final.setdefault(index, reason)
                pending.extend((index, body) for index, body, _ in retry)
                total["applied"] += reply["applied"]
                total["duplicates"] += reply["duplicates"]
            if not pending:
                break
            self.resent += len(pending)
            time.sleep(min(self.backoff * (i + 1), 0.5))
            self._refresh()
        else:
            raise redis.exceptions.TryAgainError(
                f"{len(pending)} event parts still redirected after {self.attempts} attempts")
        total["rejected"] = len(final)
        total["errors"] = [f"{i}: {final[i]}" for i in sorted(final)]
        return total

    def _resplit(self, pending):
        """Parts to send again, regrouped by the current slot map (a part's
        listings may now live on several nodes)."""
        parts = {}
        for index, body in pending:
            event = json.loads(body) if isinstance(body, (str, bytes)) else body
            ids = merge.listings_of(event)
            if ids is None:
                parts.setdefault(self._primaries()[0], []).append((index, body))
                continue
            for node, sub in merge.split_events([event], self._node_of, None).items():
                parts.setdefault(node, []).extend((index, b) for _, b in sub)
        return parts

    def _any_node(self, *args):
        """One call answered for the whole cluster: the server asks every
        master concerned and merges (QUERY and TOP). Sent to a master,
        again after TRYAGAIN or a lost connection."""
        if not self.cluster:
            return self.r.execute_command(*args)
        return self._retrying(lambda: self._on(random.choice(self._primaries()), *args))

    def _slot_map(self):
        node = self._primaries()[0]
        return self._on(node, "CLUSTER", "SLOTS")

    @staticmethod
    def _listings(listings):
        if isinstance(listings, (str, bytes)) and merge.text(listings) == "*":
            return "*"
        if isinstance(listings, (str, bytes)):
            listings = merge.text(listings).split(",")
        out = []
        for l in listings:
            l = str(merge.text(l))
            if l not in out:
                out.append(l)
        return out

    @staticmethod
    def _options(tz=None, compare=None, max_age=None):
        """TZ, COMPARE and MAXAGE when given."""
        out = []
        if tz is not None:
            out += ["TZ", tz]
        if compare is not None:
            compare = merge.text(compare).upper()
            if compare not in ("PREVIOUS", "WEEK"):
                raise ValueError("compare must be previous or week")
            out += ["COMPARE", compare]
        if max_age is not None:
            out += ["MAXAGE", int(max_age)]
        return out

    def query(self, metrics, start, end, listings="*", groupby="day", tz=None, compare=None,
              max_age=None):
        """Rows of the metrics. `start`/`end`: dates, hours (2015-12-22T13),
        or words (today, -24h, now); `groupby` also "hour" (hours yes); `tz`:
        an IANA zone; `compare`: "previous" or "week" (Row.previous);
        `max_age` (ms): a recent identical answer will do."""
        names = merge.metric_names(metrics)
        groupby = merge.text(groupby).lower()
        if groupby not in merge.GROUPINGS:
            raise ValueError("groupby must be one of day, listing, date, total, hour")
        listings = self._listings(listings)
        ids = listings if listings == "*" else ",".join(listings)
        return merge.parse_rows(self._any_node(
            "LISTINGSTATS.QUERY", ",".join(names), _day(start), _day(end), ids,
            "GROUPBY", groupby.upper(), *self._options(tz, compare, max_age)))

    def top(self, metric, start, end, n, listings="*", mindenom=1, rank="value", confidence=0.95,
            tz=None, compare=None, max_age=None):
        """The n best listings by the metric's value, or with rank="wilson"
        by the lower bound of its Wilson interval at `confidence`."""
        listings = self._listings(listings)
        ids = listings if listings == "*" else ",".join(listings)
        args = ["LISTINGSTATS.TOP", metric, _day(start), _day(end), int(n),
                "LISTINGS", ids, "MINDENOM", int(mindenom), *self._options(tz, compare, max_age)]
        rank = merge.text(rank).lower()
        if rank == "wilson":
            args += ["RANK", "WILSON", repr(float(confidence))]
        elif rank != "value":
            raise ValueError("rank must be value or wilson")
        return merge.parse_top(self._any_node(*args))

    def metric_set(self, name, numerator, denominator, scale=100):
        """On a cluster the node asked sends the definition to every master."""
        self._any_node("LISTINGSTATS.METRIC", "SET", name, numerator, denominator,
                       "SCALE", repr(float(scale)))

    def metric_del(self, name):
        return int(self._any_node("LISTINGSTATS.METRIC", "DEL", name))

    def metric_list(self):
        reply = self._any_node("LISTINGSTATS.METRIC", "LIST")
        return [(merge.text(m[0]), merge.text(m[1]), merge.text(m[2]),
                 m[3] if isinstance(m[3], float) else float(merge.text(m[3]))) for m in reply]


__all__ = ["ListingStats", "Row", "TopRow"]
