"""The pure half of the client: splitting INGEST batches by node and
parsing replies. No Redis here, so pytest covers it alone.

QUERY and TOP need no merging here: on a cluster, the node a query is sent
to asks the other masters and merges their parts itself."""

import base64
import json
import re
from collections import namedtuple

Row = namedtuple("Row", "metric date listing numerator denominator value previous",
                 defaults=(None,))
TopRow = namedtuple("TopRow", "listing numerator denominator value bound previous",
                    defaults=(None, None))
# With COMPARE: the compared period's sums and value, and the change.
Previous = namedtuple("Previous", "numerator denominator value change")

GROUPINGS = ("day", "listing", "date", "total", "hour")
_LISTING = re.compile(rb"\A[A-Za-z0-9._-]{1,64}\Z")


def text(v):
    return v.decode() if isinstance(v, (bytes, bytearray)) else v


def listing_key(listing):
    """The module's listing order as a sort key: numeric ids by number
    (leading zeros after), then the others byte-wise."""
    b = listing.encode() if isinstance(listing, str) else bytes(listing)
    if b and b.isdigit():
        stripped = b.lstrip(b"0")
        return (0, len(stripped), stripped, b)
    return (1, 0, b, b)


def listing_text(value):
    """A listing id as the module reads it from JSON (a string, or an
    integer in decimal), or None when the module would reject it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value if _LISTING.match(value.encode("utf-8", "replace")) else None


def value_of(numerator, denominator, scale):
    """numerator / denominator * scale as the module computes it (f64)."""
    if denominator == 0:
        return None
    return float(numerator) / float(denominator) * scale


# ---------------------------------------------------------------- INGEST

def unpack(events):
    """The batch as the module counts it: (index, event) pairs, where an
    envelope's records count one each. An event is a dict when it can be
    split by listing, else the original argument (bytes/str/dict) that is
    to be sent whole so the module itself explains what is wrong."""
    out = []
    for arg in events:
        obj = arg
        if isinstance(arg, (bytes, bytearray, str)):
            try:
                obj = json.loads(arg)
            except ValueError:
                out.append((len(out), arg))
                continue
        if isinstance(obj, dict) and "Records" in obj and isinstance(obj["Records"], list):
            for record in obj["Records"]:
                inner = None
                try:
                    data = record["kinesis"]["data"]
                    inner = json.loads(base64.b64decode(data, validate=True))
                except (KeyError, TypeError, ValueError):
                    inner = None
                if isinstance(inner, dict) and "Records" not in inner:
                    out.append((len(out), inner))
                else:
                    # Sent as a one-record envelope: the module's reason.
                    out.append((len(out), {"Records": [record]}))
            continue
        out.append((len(out), obj))
    return out


def listings_of(event):
    """The event's listing ids as text, or None when the event cannot be
    split (the module will reject it; it is sent whole)."""
    if not isinstance(event, dict) or "Records" in event:
        return None
    given = [k for k in ("listingIds", "listingId", "listing_id") if k in event]
    if len(given) != 1:
        return None
    raw = event[given[0]]
    if given[0] == "listingIds":
        if not isinstance(raw, list) or not raw:
            return None
    else:
        raw = [raw]
    ids = [listing_text(v) for v in raw]
    return None if any(i is None for i in ids) else ids


def split_events(events, node_of, fallback):
    """Splits a batch by node. `node_of(listing) -> node`; `fallback` gets
    events that cannot be split. Returns {node: [(index, json_text), ...]}:
    an event whose listings live on several nodes becomes one part per
    node, keeping its id (the module remembers ids per slot, so a retry of
    any part counts once), with that node's listings in their order."""
    parts = {}
    for index, event in unpack(events):
        ids = listings_of(event)
        if ids is None:
            body = event if isinstance(event, (bytes, str)) else json.dumps(event)
            parts.setdefault(fallback, []).append((index, body))
            continue
        by_node = {}
        for listing in ids:
            by_node.setdefault(node_of(listing), []).append(listing)
        for node, mine in by_node.items():
            part = {k: v for k, v in event.items() if k not in ("listingIds", "listingId", "listing_id")}
            part["listingIds"] = mine
            parts.setdefault(node, []).append((index, json.dumps(part)))
    return parts


def parse_ingest_reply(reply):
    """An INGEST reply (RESP2 flat list or RESP3 dict) as a dict."""
    if isinstance(reply, dict):
        items = {text(k): v for k, v in reply.items()}
    else:
        items = {text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
    return {
        "applied": int(items["applied"]),
        "duplicates": int(items["duplicates"]),
        "rejected": int(items["rejected"]),
        "errors": [text(e) for e in items["errors"]],
    }


def error_parts(reply, sent):
    """Splits a node's reported errors into (final, retry): `sent` is the
    list of (index, body) that node got; errors are `"i: reason"` with i
    counting in that list. Redirections (MOVED, ASK, TRYAGAIN,
    CLUSTERDOWN) are to be retried; the rest are final, keyed by the
    original index."""
    final, retry = {}, []
    for e in reply["errors"]:
        pos, _, reason = e.partition(": ")
        index, body = sent[int(pos)]
        if reason.split(" ", 1)[0] in ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"):
            retry.append((index, body, reason))
        else:
            final.setdefault(index, reason)
    return final, retry


# ----------------------------------------------------------------- QUERY

def _number(v):
    return None if v is None else float(text(v) if not isinstance(v, float) else v)


def _previous(tail):
    """The four COMPARE values at the end of a row, or None."""
    if len(tail) != 4:
        return None
    num, den, value, change = tail
    return Previous(int(num), int(den), _number(value), _number(change))


def parse_rows(reply):
    """QUERY rows (FORMAT RESP) as Row tuples (`date` is the hour, ISO
    8601, for GROUPBY HOUR; `previous` is set with COMPARE)."""
    out = []
    for r in reply:
        metric, date, listing, num, den, value = r[:6]
        out.append(Row(text(metric), text(date), text(listing), int(num), int(den),
                       _number(value), _previous(r[6:])))
    return out


def parse_top(reply):
    """TOP rows: [listing, numerator, denominator, value], then the Wilson
    bound (RANK WILSON) and the four COMPARE values, when asked."""
    out = []
    for r in reply:
        listing, num, den, value = r[:4]
        rest = r[4:]
        wilson = len(rest) in (1, 5)
        bound = _number(rest[0]) if wilson else None
        previous = _previous(rest[1:] if wilson else rest)
        out.append(TopRow(text(listing), int(num), int(den), _number(value), bound, previous))
    return out


def metric_names(metrics):
    if isinstance(metrics, (str, bytes)):
        metrics = text(metrics).split(",")
    out = []
    for m in metrics:
        m = text(m).strip()
        if m not in out:
            out.append(m)
    return out
