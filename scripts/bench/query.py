"""Benchmark `query`: QUERY of two metrics over explicit listings x days, GROUPBY LISTING."""

import datetime

from redislab import Server, commandstats  # noqa: E402
from harness import SERVER_CPU, redis_benchmark  # noqa: E402


# The seed's script, repaired and made equivalent to QUERY ... GROUPBY LISTING
# over an explicit listing set: computes every key of the range (across
# month and year ends), HMGETs the four counters, sums per listing.
LUA_QUERY = """
local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local mdays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
local function nextday(y, m, d)
  local last = mdays[m]
  if m == 2 and leap(y) then last = 29 end
  if d < last then return y, m, d + 1 end
  if m < 12 then return y, m + 1, 1 end
  return y + 1, 1, 1
end
local sy, sm, sd = string.match(ARGV[1], "(%d+)-(%d+)-(%d+)")
local ey, em, ed = string.match(ARGV[2], "(%d+)-(%d+)-(%d+)")
local y, m, d = tonumber(sy), tonumber(sm), tonumber(sd)
local last = string.format("%04d-%02d-%02d", tonumber(ey), tonumber(em), tonumber(ed))
local ids = {}
for id in string.gmatch(ARGV[3], "[^,]+") do ids[#ids + 1] = id end
local f = {"cart::checkoutNow:click", "cart::checkoutNow:impression",
           "ldp:sellPanel:addToCart:click", "ldp:sellPanel:addToCart:impression"}
local sums = {}
for _, id in ipairs(ids) do sums[id] = {0, 0, 0, 0} end
while true do
  local day = string.format("%04d-%02d-%02d", y, m, d)
  for _, id in ipairs(ids) do
    local v = redis.call("HMGET", day .. "_" .. id, f[1], f[2], f[3], f[4])
    local s = sums[id]
    for i = 1, 4 do if v[i] then s[i] = s[i] + tonumber(v[i]) end end
  end
  if day == last then break end
  y, m, d = nextday(y, m, d)
end
local out = {}
for _, id in ipairs(ids) do
  local s = sums[id]
  for k, pair in ipairs({{1, 2, "cart_to_checkout_ctr"}, {3, 4, "ldp_add_to_cart_ctr"}}) do
    local n, dd = s[pair[1]], s[pair[2]]
    if n ~= 0 or dd ~= 0 then
      local val = false
      if dd ~= 0 then val = tostring(n / dd * 100) end
      out[#out + 1] = {pair[3], "*", id, n, dd, val}
    end
  end
end
return out
"""


def load_days(client, listings, days, start="2015-12-17", sparse=1):
    """Writes day hashes with plain HSET (as production data is), pipelined."""
    first = datetime.date.fromisoformat(start)

    def commands():
        for i in range(days):
            day = (first + datetime.timedelta(days=i)).isoformat()
            for listing in range(1, listings + 1):
                if (listing + i) % sparse:
                    continue
                n = listing * 7 + i
                yield ["HSET", "%s_%d" % (day, listing),
                       "ldp:sellPanel:addToCart:impression", 20 + n % 50, "ldp:sellPanel:addToCart:click", n % 9,
                       "cart::checkoutNow:impression", n % 11, "cart::checkoutNow:click", n % 4]
    client.send_all(commands(), batch=5000)


def timed_calls(srv, command_name, args, calls):
    """(client wall ms per call, server µs per call) of a command sent
    `calls` times by redis-benchmark (a C client: one connection, no
    pipelining, as a client sends it, not inside MULTI)."""
    c = srv.client()
    c.call(*args)  # warm: the cache fills
    c.call("CONFIG", "RESETSTAT")
    rps = redis_benchmark(srv.port, args, calls, pipeline=1, clients=1)
    return 1000.0 / rps, commandstats(c)[command_name]["usec_per_call"]


def section_query(listings=1000, days=30, calls=100):
    """QUERY of two metrics over explicit listings x days, GROUPBY LISTING."""
    with Server(cpu=SERVER_CPU) as srv:
        c = srv.client()
        load_days(c, listings, days)
        ids = ",".join(str(i) for i in range(1, listings + 1))
        start, end = "2015-12-17", "2016-01-15"
        sha = c.call("SCRIPT", "LOAD", LUA_QUERY)
        module_args = ["LISTINGSTATS.QUERY", "cart_to_checkout_ctr,ldp_add_to_cart_ctr", start, end, ids,
                       "GROUPBY", "LISTING"]
        lua_args = ["EVALSHA", sha, 0, start, end, ids]
        # Same answer first: the comparison means nothing otherwise.
        mine = c.call(*module_args)
        theirs = c.call(*lua_args)
        assert len(mine) == len(theirs) == 2 * listings, (len(mine), len(theirs))
        for a, b in zip(mine, theirs):
            assert a[:5] == [b[0], b[1], b[2], b[3], b[4]], (a, b)
            assert abs(float(a[5]) - float(b[5])) < 1e-9 * max(1.0, abs(float(b[5]))), (a, b)
        assert c.call(*module_args) == mine  # from the cache now
        info = c.call("INFO", "listingstats")
        lua = timed_calls(srv, "evalsha", lua_args, calls)
        cached = timed_calls(srv, "listingstats.query", module_args, calls)
        cached_json = timed_calls(srv, "listingstats.query", module_args + ["FORMAT", "JSON"], calls)
        c.call("CONFIG", "SET", "listingstats.cache", "no")
        assert c.call(*module_args) == mine
        hashes = timed_calls(srv, "listingstats.query", module_args, calls)
    cache_bytes = int(info.split("listingstats_cache_bytes:")[1].split()[0])
    rows = [("Lua `EVALSHA` computing keys + HMGET", lua),
            ("`LISTINGSTATS.QUERY ... GROUPBY LISTING`, cache (default)", cached),
            ("`LISTINGSTATS.QUERY ... GROUPBY LISTING FORMAT JSON`, cache", cached_json),
            ("`LISTINGSTATS.QUERY ... GROUPBY LISTING`, `cache no` (reads every hash)", hashes)]
    lines = [
        "## QUERY: %d explicit listings x %d days, two metrics, GROUPBY LISTING" % (listings, days),
        "",
        "%d day hashes written with plain HSET; each variant run once to warm, then %d times by "
        "`redis-benchmark -c 1 -P 1` (a C client, one connection, as a client sends it, not in MULTI): "
        "client wall time per call from its requests per second, and server-side time per call from "
        "`INFO commandstats`. The Lua script is the seed's, repaired (ranges across months and "
        "years) and made equivalent: it computes the same keys and HMGETs them. The answers are checked "
        "equal first, with the cache on and off." % (listings * days, calls),
        "",
        "| command | client wall ms | Lua ÷ this (wall) | server ms | Lua ÷ this (server) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, (w, us) in rows:
        lines.append("| %s | %.2f | %.1f | %.2f | %.1f |" % (label, w, lua[0] / w, us / 1000, lua[1] / us))
    lines += [
        "",
        "Goal: at least 10× the Lua script in client wall time (measured %.1f× with the cache, %.1f× "
        "without). The cache held %d bytes for these %d day hashes (%.1f bytes each; the index's own "
        "4 bytes per entry come on top)." % (lua[0] / cached[0], lua[0] / hashes[0], cache_bytes,
                                            listings * days, cache_bytes / (listings * days)),
    ]
    return "\n".join(lines)
