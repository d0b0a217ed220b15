/* SPDX-License-Identifier: MIT */
/*
 * store_redis.c -- the Redis backend of the durable store (state.backend: redis): the interface
 * and semantics of the SQLite store (store.c, store_alerts.c, store_outbox.c), shared by several
 * replicas. This file holds the data model, the connection, the Lua scripts' common prelude,
 * accounts, applying a request, alerts, rule errors and housekeeping; store_redis_outbox.c holds
 * the outbox.
 *
 * The data model. Every key starts with "trailhook:" (left out below). Times are milliseconds
 * since the epoch in decimal; W stands for a dedup window's key: len(rule) ":" rule dedup_key,
 * which no two (rule, dedup_key) pairs share.
 *
 *   seen                hash    event ID -> the alert it counted toward ("" below threshold);
 *                               a resolution's ID is kept as "resolve" LF ID, apart from the
 *                               matches' (store_alerts.c says why)
 *   seen:at             zset    event ID by when it was seen: prune forgets after seen_ttl_ms
 *   accounts            zset    account id by expires_ms: the new-account set
 *   accounts:source     hash    account id -> "learned" | "operator" (the later expiry's)
 *   accounts:added      hash    account id -> added_ms (the first sighting)
 *   window:<W>          hash    the dedup window: start, end, count, alert ("" below the
 *                               threshold), first (the first event's time), doc (the first
 *                               event's alert document); end == start marks a window a
 *                               resolution ended (S_WINDOW_END)
 *   windows             zset    W by the window's end: prune drops windows ended a day ago
 *   alert:<id>          hash    rule, dedup_key, title, severity, status (open|resolved),
 *                               event_count, first_seen_ms, last_seen_ms, created_ms,
 *                               updated_ms, resolved_ms, doc, destinations (a JSON array: where
 *                               the alert was queued, kept as long as the alert for its
 *                               resolution), order (below)
 *   alerts              zset    every alert's order by created_ms, for alerts_recent: order is
 *                               16 hex digits of alerts:seq then the id, so alerts of the same
 *                               millisecond list newest first as SQLite's rowid does
 *   alerts:seq          string  INCR
 *   alerts:open:<W>     zset    the open alerts of W, like alerts: a resolution takes the newest
 *   rule_error:seq      string  INCR: rule-error record ids
 *   rule_error:<n>      hash    rule, event_id, error, event (JSON), created_ms
 *   probe               string  written by check_writable, expires by itself
 *   outbox:...                  the outbox on Redis Streams: see store_redis_outbox.c
 *
 * Alerts and rule errors are never pruned, as in SQLite.
 *
 * Every change is a Lua script run with EVALSHA (EVAL when the server does not know it yet):
 * Redis runs a script alone, so a request's whole batch applies atomically and two replicas
 * counting the same image never interleave; nothing is read in C and written back. Alert ids
 * are derived inside the script with a SHA-256 written in Lua, exactly as store_alerts.c derives
 * them: the first 32 hex digits of sha256(rule LF key LF window start). Arguments are passed as
 * binary-safe strings, never through JSON, so no text needs to be valid UTF-8.
 *
 * The connection: a handle that cannot reach Redis (at open or later) keeps failing with TH_EIO
 * and "redis unreachable: <reason>" and tries again on the next call, no sooner than a backoff
 * of 100 ms doubling to 5 s after each failed attempt. A connection error in the middle of a
 * command drops the connection; the next call connects again at once. The password is never
 * shown, in errors or logs.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "trailhook/clock.h"
#include "trailhook/hash.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"
#include "store_int.h"
#include "store_redis.h"
#include "store_redis_int.h"

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 5000
#define BACKOFF_FIRST_MS   100
#define BACKOFF_MAX_MS     5000
#define DEFAULT_PORT       6379
#define MAX_LIST           100000 /* the most alerts one alerts_recent returns */
#define MAX_PRUNE_ROUNDS   1000   /* prune works in rounds of at most 1000 keys per kind */

/* ---- the scripts ------------------------------------------------------------------------ */

/* Key names and what several scripts do to outbox rows (store_redis_outbox.c explains the
 * outbox's keys). A row changes state by leaving its old state's keys (row_leave) and entering
 * the new one's. */
const char th_redis_lua_prelude[] =
    "local P = 'trailhook:'\n"
    "local GROUP = 'trailhook'\n"
    "local DAY = 86400000\n"
    "local SEEN, SEEN_AT = P .. 'seen', P .. 'seen:at'\n"
    "local ACCOUNTS = P .. 'accounts'\n"
    "local ACC_SOURCE, ACC_ADDED = P .. 'accounts:source', P .. 'accounts:added'\n"
    "local WINDOWS = P .. 'windows'\n"
    "local ALERTS, ALERT_SEQ = P .. 'alerts', P .. 'alerts:seq'\n"
    "local RULE_ERROR_SEQ = P .. 'rule_error:seq'\n"
    "local OUTBOX_SEQ, DESTS = P .. 'outbox:seq', P .. 'outbox:destinations'\n"
    "local function I(x) return string.format('%d', x) end\n"
    "local function window_key(wk) return P .. 'window:' .. wk end\n"
    "local function open_key(wk) return P .. 'alerts:open:' .. wk end\n"
    "local function alert_key(id) return P .. 'alert:' .. id end\n"
    "local function rule_error_key(id) return P .. 'rule_error:' .. id end\n"
    "local function row_key(id) return P .. 'outbox:row:' .. id end\n"
    "local function stream_key(d) return P .. 'outbox:{' .. d .. '}' end\n"
    "local function retry_key(d) return P .. 'outbox:retry:{' .. d .. '}' end\n"
    "local function deadq_key(d) return P .. 'outbox:dead:{' .. d .. '}' end\n"
    "local function pending_key(d) return P .. 'outbox:pending:{' .. d .. '}' end\n"
    "local function rows_key(d) return P .. 'outbox:rows:{' .. d .. '}' end\n"
    "local function done_key(d) return P .. 'outbox:done:{' .. d .. '}' end\n"
    "local function triggers_key(d) return P .. 'outbox:triggers:{' .. d .. '}' end\n"
    "local function call(args) return redis.call(unpack(args)) end\n"
    "local function bytes_lt(a, b)\n"
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = string.byte(a, i), string.byte(b, i)\n"
    "    if x ~= y then return x < y end\n"
    "  end\n"
    "  return #a < #b\n"
    "end\n"
    "local function ensure_group(d)\n"
    "  local sk = stream_key(d)\n"
    "  if redis.call('EXISTS', sk) == 0 then\n"
    "    redis.call('XGROUP', 'CREATE', sk, GROUP, '0', 'MKSTREAM')\n"
    "  end\n"
    "  return sk\n"
    "end\n"
    "local function trig_add(d, ref, n)\n"
    "  if redis.call('HINCRBY', triggers_key(d), ref, n) <= 0 then\n"
    "    redis.call('HDEL', triggers_key(d), ref)\n"
    "  end\n"
    "end\n"
    "local ROW_FIELDS = {'destination', 'kind', 'ref', 'state', 'attempts', 'created_ms',\n"
    "                    'next_attempt_ms', 'updated_ms', 'last_error', 'entry',\n"
    "                    'dead_entry'}\n"
    "local function row_load(id)\n"
    "  local v = redis.call('HMGET', row_key(id), unpack(ROW_FIELDS))\n"
    "  if not v[1] then return nil end\n"
    "  local r = {}\n"
    "  for i, f in ipairs(ROW_FIELDS) do\n"
    "    if v[i] then r[f] = v[i] end\n"
    "  end\n"
    "  return r\n"
    "end\n"
    "local function row_blocked(r)\n"
    "  if r.kind ~= '2' then return false end\n"
    "  local n = redis.call('HGET', triggers_key(r.destination), r.ref)\n"
    "  return n and tonumber(n) > 0\n"
    "end\n"
    "local function stream_in(id, d, next_ms)\n"
    "  local e = redis.call('XADD', ensure_group(d), '*', 'id', id)\n"
    "  redis.call('HSET', row_key(id), 'entry', e)\n"
    "  redis.call('ZADD', pending_key(d), next_ms, id)\n"
    "end\n"
    "local function stream_out(r)\n"
    "  if r.entry then\n"
    "    local sk = stream_key(r.destination)\n"
    "    redis.call('XACK', sk, GROUP, r.entry)\n"
    "    redis.call('XDEL', sk, r.entry)\n"
    "  end\n"
    "end\n"
    "local function row_leave(id, r)\n"
    "  local d = r.destination\n"
    "  if r.state == 'pending' then\n"
    "    stream_out(r)\n"
    "    redis.call('ZREM', retry_key(d), id)\n"
    "    redis.call('ZREM', pending_key(d), id)\n"
    "    if r.kind == '0' then trig_add(d, r.ref, -1) end\n"
    "  elseif r.state == 'dead' then\n"
    "    if r.dead_entry then redis.call('XDEL', deadq_key(d), r.dead_entry) end\n"
    "  elseif r.state == 'done' then\n"
    "    redis.call('ZREM', done_key(d), id)\n"
    "  end\n"
    "  redis.call('HDEL', row_key(id), 'entry', 'dead_entry')\n"
    "end\n"
    "local function outbox_put(d, kind, ref, now)\n"
    "  local id = I(redis.call('INCR', OUTBOX_SEQ))\n"
    "  redis.call('HSET', row_key(id), 'destination', d, 'kind', I(kind), 'ref', ref,\n"
    "             'state', 'pending', 'attempts', '0', 'created_ms', I(now),\n"
    "             'next_attempt_ms', I(now), 'updated_ms', I(now))\n"
    "  redis.call('ZADD', rows_key(d), id, id)\n"
    "  redis.call('SADD', DESTS, d)\n"
    "  if kind == 0 then trig_add(d, ref, 1) end\n"
    "  stream_in(id, d, I(now))\n"
    "end\n"
    "local function account_upsert(id, expires, source, now)\n"
    "  local cur = redis.call('ZSCORE', ACCOUNTS, id)\n"
    "  if not cur then\n"
    "    redis.call('ZADD', ACCOUNTS, I(expires), id)\n"
    "    redis.call('HSET', ACC_SOURCE, id, source)\n"
    "    redis.call('HSET', ACC_ADDED, id, I(now))\n"
    "  elseif expires > tonumber(cur) then\n"
    "    redis.call('ZADD', ACCOUNTS, I(expires), id)\n"
    "    redis.call('HSET', ACC_SOURCE, id, source)\n"
    "  end\n"
    "end\n";

static const struct th_redis_script account_add_script = {
    .id = TH_RS_ACCOUNT_ADD,
    .body = "account_upsert(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))\n"
            "return 1\n",
};

static const struct th_redis_script account_remove_script = {
    .id = TH_RS_ACCOUNT_REMOVE,
    .body = "local n = redis.call('ZREM', ACCOUNTS, ARGV[1])\n"
            "redis.call('HDEL', ACC_SOURCE, ARGV[1])\n"
            "redis.call('HDEL', ACC_ADDED, ARGV[1])\n"
            "return n\n",
};

static const struct th_redis_script accounts_list_script = {
    .id = TH_RS_ACCOUNTS_LIST,
    .body = "local all = redis.call('ZRANGE', ACCOUNTS, 0, -1, 'WITHSCORES')\n"
            "local out = {}\n"
            "for i = 1, #all, 2 do\n"
            "  out[#out + 1] = all[i]\n"
            "  out[#out + 1] = I(tonumber(all[i + 1]))\n"
            "  out[#out + 1] = redis.call('HGET', ACC_SOURCE, all[i]) or ''\n"
            "  out[#out + 1] = redis.call('HGET', ACC_ADDED, all[i]) or '0'\n"
            "end\n"
            "return out\n",
};

/*
 * ARGV: now, the numbers of accounts, matches, resolutions and rule errors, then each in that
 * order (see batch_args). An optional value is "0", or "1" and the value; a list of
 * destinations is its length and the names. Returns alert id, duplicate, new_alert per match.
 * The alert id's SHA-256 (FIPS 180-4) is written on the 32-bit `bit` library of Redis' Lua.
 */
static const struct th_redis_script apply_script = {
    .id = TH_RS_APPLY,
    .body =
        "local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot\n"
        "local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit\n"
        "local K256 = {\n"
        "  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,\n"
        "  0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,\n"
        "  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,\n"
        "  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,\n"
        "  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,\n"
        "  0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,\n"
        "  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,\n"
        "  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,\n"
        "  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,\n"
        "  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,\n"
        "  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2}\n"
        "local function sha256_hex(msg)\n"
        "  local h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,\n"
        "             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}\n"
        "  local bits = #msg * 8\n"
        "  msg = msg .. '\\128' .. string.rep('\\0', (55 - #msg) % 64) ..\n"
        "        string.char(0, 0, 0, 0, math.floor(bits / 16777216) % 256,\n"
        "                    math.floor(bits / 65536) % 256, math.floor(bits / 256) % 256,\n"
        "                    bits % 256)\n"
        "  local w = {}\n"
        "  for off = 1, #msg, 64 do\n"
        "    for i = 0, 15 do\n"
        "      local a, b, c, d = string.byte(msg, off + i * 4, off + i * 4 + 3)\n"
        "      w[i] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)\n"
        "    end\n"
        "    for i = 16, 63 do\n"
        "      local x, y = w[i - 15], w[i - 2]\n"
        "      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))\n"
        "      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))\n"
        "      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)\n"
        "    end\n"
        "    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]\n"
        "    for i = 0, 63 do\n"
        "      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))\n"
        "      local ch = bxor(band(e, f), band(bnot(e), g))\n"
        "      local t1 = tobit(hh + S1 + ch + K256[i + 1] + w[i])\n"
        "      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))\n"
        "      local maj = bxor(band(a, b), band(a, c), band(b, c))\n"
        "      local t2 = tobit(S0 + maj)\n"
        "      hh, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)\n"
        "    end\n"
        "    h[1], h[2] = tobit(h[1] + a), tobit(h[2] + b)\n"
        "    h[3], h[4] = tobit(h[3] + c), tobit(h[4] + d)\n"
        "    h[5], h[6] = tobit(h[5] + e), tobit(h[6] + f)\n"
        "    h[7], h[8] = tobit(h[7] + g), tobit(h[8] + hh)\n"
        "  end\n"
        "  local out = {}\n"
        "  for i = 1, 8 do out[i] = bit.tohex(h[i], 8) end\n"
        "  return table.concat(out)\n"
        "end\n"
        "local now = tonumber(ARGV[1])\n"
        "local pos = 5\n"
        "local function arg()\n"
        "  pos = pos + 1\n"
        "  return ARGV[pos]\n"
        "end\n"
        "local function opt()\n"
        "  if arg() == '1' then return arg() end\n"
        "  return nil\n"
        "end\n"
        "local function dests()\n"
        "  local ds = {}\n"
        "  for i = 1, tonumber(arg()) do ds[i] = arg() end\n"
        "  return ds\n"
        "end\n"
        "local function wkey(rule, key) return I(#rule) .. ':' .. rule .. key end\n"
        "local function seen_put(ev, alert)\n"
        "  redis.call('HSET', SEEN, ev, alert)\n"
        "  redis.call('ZADD', SEEN_AT, I(now), ev)\n"
        "end\n"
        "local function window_open(m, wk, prev)\n"
        "  local start = now\n"
        "  if prev and not (now > prev) then start = prev + 1 end\n"
        "  local stop = start + m.p * 60000\n"
        "  redis.call('HSET', window_key(wk), 'start', I(start), 'end', I(stop), 'count', '0',\n"
        "             'alert', '', 'first', I(m.t), 'doc', m.d)\n"
        "  redis.call('ZADD', WINDOWS, I(stop), wk)\n"
        "  return {wk = wk, start = start, count = 0, alert = ''}\n"
        "end\n"
        "local function window_current(m)\n"
        "  local wk = wkey(m.r, m.k)\n"
        "  local v = redis.call('HMGET', window_key(wk), 'start', 'end', 'count', 'alert')\n"
        "  if not v[1] then return window_open(m, wk, nil) end\n"
        "  local s, e = tonumber(v[1]), tonumber(v[2])\n"
        "  if now >= e or e <= s then return window_open(m, wk, s) end\n"
        "  return {wk = wk, start = s, count = tonumber(v[3]), alert = v[4] or ''}\n"
        "end\n"
        "local function alert_create(m, w)\n"
        "  local id = string.sub(sha256_hex(m.r .. '\\n' .. m.k .. '\\n' .. I(w.start)), 1, 32)\n"
        "  local wv = redis.call('HMGET', window_key(w.wk), 'first', 'doc')\n"
        "  local first = tonumber(wv[1])\n"
        "  local member = string.format('%016x', redis.call('INCR', ALERT_SEQ)) .. id\n"
        "  local f = {'HSET', alert_key(id), 'rule', m.r, 'dedup_key', m.k, 'status', 'open',\n"
        "             'event_count', I(w.count), 'first_seen_ms', I(math.min(first, m.t)),\n"
        "             'last_seen_ms', I(math.max(first, m.t)), 'created_ms', I(now),\n"
        "             'updated_ms', I(now), 'doc', wv[2], 'order', member,\n"
        "             'destinations', cjson.encode(m.ds)}\n"
        "  if m.ti then f[#f + 1] = 'title'; f[#f + 1] = m.ti end\n"
        "  if m.s then f[#f + 1] = 'severity'; f[#f + 1] = m.s end\n"
        "  call(f)\n"
        "  redis.call('ZADD', ALERTS, I(now), member)\n"
        "  redis.call('ZADD', open_key(w.wk), I(now), member)\n"
        "  for _, d in ipairs(m.ds) do outbox_put(d, 0, id, now) end\n"
        "  w.alert = id\n"
        "end\n"
        "local function alert_touch(id, count, t)\n"
        "  local v = redis.call('HMGET', alert_key(id), 'first_seen_ms', 'last_seen_ms')\n"
        "  if not v[1] then return end\n"
        "  redis.call('HSET', alert_key(id), 'event_count', I(count),\n"
        "             'first_seen_ms', I(math.min(tonumber(v[1]), t)),\n"
        "             'last_seen_ms', I(math.max(tonumber(v[2]), t)), 'updated_ms', I(now))\n"
        "end\n"
        "local function apply_match(m)\n"
        "  if m.e then\n"
        "    local seen = redis.call('HGET', SEEN, m.e)\n"
        "    if seen then return seen, 1, 0 end\n"
        "  end\n"
        "  local w = window_current(m)\n"
        "  local new = 0\n"
        "  w.count = w.count + 1\n"
        "  if w.alert == '' and w.count >= m.th then\n"
        "    alert_create(m, w)\n"
        "    new = 1\n"
        "  elseif w.alert ~= '' then\n"
        "    alert_touch(w.alert, w.count, m.t)\n"
        "  end\n"
        "  redis.call('HSET', window_key(w.wk), 'count', I(w.count), 'alert', w.alert)\n"
        "  if m.e then seen_put(m.e, w.alert) end\n"
        "  return w.alert, 0, new\n"
        "end\n"
        "local function alert_resolve(x, wk, id, member)\n"
        "  redis.call('HSET', alert_key(id), 'status', 'resolved', 'resolved_ms', I(x.t),\n"
        "             'updated_ms', I(now))\n"
        "  redis.call('ZREM', open_key(wk), member)\n"
        "  local start = redis.call('HGET', window_key(wk), 'start')\n"
        "  if start then\n"
        "    redis.call('HSET', window_key(wk), 'end', start)\n"
        "    redis.call('ZADD', WINDOWS, start, wk)\n"
        "  end\n"
        "  local dests = cjson.decode(redis.call('HGET', alert_key(id), 'destinations') or '[]')\n"
        "  table.sort(dests, bytes_lt)\n"
        "  for _, d in ipairs(dests) do outbox_put(d, 2, id, now) end\n"
        "end\n"
        "local function apply_resolution(x)\n"
        "  local sk = nil\n"
        "  if x.e then\n"
        "    sk = 'resolve\\n' .. x.e\n"
        "    if redis.call('HGET', SEEN, sk) then return end\n"
        "  end\n"
        "  local wk = wkey(x.r, x.k)\n"
        "  local id = ''\n"
        "  local top = redis.call('ZREVRANGE', open_key(wk), 0, 0)[1]\n"
        "  if top then\n"
        "    local last = redis.call('HGET', alert_key(string.sub(top, 17)), 'last_seen_ms')\n"
        "    if last and x.t >= tonumber(last) then\n"
        "      id = string.sub(top, 17)\n"
        "      alert_resolve(x, wk, id, top)\n"
        "    end\n"
        "  end\n"
        "  if sk then seen_put(sk, id) end\n"
        "end\n"
        "local function apply_rule_error(re)\n"
        "  local id = I(redis.call('INCR', RULE_ERROR_SEQ))\n"
        "  local f = {'HSET', rule_error_key(id), 'rule', re.r, 'error', re.er,\n"
        "             'created_ms', I(now)}\n"
        "  if re.e then f[#f + 1] = 'event_id'; f[#f + 1] = re.e end\n"
        "  if re.ev then f[#f + 1] = 'event'; f[#f + 1] = re.ev end\n"
        "  call(f)\n"
        "  for _, d in ipairs(re.ds) do outbox_put(d, 1, id, now) end\n"
        "end\n"
        "local out = {}\n"
        "for _ = 1, tonumber(ARGV[2]) do\n"
        "  local id = arg()\n"
        "  account_upsert(id, tonumber(arg()), 'learned', now)\n"
        "end\n"
        "for _ = 1, tonumber(ARGV[3]) do\n"
        "  local m = {r = arg(), k = arg(), e = opt(), t = tonumber(arg()), p = tonumber(arg()),\n"
        "             th = tonumber(arg()), ti = opt(), s = opt(), d = arg()}\n"
        "  m.ds = dests()\n"
        "  local id, dup, new = apply_match(m)\n"
        "  out[#out + 1] = id\n"
        "  out[#out + 1] = dup\n"
        "  out[#out + 1] = new\n"
        "end\n"
        "for _ = 1, tonumber(ARGV[4]) do\n"
        "  apply_resolution({r = arg(), k = arg(), e = opt(), t = tonumber(arg())})\n"
        "end\n"
        "for _ = 1, tonumber(ARGV[5]) do\n"
        "  local re = {r = arg(), e = opt(), er = arg(), ev = opt()}\n"
        "  re.ds = dests()\n"
        "  apply_rule_error(re)\n"
        "end\n"
        "return out\n",
};

static const struct th_redis_script alerts_recent_script = {
    .id = TH_RS_ALERTS_RECENT,
    .body =
        "local out = {}\n"
        "for _, member in ipairs(redis.call('ZREVRANGE', ALERTS, 0, tonumber(ARGV[1]) - 1)) do\n"
        "  local id = string.sub(member, 17)\n"
        "  out[#out + 1] = id\n"
        "  out[#out + 1] = redis.call('HGETALL', alert_key(id))\n"
        "end\n"
        "return out\n",
};

/* One round of at most 1000 keys of each kind; returns 1 while more may be left. */
static const struct th_redis_script prune_script = {
    .id = TH_RS_PRUNE,
    .body = "local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
            "local LIMIT = 1000\n"
            "local more = 0\n"
            "local function sweep(zkey, before, each)\n"
            "  local got = redis.call('ZRANGEBYSCORE', zkey, '-inf', '(' .. I(before),\n"
            "                         'LIMIT', 0, LIMIT)\n"
            "  for _, m in ipairs(got) do\n"
            "    each(m)\n"
            "    redis.call('ZREM', zkey, m)\n"
            "  end\n"
            "  if #got == LIMIT then more = 1 end\n"
            "end\n"
            "sweep(SEEN_AT, now - ttl, function(ev) redis.call('HDEL', SEEN, ev) end)\n"
            "sweep(ACCOUNTS, now - DAY, function(a)\n"
            "  redis.call('HDEL', ACC_SOURCE, a)\n"
            "  redis.call('HDEL', ACC_ADDED, a)\n"
            "end)\n"
            "for _, d in ipairs(redis.call('SMEMBERS', DESTS)) do\n"
            "  sweep(done_key(d), now - 7 * DAY, function(id)\n"
            "    redis.call('DEL', row_key(id))\n"
            "    redis.call('ZREM', rows_key(d), id)\n"
            "  end)\n"
            "end\n"
            "sweep(WINDOWS, now - DAY, function(wk) redis.call('DEL', window_key(wk)) end)\n"
            "return more\n",
};

/* ---- failures --------------------------------------------------------------------------- */

enum th_err th_redis_fail(struct th_store *st, enum th_err rc, const char *what, const char *fmt,
                          ...)
{
    char detail[192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(st->last_error, sizeof(st->last_error), "%.60s: %s", what, detail);
    th_log(TH_LOG_WARN, "store", "%s", st->last_error);
    return rc;
}

enum th_err th_redis_writable(struct th_store *st, const char *what)
{
    if (st->redis->mode != TH_STORE_READONLY) {
        return TH_OK;
    }
    snprintf(st->last_error, sizeof(st->last_error), "%s: the store was opened read-only", what);
    return TH_EIO;
}

/* ---- the URL ---------------------------------------------------------------------------- */

/* Percent-decodes @p len bytes; NULL when an escape is malformed or decodes to NUL. */
static char *pct_decode(const char *s, size_t len)
{
    char *out = th_xmalloc(len + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len || th_hex_digit(s[i + 1]) < 0 || th_hex_digit(s[i + 2]) < 0 ||
            (th_hex_digit(s[i + 1]) == 0 && th_hex_digit(s[i + 2]) == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(th_hex_digit(s[i + 1]) * 16 + th_hex_digit(s[i + 2]));
        i += 2;
    }
    out[o] = '\0';
    return out;
}

static bool parse_number(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 10) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v >= min && v <= max;
}

/* user:password@ (either part may be empty; without a colon it is the password, as in
 * redis://[[user:]password@]host). */
static bool parse_userinfo(struct th_redis_url *u, const char *s, size_t len)
{
    const char *colon = memchr(s, ':', len);

    if (colon == NULL) {
        u->password = pct_decode(s, len);
        return u->password != NULL;
    }
    if (colon > s) {
        u->user = pct_decode(s, (size_t)(colon - s));
        if (u->user == NULL) {
            return false;
        }
    }
    u->password = pct_decode(colon + 1, len - (size_t)(colon - s) - 1);
    return u->password != NULL;
}

/* host, host:port, [v6] or [v6]:port. */
static const char *parse_hostport(struct th_redis_url *u, const char *s, size_t len)
{
    const char *end = s + len;
    const char *host = s;
    const char *host_end = NULL;
    const char *port = NULL;
    long v = 0;

    if (len > 0 && s[0] == '[') {
        host = s + 1;
        host_end = memchr(s, ']', len);
        if (host_end == NULL) {
            return "an IPv6 address lacks its closing ]";
        }
        if (host_end + 1 < end && host_end[1] != ':') {
            return "the port must follow the host after a colon";
        }
        port = host_end + 1 < end ? host_end + 2 : NULL;
    } else {
        host_end = memchr(s, ':', len);
        port = host_end == NULL ? NULL : host_end + 1;
        host_end = host_end == NULL ? end : host_end;
    }
    if (host_end == host) {
        return "the host is missing";
    }
    u->host = th_xstrndup(host, (size_t)(host_end - host));
    u->port = DEFAULT_PORT;
    if (port != NULL) {
        if (!parse_number(port, (size_t)(end - port), 1, 65535, &v)) {
            return "the port must be a number from 1 to 65535";
        }
        u->port = (int)v;
    }
    return NULL;
}

void th_redis_url_free(struct th_redis_url *u)
{
    if (u == NULL) {
        return;
    }
    if (u->password != NULL) {
        memset(u->password, 0, strlen(u->password));
    }
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof(*u));
}

/* The messages never quote the URL: it may hold the password. */
enum th_err th_redis_parse_url(const char *url, struct th_redis_url *out, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    struct th_redis_url u = {0};
    const char *p = NULL;
    const char *problem = NULL;
    size_t auth_len;
    const char *at = NULL;
    long db = 0;

    memset(out, 0, sizeof(*out));
    if (url == NULL) {
        th_store_set_err(err, errlen, "no redis URL given (state.redis_url)");
        return TH_EINVAL;
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        th_store_set_err(
            err, errlen,
            "rediss:// (TLS) is not supported: this trailhook's hiredis 0.14 has no TLS; "
            "put a TLS proxy such as stunnel in front of Redis and point a redis:// URL at "
            "it, or build trailhook with hiredis 1.0 or newer");
        return TH_EUNSUPPORTED;
    }
    if (strncmp(url, scheme, strlen(scheme)) != 0) {
        th_store_set_err(err, errlen, "the redis URL must start with redis://");
        return TH_EINVAL;
    }
    p = url + strlen(scheme);
    if (strpbrk(p, "?#") != NULL) {
        problem = "it must not have a query or fragment";
    }
    auth_len = strcspn(p, "/");
    for (const char *q = p; q < p + auth_len; q++) {
        at = *q == '@' ? q : at;
    }
    if (problem == NULL && at != NULL && !parse_userinfo(&u, p, (size_t)(at - p))) {
        problem = "the user or password has a malformed %-escape";
    }
    if (problem == NULL) {
        const char *hp = at == NULL ? p : at + 1;
        problem = parse_hostport(&u, hp, (size_t)(p + auth_len - hp));
    }
    p += auth_len;
    if (problem == NULL && *p == '/' && p[1] != '\0' &&
        !parse_number(p + 1, strlen(p + 1), 0, 2147483647L, &db)) {
        problem = "the database after the host must be a number";
    }
    if (problem != NULL) {
        th_redis_url_free(&u);
        th_store_set_err(
            err, errlen,
            "invalid redis URL (redis://[user:password@]host[:port][/db]): %s; a password's "
            "/ ? # @ and %% must be percent-encoded",
            problem);
        return TH_EINVAL;
    }
    u.db = (int)db;
    *out = u;
    return TH_OK;
}

/* ---- the connection --------------------------------------------------------------------- */

static struct timeval timeval_ms(int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    return tv;
}

/* Sends one command on @p c during connecting; false with r->reason set when it failed.
 * @p refused: set when the server answered with an error (a setting, not the network). */
static bool handshake_step(struct th_redis *r, redisContext *c, const char *what, int argc,
                           const char **argv, bool *refused)
{
    redisReply *reply = redisCommandArgv(c, argc, argv, NULL);
    bool ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;

    if (reply == NULL) {
        snprintf(r->reason, sizeof(r->reason), "%s:%d: %s", r->host, r->port, c->errstr);
    } else if (!ok) {
        /* LOADING (a restart reading its data) clears up by itself; the rest is a setting. */
        *refused = strncmp(reply->str, "LOADING", 7) != 0;
        snprintf(r->reason, sizeof(r->reason), "%s:%d: %s: %.120s", r->host, r->port, what,
                 reply->str);
    }
    freeReplyObject(reply);
    return ok;
}

/* Redis 6.2 brought XAUTOCLAIM, which taking over a dead replica's deliveries needs. A server
 * whose INFO says nothing of its version is given the benefit of the doubt. */
static bool version_ok(struct th_redis *r, redisContext *c, bool *refused)
{
    const char *argv[] = {"INFO", "server"};
    redisReply *reply = redisCommandArgv(c, 2, argv, NULL);
    const char *v = NULL;
    int major = 0;
    int minor = 0;
    bool ok = reply != NULL;

    if (reply == NULL) {
        snprintf(r->reason, sizeof(r->reason), "%s:%d: %s", r->host, r->port, c->errstr);
    } else if (reply->type == REDIS_REPLY_STRING &&
               (v = strstr(reply->str, "redis_version:")) != NULL &&
               sscanf(v + strlen("redis_version:"), "%d.%d", &major, &minor) == 2 &&
               (major < 6 || (major == 6 && minor < 2))) {
        snprintf(r->reason, sizeof(r->reason),
                 "%s:%d: redis %d.%d is too old: trailhook needs 6.2 or newer", r->host, r->port,
                 major, minor);
        *refused = true;
        ok = false;
    }
    freeReplyObject(reply);
    return ok;
}

/* Connects, logs in and selects the database. @p refused: the server said no (a wrong
 * password, a missing database), which trying again will not change. */
static bool connect_now(struct th_redis *r, bool *refused)
{
    redisContext *c = redisConnectWithTimeout(r->host, r->port, timeval_ms(CONNECT_TIMEOUT_MS));
    char dbtext[16];
    const char *auth[] = {"AUTH", r->user != NULL ? r->user : r->password, r->password};
    const char *select[] = {"SELECT", dbtext};
    const char *ping[] = {"PING"};
    const char *setname[] = {"CLIENT", "SETNAME", r->consumer};
    redisReply *reply = NULL;
    bool ok = false;

    *refused = false;
    if (c == NULL) {
        snprintf(r->reason, sizeof(r->reason), "cannot allocate a connection");
        return false;
    }
    if (c->err != 0) {
        snprintf(r->reason, sizeof(r->reason), "%s:%d: %s", r->host, r->port, c->errstr);
        redisFree(c);
        return false;
    }
    snprintf(dbtext, sizeof(dbtext), "%d", r->db);
    ok = redisSetTimeout(c, timeval_ms(COMMAND_TIMEOUT_MS)) == REDIS_OK;
    if (!ok) {
        snprintf(r->reason, sizeof(r->reason), "%s:%d: cannot set the command timeout", r->host,
                 r->port);
    }
    if (ok && r->password != NULL) {
        ok = handshake_step(r, c, "login refused", r->user != NULL ? 3 : 2, auth, refused);
    }
    if (ok && r->db != 0) {
        ok = handshake_step(r, c, "cannot select the database", 2, select, refused);
    }
    if (ok) {
        ok = handshake_step(r, c, "refused", 1, ping, refused);
    }
    if (ok) {
        ok = version_ok(r, c, refused);
    }
    /* Named after its consumer, so CLIENT LIST tells which replica a connection is. A server
     * that refuses the name (an ACL without CLIENT) is still usable. */
    reply = ok ? redisCommandArgv(c, 3, setname, NULL) : NULL;
    if (ok && reply == NULL) {
        snprintf(r->reason, sizeof(r->reason), "%s:%d: %s", r->host, r->port, c->errstr);
        ok = false;
    }
    freeReplyObject(reply);
    if (!ok) {
        redisFree(c);
        return false;
    }
    r->c = c;
    return true;
}

/* Between commands a live connection has nothing to read: readable means the server closed it
 * (it restarted, or dropped an idle client). Caught here, the call reconnects instead of
 * failing on a connection that was dead before the command was sent. */
static bool connection_alive(const redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN, .revents = 0};

    return c->err == 0 && poll(&p, 1, 0) == 0;
}

/* When a handle of this process last connected (monotonic ms): a handle waiting out its backoff
 * tries at once when another has found Redis back, so that the process is whole again within
 * a call, not within each handle's backoff. */
static _Atomic int64_t last_connect_ms;

static enum th_err unreachable(struct th_store *st)
{
    snprintf(st->last_error, sizeof(st->last_error), "redis unreachable: %s", st->redis->reason);
    return TH_EIO;
}

/* Connects unless connected, at most once per backoff period. */
static enum th_err ensure_connected(struct th_store *st)
{
    struct th_redis *r = st->redis;
    int64_t now = th_clock_mono_ms();
    bool refused = false;

    if (r->c != NULL && connection_alive(r->c)) {
        return TH_OK;
    }
    if (r->c != NULL) {
        th_log(TH_LOG_INFO, "store", "redis at %s:%d closed the connection; connecting again",
               r->host, r->port);
        redisFree(r->c);
        r->c = NULL;
        r->retry_at_ms = 0;
    }
    if (now < r->retry_at_ms && atomic_load(&last_connect_ms) <= r->failed_at_ms) {
        return unreachable(st);
    }
    if (connect_now(r, &refused)) {
        atomic_store(&last_connect_ms, now);
        if (r->down_reported) {
            th_log(TH_LOG_INFO, "store", "connected to redis at %s:%d again", r->host, r->port);
        }
        r->down_reported = false;
        r->backoff_ms = 0;
        return TH_OK;
    }
    r->backoff_ms = r->backoff_ms == 0 ? BACKOFF_FIRST_MS : r->backoff_ms * 2;
    r->backoff_ms = r->backoff_ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms;
    r->retry_at_ms = now + r->backoff_ms;
    r->failed_at_ms = th_clock_mono_ms();
    if (!r->down_reported) {
        th_log(TH_LOG_WARN, "store", "redis unreachable: %s; trying again with backoff", r->reason);
        r->down_reported = true;
    }
    return unreachable(st);
}

/* A connection error mid-command: the context is unusable, the next call connects again. */
static enum th_err drop_connection(struct th_store *st, const char *what)
{
    struct th_redis *r = st->redis;

    snprintf(r->reason, sizeof(r->reason), "%s:%d: %s", r->host, r->port,
             r->c->errstr[0] != '\0' ? r->c->errstr : "connection lost");
    redisFree(r->c);
    r->c = NULL;
    r->retry_at_ms = 0;
    r->backoff_ms = 0;
    r->down_reported = true;
    return th_redis_fail(st, TH_EIO, what, "redis unreachable: %s", r->reason);
}

/* Errors that clear up by themselves (a restart loading its data, a long script). */
static enum th_err map_error(const char *msg)
{
    static const char *const temporary[] = {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"};

    for (size_t i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++) {
        if (strncmp(msg, temporary[i], strlen(temporary[i])) == 0) {
            return TH_ETEMP;
        }
    }
    return TH_EIO;
}

/* Sends a command; an error reply comes back as a reply (the caller decides). */
static enum th_err send_raw(struct th_store *st, const char *what, size_t argc,
                            const char *const *argv, const size_t *lens, redisReply **out)
{
    enum th_err rc = ensure_connected(st);

    *out = NULL;
    if (rc != TH_OK) {
        return rc;
    }
    if (argc > INT32_MAX) {
        return th_redis_fail(st, TH_EINVAL, what, "too many arguments");
    }
    *out = redisCommandArgv(st->redis->c, (int)argc, (const char **)argv, lens);
    return *out == NULL ? drop_connection(st, what) : TH_OK;
}

static enum th_err check_reply(struct th_store *st, const char *what, redisReply **reply)
{
    enum th_err rc;

    if ((*reply)->type != REDIS_REPLY_ERROR) {
        return TH_OK;
    }
    rc = th_redis_fail(st, map_error((*reply)->str), what, "redis: %.200s", (*reply)->str);
    freeReplyObject(*reply);
    *reply = NULL;
    return rc;
}

enum th_err th_redis_command(struct th_store *st, const char *what, size_t argc,
                             const char *const *argv, const size_t *lens, redisReply **out)
{
    enum th_err rc = send_raw(st, what, argc, argv, lens, out);

    return rc == TH_OK ? check_reply(st, what, out) : rc;
}

static char *script_text(const struct th_redis_script *script)
{
    return th_xasprintf("%s%s", th_redis_lua_prelude, script->body);
}

/* SCRIPT LOAD: the server returns the SHA1 EVALSHA names the script by. */
static enum th_err script_load(struct th_store *st, const struct th_redis_script *script,
                               const char *what)
{
    char *text = script_text(script);
    const char *argv[] = {"SCRIPT", "LOAD", text};
    redisReply *reply = NULL;
    enum th_err rc = th_redis_command(st, what, 3, argv, NULL, &reply);

    if (rc == TH_OK && (reply->type != REDIS_REPLY_STRING || reply->len != 40)) {
        rc = th_redis_fail(st, TH_EIO, what, "redis: SCRIPT LOAD gave no SHA1");
    }
    if (rc == TH_OK) {
        memcpy(st->redis->sha[script->id], reply->str, 41);
    }
    freeReplyObject(reply);
    free(text);
    return rc;
}

enum th_err th_redis_eval(struct th_store *st, const struct th_redis_script *script,
                          const char *what, size_t argc, const char *const *argv,
                          const size_t *lens, redisReply **out)
{
    struct th_redis *r = st->redis;
    const char **args = th_xcalloc(argc + 3, sizeof(*args));
    size_t *alens = th_xcalloc(argc + 3, sizeof(*alens));
    char *text = NULL;
    enum th_err rc = TH_OK;

    *out = NULL;
    if (r->sha[script->id][0] == '\0') {
        rc = script_load(st, script, what);
    }
    args[0] = "EVALSHA";
    args[1] = r->sha[script->id];
    args[2] = "0";
    for (size_t i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        alens[i + 3] = lens != NULL ? lens[i] : strlen(argv[i]);
    }
    for (size_t i = 0; i < 3; i++) {
        alens[i] = strlen(args[i]);
    }
    if (rc == TH_OK) {
        rc = send_raw(st, what, argc + 3, args, alens, out);
    }
    /* A restarted or flushed server forgot the script: EVAL loads it again. */
    if (rc == TH_OK && (*out)->type == REDIS_REPLY_ERROR &&
        strncmp((*out)->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(*out);
        *out = NULL;
        text = script_text(script);
        args[0] = "EVAL";
        args[1] = text;
        alens[0] = 4;
        alens[1] = strlen(text);
        rc = send_raw(st, what, argc + 3, args, alens, out);
    }
    if (rc == TH_OK) {
        rc = check_reply(st, what, out);
    }
    free(text);
    free(alens);
    free(args);
    return rc;
}

const char *th_redis_elem_str(const redisReply *r, size_t i)
{
    const redisReply *e = NULL;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return NULL;
    }
    e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : NULL;
}

int64_t th_redis_elem_int(const redisReply *r, size_t i, int64_t def)
{
    const redisReply *e = NULL;
    char *end = NULL;
    long long v;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return def;
    }
    e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER) {
        return e->integer;
    }
    if (e->type != REDIS_REPLY_STRING || e->len == 0) {
        return def;
    }
    errno = 0;
    v = strtoll(e->str, &end, 10);
    return errno == 0 && *end == '\0' ? v : def;
}

/* A reply that is not the array a script returns: a script and this file disagree. */
static enum th_err bad_reply(struct th_store *st, const char *what)
{
    return th_redis_fail(st, TH_EIO, what, "redis: unexpected reply");
}

/* ---- opening and closing ---------------------------------------------------------------- */

/* hostname-pid-random: unique among the replicas and the handles of one process. */
static void consumer_name(struct th_redis *r)
{
    char host[72] = "";
    unsigned char rnd[4] = {0};
    char hex[9];

    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
        snprintf(host, sizeof(host), "host");
    }
    host[sizeof(host) - 1] = '\0';
    if (!th_rand_bytes(rnd, sizeof(rnd))) {
        int64_t t = th_clock_mono_us();
        memcpy(rnd, &t, sizeof(rnd));
    }
    th_hex(rnd, sizeof(rnd), hex);
    snprintf(r->consumer, sizeof(r->consumer), "%s-%ld-%s", host, (long)getpid(), hex);
}

enum th_err th_store_redis_open(struct th_store *st, const char *url, enum th_store_mode mode,
                                int64_t claim_after_ms, char *err, size_t errlen)
{
    struct th_redis *r = NULL;
    struct th_redis_url u = {0};
    bool refused = false;
    enum th_err rc;

    th_store_set_err(err, errlen, "%s", "");
    if (st == NULL || url == NULL || url[0] == '\0') {
        th_store_set_err(err, errlen, "no redis URL given (state.redis_url)");
        return TH_EINVAL;
    }
    r = th_xcalloc(1, sizeof(*r));
    st->redis = r;
    r->mode = mode;
    r->claim_after_ms = claim_after_ms > 0 ? claim_after_ms : 60000;
    consumer_name(r);
    rc = th_redis_parse_url(url, &u, err, errlen);
    if (rc != TH_OK) {
        return rc;
    }
    r->host = u.host;
    r->port = u.port;
    r->user = u.user;
    r->password = u.password;
    r->db = u.db;
    if (connect_now(r, &refused)) {
        return TH_OK;
    }
    if (refused) {
        th_store_set_err(err, errlen, "cannot use redis: %s", r->reason);
        return TH_EIO;
    }
    /* The service starts (and reports unready) while Redis is down; every call tries again. */
    th_log(TH_LOG_WARN, "store", "redis unreachable: %s; trying again with backoff", r->reason);
    r->down_reported = true;
    r->backoff_ms = BACKOFF_FIRST_MS;
    r->failed_at_ms = th_clock_mono_ms();
    r->retry_at_ms = r->failed_at_ms + r->backoff_ms;
    snprintf(st->last_error, sizeof(st->last_error), "redis unreachable: %s", r->reason);
    return TH_OK;
}

/* Rows this handle took and did not finish can be taken over at once by other handles
 * (store_redis_outbox.c). Only on a live connection: closing never waits for a dead Redis. */
static void release_deliveries(struct th_store *st)
{
    static const struct th_redis_script release = {
        .id = TH_RS_OUTBOX_RELEASE,
        .body = "local me, idle = ARGV[1], ARGV[2]\n"
                "for i = 3, #ARGV do\n"
                "  local sk = stream_key(ARGV[i])\n"
                "  if redis.call('EXISTS', sk) == 1 then\n"
                "    local held = redis.call('XPENDING', sk, GROUP, '-', '+', 1000, me)\n"
                "    if #held == 0 then\n"
                "      redis.call('XGROUP', 'DELCONSUMER', sk, GROUP, me)\n"
                "    else\n"
                "      local args = {'XCLAIM', sk, GROUP, me, 0}\n"
                "      for _, e in ipairs(held) do args[#args + 1] = e[1] end\n"
                "      args[#args + 1] = 'IDLE'\n"
                "      args[#args + 1] = idle\n"
                "      args[#args + 1] = 'JUSTID'\n"
                "      call(args)\n"
                "    end\n"
                "  end\n"
                "end\n"
                "return 1\n",
    };
    struct th_redis *r = st->redis;
    const char **argv = th_xcalloc(r->ndests + 2, sizeof(*argv));
    redisReply *reply = NULL;
    char idle[24];

    /* Idle for a day: past any replica's claim_after_seconds (at most an hour). */
    snprintf(idle, sizeof(idle), "%lld", 86400000LL);
    argv[0] = r->consumer;
    argv[1] = idle;
    for (size_t i = 0; i < r->ndests; i++) {
        argv[i + 2] = r->dests[i];
    }
    if (th_redis_eval(st, &release, "hand back deliveries", r->ndests + 2, argv, NULL, &reply) ==
        TH_OK) {
        freeReplyObject(reply);
    }
    free(argv);
}

void th_store_redis_close(struct th_store *st)
{
    struct th_redis *r = st->redis;

    if (r == NULL) {
        return;
    }
    if (r->c != NULL && connection_alive(r->c) && r->ndests > 0 && r->mode != TH_STORE_READONLY) {
        release_deliveries(st);
    }
    if (r->c != NULL) {
        redisFree(r->c);
    }
    if (r->password != NULL) {
        memset(r->password, 0, strlen(r->password));
    }
    for (size_t i = 0; i < r->ndests; i++) {
        free(r->dests[i]);
    }
    free(r->host);
    free(r->user);
    free(r->password);
    free(r);
    st->redis = NULL;
}

/* ---- accounts --------------------------------------------------------------------------- */

enum th_err th_store_redis_account_add(struct th_store *st, const char *account_id,
                                       int64_t expires_ms, const char *source, int64_t now_ms)
{
    char exp[24];
    char now[24];
    const char *argv[] = {account_id, exp, source, now};
    redisReply *reply = NULL;
    enum th_err rc;

    if (account_id == NULL || source == NULL) {
        return TH_EINVAL;
    }
    rc = th_redis_writable(st, "add account");
    if (rc != TH_OK) {
        return rc;
    }
    snprintf(exp, sizeof(exp), "%lld", (long long)expires_ms);
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    rc = th_redis_eval(st, &account_add_script, "add account", 4, argv, NULL, &reply);
    freeReplyObject(reply);
    return rc;
}

enum th_err th_store_redis_account_remove(struct th_store *st, const char *account_id)
{
    const char *argv[] = {account_id};
    redisReply *reply = NULL;
    enum th_err rc;

    if (account_id == NULL) {
        return TH_EINVAL;
    }
    rc = th_redis_writable(st, "remove account");
    if (rc == TH_OK) {
        rc = th_redis_eval(st, &account_remove_script, "remove account", 1, argv, NULL, &reply);
    }
    if (rc == TH_OK && (reply->type != REDIS_REPLY_INTEGER || reply->integer == 0)) {
        rc = reply->type == REDIS_REPLY_INTEGER ? TH_ENOTFOUND : bad_reply(st, "remove account");
    }
    freeReplyObject(reply);
    return rc;
}

/* A sorted set's score: an integer number of milliseconds, written as a double. */
static bool score_ms(const char *s, int64_t *out)
{
    char *end = NULL;
    double v;

    if (s == NULL) {
        return false;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || v != v || v > 9.2e18 || v < -9.2e18) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

enum th_err th_store_redis_account_check(struct th_store *st, const char *account_id, int64_t at_ms,
                                         bool *is_new)
{
    const char *argv[] = {"ZSCORE", "trailhook:accounts", account_id};
    redisReply *reply = NULL;
    int64_t expires = 0;
    enum th_err rc;

    if (account_id == NULL || is_new == NULL) {
        return TH_EINVAL;
    }
    *is_new = false;
    rc = th_redis_command(st, "check account", 3, argv, NULL, &reply);
    if (rc == TH_OK && reply->type == REDIS_REPLY_STRING) {
        *is_new = score_ms(reply->str, &expires) && expires > at_ms;
    }
    freeReplyObject(reply);
    return rc;
}

struct account_entry {
    const char *id;
    const char *source;
    int64_t expires_ms;
    int64_t added_ms;
};

static int account_cmp(const void *a, const void *b)
{
    return strcmp(((const struct account_entry *)a)->id, ((const struct account_entry *)b)->id);
}

enum th_err th_store_redis_accounts_list(struct th_store *st, json_t **out)
{
    redisReply *reply = NULL;
    struct account_entry *list = NULL;
    size_t n = 0;
    enum th_err rc;

    if (out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    rc = th_redis_eval(st, &accounts_list_script, "list accounts", 0, NULL, NULL, &reply);
    if (rc == TH_OK && (reply->type != REDIS_REPLY_ARRAY || reply->elements % 4 != 0)) {
        rc = bad_reply(st, "list accounts");
    }
    if (rc == TH_OK) {
        n = reply->elements / 4;
        list = th_xcalloc(n + 1, sizeof(*list));
        for (size_t i = 0; i < n; i++) {
            list[i].id = th_redis_elem_str(reply, 4 * i);
            list[i].id = list[i].id == NULL ? "" : list[i].id;
            list[i].expires_ms = th_redis_elem_int(reply, 4 * i + 1, 0);
            list[i].source = th_redis_elem_str(reply, 4 * i + 2);
            list[i].added_ms = th_redis_elem_int(reply, 4 * i + 3, 0);
        }
        /* By id, byte order, as SQLite's ORDER BY account_id. */
        qsort(list, n, sizeof(*list), account_cmp);
        *out = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *obj = json_object();
            th_store_json_set_text(obj, "account_id", list[i].id);
            th_store_json_set_time(obj, "expires_at", list[i].expires_ms);
            th_store_json_set_text(obj, "source", list[i].source);
            th_store_json_set_time(obj, "added_at", list[i].added_ms);
            json_array_append_new(*out, obj);
        }
    }
    free(list);
    freeReplyObject(reply);
    return rc;
}

/* ---- applying a request ----------------------------------------------------------------- */

/* The script's arguments: strings, some owned (numbers, documents) and freed together. */
struct args {
    const char **v;
    size_t n;
    size_t cap;
    char **owned;
    size_t nowned;
    size_t owned_cap;
};

static void args_add(struct args *a, const char *s)
{
    if (a->n == a->cap) {
        a->cap = a->cap == 0 ? 64 : a->cap * 2;
        a->v = th_xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = s;
}

static void args_own(struct args *a, char *s)
{
    if (a->nowned == a->owned_cap) {
        a->owned_cap = a->owned_cap == 0 ? 16 : a->owned_cap * 2;
        a->owned = th_xrealloc(a->owned, a->owned_cap * sizeof(*a->owned));
    }
    a->owned[a->nowned++] = s;
    args_add(a, s);
}

static void args_int(struct args *a, int64_t v)
{
    args_own(a, th_xasprintf("%lld", (long long)v));
}

static void args_opt(struct args *a, const char *s)
{
    args_add(a, s == NULL ? "0" : "1");
    if (s != NULL) {
        args_add(a, s);
    }
}

static void args_dests(struct args *a, const char *const *d, size_t n)
{
    args_int(a, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        args_add(a, d[i]);
    }
}

static void args_free(struct args *a)
{
    for (size_t i = 0; i < a->nowned; i++) {
        free(a->owned[i]);
    }
    free(a->owned);
    free(a->v);
}

/* Documents are stored as store_alerts.c stores them: compact JSON, "{}" for none. */
static bool args_json(struct args *a, const json_t *doc, const char *none)
{
    char *text = NULL;

    if (doc == NULL) {
        if (none == NULL) {
            args_add(a, "0");
        } else {
            args_add(a, none);
        }
        return true;
    }
    text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        return false;
    }
    if (none == NULL) {
        args_add(a, "1");
    }
    args_own(a, text);
    return true;
}

static bool batch_args(struct args *a, const struct th_store_batch *b, int64_t now_ms)
{
    bool ok = true;

    args_int(a, now_ms);
    args_int(a, (int64_t)b->naccounts);
    args_int(a, (int64_t)b->nmatches);
    args_int(a, (int64_t)b->nresolutions);
    args_int(a, (int64_t)b->nrule_errors);
    for (size_t i = 0; i < b->naccounts; i++) {
        args_add(a, b->accounts[i].account_id);
        args_int(a, b->accounts[i].expires_ms);
    }
    for (size_t i = 0; i < b->nmatches && ok; i++) {
        const struct th_store_match *m = &b->matches[i];
        args_add(a, m->rule_id);
        args_add(a, m->dedup_key);
        args_opt(a, m->event_id);
        args_int(a, m->event_time_ms);
        args_int(a, m->dedup_period_minutes);
        args_int(a, m->threshold);
        args_opt(a, m->title);
        args_opt(a, m->severity);
        ok = args_json(a, m->doc, "{}");
        args_dests(a, m->destinations, m->ndestinations);
    }
    for (size_t i = 0; i < b->nresolutions; i++) {
        const struct th_store_resolution *r = &b->resolutions[i];
        args_add(a, r->rule_id);
        args_add(a, r->dedup_key);
        args_opt(a, r->event_id);
        args_int(a, r->event_time_ms);
    }
    for (size_t i = 0; i < b->nrule_errors && ok; i++) {
        const struct th_store_rule_error *re = &b->rule_errors[i];
        args_add(a, re->rule_id);
        args_opt(a, re->event_id);
        args_add(a, re->error);
        ok = args_json(a, re->event, NULL);
        args_dests(a, re->destinations, re->ndestinations);
    }
    return ok;
}

static enum th_err read_results(struct th_store *st, const redisReply *reply, size_t nmatches,
                                struct th_store_match_result *results)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 * nmatches) {
        return bad_reply(st, "apply");
    }
    for (size_t i = 0; i < nmatches; i++) {
        const char *id = th_redis_elem_str(reply, 3 * i);
        snprintf(results[i].alert_id, sizeof(results[i].alert_id), "%s", id == NULL ? "" : id);
        results[i].duplicate = th_redis_elem_int(reply, 3 * i + 1, 0) != 0;
        results[i].new_alert = th_redis_elem_int(reply, 3 * i + 2, 0) != 0;
    }
    return TH_OK;
}

enum th_err th_store_redis_apply(struct th_store *st, const struct th_store_batch *batch,
                                 int64_t now_ms, struct th_store_match_result *results)
{
    struct args a = {0};
    redisReply *reply = NULL;
    enum th_err rc;

    if (batch == NULL || !th_store_batch_ok(batch, results)) {
        return TH_EINVAL;
    }
    rc = th_redis_writable(st, "apply");
    if (rc == TH_OK) {
        rc = batch_args(&a, batch, now_ms) ? TH_OK : TH_ENOMEM;
    }
    if (rc == TH_OK) {
        rc = th_redis_eval(st, &apply_script, "apply", a.n, a.v, NULL, &reply);
    }
    if (rc == TH_OK) {
        rc = read_results(st, reply, batch->nmatches, results);
    }
    /* Nothing was applied (or it is not known to be), so no result may claim otherwise. */
    if (rc != TH_OK && batch->nmatches > 0) {
        memset(results, 0, batch->nmatches * sizeof(*results));
    }
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* ---- reading alerts and rule errors ----------------------------------------------------- */

/* A field of a HGETALL reply (field, value, field, value ...); NULL when absent. */
static const char *field_of(const redisReply *h, const char *name)
{
    for (size_t i = 0; h != NULL && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
        const char *f = th_redis_elem_str(h, i);
        if (f != NULL && strcmp(f, name) == 0) {
            return th_redis_elem_str(h, i + 1);
        }
    }
    return NULL;
}

static int64_t field_int(const redisReply *h, const char *name)
{
    const char *v = field_of(h, name);

    return v == NULL ? 0 : strtoll(v, NULL, 10);
}

/* As store_alerts.c's alert_json: the stored document under the alert's own fields. */
static json_t *alert_json(const char *id, const redisReply *h)
{
    const char *doc = field_of(h, "doc");
    json_t *stored = doc == NULL ? NULL : json_loads(doc, 0, NULL);
    json_t *obj = json_object();

    th_store_json_set_text(obj, "id", id);
    th_store_json_set_text(obj, "rule", field_of(h, "rule"));
    th_store_json_set_text(obj, "dedup_key", field_of(h, "dedup_key"));
    th_store_json_set_text(obj, "status", field_of(h, "status"));
    json_object_set_new(obj, "event_count", json_integer(field_int(h, "event_count")));
    th_store_json_set_time(obj, "first_seen", field_int(h, "first_seen_ms"));
    th_store_json_set_time(obj, "last_seen", field_int(h, "last_seen_ms"));
    th_store_json_set_time(obj, "created_at", field_int(h, "created_ms"));
    th_store_json_set_time(obj, "updated_at", field_int(h, "updated_ms"));
    if (field_of(h, "resolved_ms") != NULL) {
        th_store_json_set_time(obj, "resolved_at", field_int(h, "resolved_ms"));
    }
    if (json_is_object(stored)) {
        json_object_update_missing(obj, stored);
    }
    json_decref(stored);
    return obj;
}

enum th_err th_store_redis_alert_get(struct th_store *st, const char *alert_id, json_t **out)
{
    char *key = NULL;
    redisReply *reply = NULL;
    enum th_err rc;

    if (alert_id == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    key = th_xasprintf("trailhook:alert:%s", alert_id);
    rc = th_redis_command(st, "read alert", 2, (const char *const[]){"HGETALL", key}, NULL, &reply);
    if (rc == TH_OK && reply->type != REDIS_REPLY_ARRAY) {
        rc = bad_reply(st, "read alert");
    }
    if (rc == TH_OK && reply->elements == 0) {
        rc = TH_ENOTFOUND;
    }
    if (rc == TH_OK) {
        *out = alert_json(alert_id, reply);
    }
    freeReplyObject(reply);
    free(key);
    return rc;
}

enum th_err th_store_redis_alerts_recent(struct th_store *st, size_t limit, json_t **out)
{
    char text[24];
    const char *argv[] = {text};
    redisReply *reply = NULL;
    enum th_err rc = TH_OK;

    if (out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    if (limit > 0) {
        snprintf(text, sizeof(text), "%zu", limit > MAX_LIST ? (size_t)MAX_LIST : limit);
        rc = th_redis_eval(st, &alerts_recent_script, "list alerts", 1, argv, NULL, &reply);
        if (rc == TH_OK && (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0)) {
            rc = bad_reply(st, "list alerts");
        }
    }
    if (rc == TH_OK) {
        *out = json_array();
        for (size_t i = 0; reply != NULL && i < reply->elements; i += 2) {
            const char *id = th_redis_elem_str(reply, i);
            if (id != NULL && reply->element[i + 1]->elements > 0) {
                json_array_append_new(*out, alert_json(id, reply->element[i + 1]));
            }
        }
    }
    freeReplyObject(reply);
    return rc;
}

enum th_err th_store_redis_rule_error_get(struct th_store *st, int64_t id, json_t **out)
{
    char key[64];
    redisReply *reply = NULL;
    enum th_err rc;

    if (out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    snprintf(key, sizeof(key), "trailhook:rule_error:%lld", (long long)id);
    rc = th_redis_command(st, "read rule error", 2, (const char *const[]){"HGETALL", key}, NULL,
                          &reply);
    if (rc == TH_OK && reply->type != REDIS_REPLY_ARRAY) {
        rc = bad_reply(st, "read rule error");
    }
    if (rc == TH_OK && reply->elements == 0) {
        rc = TH_ENOTFOUND;
    }
    if (rc == TH_OK) {
        const char *event = field_of(reply, "event");
        json_t *ev = event == NULL ? NULL : json_loads(event, JSON_DECODE_ANY, NULL);
        *out = json_object();
        json_object_set_new(*out, "id", json_integer(id));
        th_store_json_set_text(*out, "rule", field_of(reply, "rule"));
        th_store_json_set_text(*out, "event_id", field_of(reply, "event_id"));
        th_store_json_set_text(*out, "error", field_of(reply, "error"));
        json_object_set_new(*out, "event", ev == NULL ? json_null() : ev);
        th_store_json_set_time(*out, "created_at", field_int(reply, "created_ms"));
    }
    freeReplyObject(reply);
    return rc;
}

/* ---- housekeeping ----------------------------------------------------------------------- */

enum th_err th_store_redis_prune(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms)
{
    char now[24];
    char ttl[24];
    const char *argv[] = {now, ttl};
    bool more = true;
    enum th_err rc;

    if (seen_ttl_ms < 0) {
        return TH_EINVAL;
    }
    rc = th_redis_writable(st, "prune");
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)seen_ttl_ms);
    /* In rounds, so that a large backlog never holds Redis for long in one script. */
    for (int round = 0; rc == TH_OK && more && round < MAX_PRUNE_ROUNDS; round++) {
        redisReply *reply = NULL;
        rc = th_redis_eval(st, &prune_script, "prune", 2, argv, NULL, &reply);
        more = rc == TH_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer != 0;
        freeReplyObject(reply);
    }
    return rc;
}

/* A write Redis must accept: fails on a read-only replica (READONLY), a failing disk
 * (MISCONF), a full memory (OOM) or an unreachable server. */
enum th_err th_store_redis_check_writable(struct th_store *st)
{
    char now[24];
    const char *argv[] = {"SET", "trailhook:probe", now, "PX", "60000"};
    redisReply *reply = NULL;
    enum th_err rc = th_redis_writable(st, "probe write");

    snprintf(now, sizeof(now), "%lld", (long long)th_clock_now_ms());
    if (rc == TH_OK) {
        rc = th_redis_command(st, "probe write", 5, argv, NULL, &reply);
    }
    freeReplyObject(reply);
    return rc;
}
