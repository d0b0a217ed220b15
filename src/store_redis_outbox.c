/* SPDX-License-Identifier: MIT */
/*
 * store_redis_outbox.c -- the outbox of the Redis store on Redis Streams, shared by the
 * replicas: rows queued by the apply script (store_redis.c), taken by the delivery lanes per
 * destination, marked delivered, retried or parked as dead letters; listed, requeued and dropped
 * by operators. Same contract as store_outbox.c.
 *
 * The keys (after "trailhook:"; D is a destination's name, in braces so that no name can make
 * one key family collide with another):
 *
 *   outbox:seq            string  INCR: row ids, so th_outbox_row.id stays an int64
 *   outbox:row:<id>       hash    destination, kind, ref, state (pending|done|dead), attempts,
 *                                 created_ms, next_attempt_ms, updated_ms, last_error (absent:
 *                                 none), entry (the row's entry in outbox:{D} while it has one),
 *                                 dead_entry (its entry in outbox:dead:{D} while dead)
 *   outbox:destinations   set     every destination that ever had a row (counts of "all")
 *   outbox:{D}            stream  one entry {id} per pending row ready to be worked on; consumer
 *                                 group "trailhook", one consumer per store handle
 *                                 (hostname-pid-random)
 *   outbox:retry:{D}      zset    row id by next_attempt_ms: pending rows waiting out a backoff
 *   outbox:pending:{D}    zset    row id by next_attempt_ms: every pending row (counts, next_due)
 *   outbox:triggers:{D}   hash    alert id -> its pending ALERT rows (a RESOLVE waits while > 0)
 *   outbox:dead:{D}       stream  the dead letters {id, error}
 *   outbox:done:{D}       zset    delivered row id by updated_ms (pruned after a week)
 *   outbox:rows:{D}       zset    every row id by id (listing, newest first)
 *
 * Taking work (outbox_due), in one script: retries whose time has come move from the retry set
 * back into the stream; then the handle looks at the entries it already holds (its consumer's
 * pending list, XREADGROUP ... 0), then at new entries (XREADGROUP ... >), then takes over
 * entries another consumer has left idle longer than claim_after_ms (XAUTOCLAIM: a replica
 * killed with kill -9 leaves its entries pending, and another takes them over). It returns the
 * rows among them that are due by the caller's clock and not blocked (a RESOLVE row is not due
 * while the same alert's ALERT row to that destination is pending, as SQLite's NOT_BLOCKED),
 * oldest first. Every entry it holds has its idle time reset (XCLAIM to itself), so a live
 * handle's work is never taken over; a closed handle makes what it held idle at once, so
 * another takes it over without waiting.
 *
 * Retries leave the stream: outbox_retry acknowledges and deletes the row's entry and schedules
 * the row in outbox:retry:{D}, whence outbox_due moves it back (a new entry, read by whichever
 * handle comes first). Keeping retries in the pending list instead would tie a row to the
 * consumer that failed it, make every outbox_due reread rows waiting minutes, and let a long
 * backoff look like a dead consumer's (XAUTOCLAIM goes by idle time alone).
 *
 * A row is done only through outbox_done (XACK, entry deleted, state done); outbox_dead
 * acknowledges it and adds it to the dead-letter stream. Every change is one script, so the
 * row's hash and its indexes never disagree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "trailhook/clock.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"
#include "store_int.h"
#include "store_redis.h"
#include "store_redis_int.h"

#define MAX_DUE     10000            /* rows one outbox_due returns at most */
#define MAX_LIST    100000           /* rows one outbox_list returns at most */
#define CLEANUP_MS  (10 * 60 * 1000) /* how often a handle removes consumers long gone */
#define DUE_FIELDS  7
#define LIST_FIELDS 10

/* ARGV: destination, now, max, consumer, claim_after_ms, cleanup (1: remove consumers idle for
 * an hour that hold nothing). Returns DUE_FIELDS strings per row. */
static const struct th_redis_script due_script = {
    .id = TH_RS_OUTBOX_DUE,
    .body = "local d, now, max, me = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]\n"
            "local claim_ms, cleanup = ARGV[5], ARGV[6] == '1'\n"
            "local sk = ensure_group(d)\n"
            "local moved = redis.call('ZRANGEBYSCORE', retry_key(d), '-inf', I(now), 'LIMIT', 0,\n"
            "                         1000)\n"
            "for _, id in ipairs(moved) do\n"
            "  redis.call('ZREM', retry_key(d), id)\n"
            "  local e = redis.call('XADD', sk, '*', 'id', id)\n"
            "  redis.call('HSET', row_key(id), 'entry', e)\n"
            "end\n"
            "local cand = {}\n"
            "local function consider(entry)\n"
            "  local id = type(entry[2]) == 'table' and entry[2][1] == 'id' and entry[2][2]\n"
            "  local r = id and row_load(id)\n"
            "  if not r or r.state ~= 'pending' or r.entry ~= entry[1] then\n"
            "    redis.call('XACK', sk, GROUP, entry[1])\n"
            "    redis.call('XDEL', sk, entry[1])\n"
            "  elseif tonumber(r.next_attempt_ms) <= now and not row_blocked(r) then\n"
            "    cand[#cand + 1] = {tonumber(id), id, r.destination, r.kind, r.ref, r.attempts,\n"
            "                       r.created_ms, r.next_attempt_ms}\n"
            "  end\n"
            "end\n"
            "local own = redis.call('XREADGROUP', 'GROUP', GROUP, me, 'COUNT', 1000,\n"
            "                      'STREAMS', sk, '0')\n"
            "local entries = own and own[1][2] or {}\n"
            "local touch = {'XCLAIM', sk, GROUP, me, 0}\n"
            "for _, e in ipairs(entries) do\n"
            "  touch[#touch + 1] = e[1]\n"
            "  consider(e)\n"
            "end\n"
            "if #touch > 5 then\n"
            "  touch[#touch + 1] = 'JUSTID'\n"
            "  call(touch)\n"
            "end\n"
            "for _ = 1, 4 do\n"
            "  if #cand >= max then break end\n"
            "  local got = redis.call('XREADGROUP', 'GROUP', GROUP, me, 'COUNT', max - #cand,\n"
            "                         'STREAMS', sk, '>')\n"
            "  if not got or #got[1][2] == 0 then break end\n"
            "  for _, e in ipairs(got[1][2]) do consider(e) end\n"
            "end\n"
            "local cursor = '0-0'\n"
            "for _ = 1, 4 do\n"
            "  if #cand >= max then break end\n"
            "  local got = redis.call('XAUTOCLAIM', sk, GROUP, me, claim_ms, cursor,\n"
            "                         'COUNT', max - #cand)\n"
            "  for _, e in ipairs(got[2]) do\n"
            "    if type(e) == 'table' then consider(e) end\n"
            "  end\n"
            "  cursor = got[1]\n"
            "  if cursor == '0-0' then break end\n"
            "end\n"
            "if cleanup then\n"
            "  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', sk, GROUP)) do\n"
            "    local info = {}\n"
            "    for i = 1, #c, 2 do info[c[i]] = c[i + 1] end\n"
            "    if info.name ~= me and info.pending == 0 and info.idle > 3600000 then\n"
            "      redis.call('XGROUP', 'DELCONSUMER', sk, GROUP, info.name)\n"
            "    end\n"
            "  end\n"
            "end\n"
            "table.sort(cand, function(a, b) return a[1] < b[1] end)\n"
            "local out = {}\n"
            "for i = 1, math.min(#cand, max) do\n"
            "  for k = 2, 8 do out[#out + 1] = cand[i][k] end\n"
            "end\n"
            "return out\n",
};

/* ARGV: id, now. Returns 0 when there is no such row. */
static const struct th_redis_script done_script = {
    .id = TH_RS_OUTBOX_DONE,
    .body = "local id, now = ARGV[1], ARGV[2]\n"
            "local r = row_load(id)\n"
            "if not r then return 0 end\n"
            "row_leave(id, r)\n"
            "redis.call('HSET', row_key(id), 'state', 'done', 'updated_ms', now)\n"
            "redis.call('ZADD', done_key(r.destination), now, id)\n"
            "return 1\n",
};

/* ARGV: id, next_ms, now[, error]. */
static const struct th_redis_script retry_script = {
    .id = TH_RS_OUTBOX_RETRY,
    .body = "local id, next_ms, now, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
            "local r = row_load(id)\n"
            "if not r then return 0 end\n"
            "redis.call('HSET', row_key(id), 'attempts', I(tonumber(r.attempts) + 1),\n"
            "           'next_attempt_ms', next_ms, 'updated_ms', now)\n"
            "if err then\n"
            "  redis.call('HSET', row_key(id), 'last_error', err)\n"
            "else\n"
            "  redis.call('HDEL', row_key(id), 'last_error')\n"
            "end\n"
            "if r.state == 'pending' then\n"
            "  stream_out(r)\n"
            "  redis.call('HDEL', row_key(id), 'entry')\n"
            "  redis.call('ZADD', retry_key(r.destination), next_ms, id)\n"
            "  redis.call('ZADD', pending_key(r.destination), next_ms, id)\n"
            "end\n"
            "return 1\n",
};

/* ARGV: id, now[, error]. */
static const struct th_redis_script dead_script = {
    .id = TH_RS_OUTBOX_DEAD,
    .body = "local id, now, err = ARGV[1], ARGV[2], ARGV[3]\n"
            "local r = row_load(id)\n"
            "if not r then return 0 end\n"
            "row_leave(id, r)\n"
            "local e = redis.call('XADD', deadq_key(r.destination), '*', 'id', id,\n"
            "                    'error', err or '')\n"
            "redis.call('HSET', row_key(id), 'state', 'dead', 'updated_ms', now, 'dead_entry', e,\n"
            "           'attempts', I(tonumber(r.attempts) + 1))\n"
            "if err then\n"
            "  redis.call('HSET', row_key(id), 'last_error', err)\n"
            "else\n"
            "  redis.call('HDEL', row_key(id), 'last_error')\n"
            "end\n"
            "return 1\n",
};

/* ARGV: [destination]. Returns pending, dead. */
static const struct th_redis_script counts_script = {
    .id = TH_RS_OUTBOX_COUNTS,
    .body = "local dests = ARGV[1] and {ARGV[1]} or redis.call('SMEMBERS', DESTS)\n"
            "local pending, dead = 0, 0\n"
            "for _, d in ipairs(dests) do\n"
            "  pending = pending + redis.call('ZCARD', pending_key(d))\n"
            "  dead = dead + redis.call('XLEN', deadq_key(d))\n"
            "end\n"
            "return {pending, dead}\n",
};

/* ARGV: [destination]. Returns the earliest next attempt of an unblocked pending row, or nil. */
static const struct th_redis_script next_due_script = {
    .id = TH_RS_OUTBOX_NEXT_DUE,
    .body =
        "local dests = ARGV[1] and {ARGV[1]} or redis.call('SMEMBERS', DESTS)\n"
        "local best = nil\n"
        "for _, d in ipairs(dests) do\n"
        "  local start = 0\n"
        "  while true do\n"
        "    local got = redis.call('ZRANGE', pending_key(d), start, start + 99, 'WITHSCORES')\n"
        "    if #got == 0 then break end\n"
        "    local found = nil\n"
        "    for i = 1, #got, 2 do\n"
        "      local r = row_load(got[i])\n"
        "      if r and not row_blocked(r) then\n"
        "        found = tonumber(got[i + 1])\n"
        "        break\n"
        "      end\n"
        "    end\n"
        "    if found then\n"
        "      if not best or found < best then best = found end\n"
        "      break\n"
        "    end\n"
        "    start = start + 100\n"
        "  end\n"
        "end\n"
        "return best and I(best) or false\n",
};

/* ARGV: limit, state ("" for all)[, destination]. Returns LIST_FIELDS values per row. */
static const struct th_redis_script list_script = {
    .id = TH_RS_OUTBOX_LIST,
    .body =
        "local limit, state = tonumber(ARGV[1]), ARGV[2]\n"
        "local dests = ARGV[3] and {ARGV[3]} or redis.call('SMEMBERS', DESTS)\n"
        "local ids = {}\n"
        "local function add_sorted(list)\n"
        "  local nums = {}\n"
        "  for _, id in ipairs(list) do nums[#nums + 1] = tonumber(id) end\n"
        "  table.sort(nums, function(a, b) return a > b end)\n"
        "  for i = 1, math.min(#nums, limit) do ids[#ids + 1] = nums[i] end\n"
        "end\n"
        "for _, d in ipairs(dests) do\n"
        "  if state == 'pending' then\n"
        "    add_sorted(redis.call('ZRANGE', pending_key(d), 0, -1))\n"
        "  elseif state == 'dead' then\n"
        "    local list = {}\n"
        "    for _, e in ipairs(redis.call('XRANGE', deadq_key(d), '-', '+')) do\n"
        "      if type(e[2]) == 'table' and e[2][1] == 'id' then list[#list + 1] = e[2][2] end\n"
        "    end\n"
        "    add_sorted(list)\n"
        "  else\n"
        "    local start, n = 0, 0\n"
        "    while n < limit do\n"
        "      local chunk = redis.call('ZREVRANGE', rows_key(d), start, start + 499)\n"
        "      if #chunk == 0 then break end\n"
        "      for _, id in ipairs(chunk) do\n"
        "        local keep = state == '' or redis.call('HGET', row_key(id), 'state') == state\n"
        "        if n < limit and keep then\n"
        "          ids[#ids + 1] = tonumber(id)\n"
        "          n = n + 1\n"
        "        end\n"
        "      end\n"
        "      start = start + 500\n"
        "    end\n"
        "  end\n"
        "end\n"
        "table.sort(ids, function(a, b) return a > b end)\n"
        "local out = {}\n"
        "for i = 1, math.min(#ids, limit) do\n"
        "  local id = I(ids[i])\n"
        "  local r = row_load(id)\n"
        "  if r then\n"
        "    out[#out + 1] = id\n"
        "    out[#out + 1] = r.destination\n"
        "    out[#out + 1] = r.kind\n"
        "    out[#out + 1] = r.ref\n"
        "    out[#out + 1] = r.state\n"
        "    out[#out + 1] = r.attempts\n"
        "    out[#out + 1] = r.created_ms\n"
        "    out[#out + 1] = r.next_attempt_ms\n"
        "    out[#out + 1] = r.updated_ms\n"
        "    out[#out + 1] = r.last_error or false\n"
        "  end\n"
        "end\n"
        "return out\n",
};

/* ARGV: id, now. Returns 1, -1 (no such row) or -2 (not a dead letter). */
static const struct th_redis_script requeue_script = {
    .id = TH_RS_OUTBOX_REQUEUE,
    .body =
        "local id, now = ARGV[1], ARGV[2]\n"
        "local r = row_load(id)\n"
        "if not r then return -1 end\n"
        "if r.state ~= 'dead' then return -2 end\n"
        "row_leave(id, r)\n"
        "redis.call('HSET', row_key(id), 'state', 'pending', 'attempts', '0', 'created_ms', now,\n"
        "           'next_attempt_ms', now, 'updated_ms', now)\n"
        "redis.call('HDEL', row_key(id), 'last_error')\n"
        "if r.kind == '0' then trig_add(r.destination, r.ref, 1) end\n"
        "stream_in(id, r.destination, now)\n"
        "return 1\n",
};

/* ARGV: id. Returns 1, -1 (no such row) or -2 (not a dead letter). */
static const struct th_redis_script drop_script = {
    .id = TH_RS_OUTBOX_DROP,
    .body = "local id = ARGV[1]\n"
            "local r = row_load(id)\n"
            "if not r then return -1 end\n"
            "if r.state ~= 'dead' then return -2 end\n"
            "row_leave(id, r)\n"
            "redis.call('DEL', row_key(id))\n"
            "redis.call('ZREM', rows_key(r.destination), id)\n"
            "return 1\n",
};

static const char *const kind_names[] = {
    [TH_OUTBOX_ALERT] = "alert",
    [TH_OUTBOX_RULE_ERROR] = "rule_error",
    [TH_OUTBOX_RESOLVE] = "resolve",
};

/* Runs a script that acts on one row and answers an integer. */
static enum th_err row_script(struct th_store *st, const struct th_redis_script *script,
                              const char *what, size_t argc, const char *const *argv,
                              long long *result)
{
    redisReply *reply = NULL;
    enum th_err rc = th_redis_writable(st, what);

    if (rc == TH_OK) {
        rc = th_redis_eval(st, script, what, argc, argv, NULL, &reply);
    }
    if (rc == TH_OK && reply->type != REDIS_REPLY_INTEGER) {
        rc = th_redis_fail(st, TH_EIO, what, "redis: unexpected reply");
    }
    if (rc == TH_OK) {
        *result = reply->integer;
    }
    freeReplyObject(reply);
    return rc;
}

/* Remembers a destination this handle is a consumer of, for closing (store_redis.c). */
static void remember_destination(struct th_redis *r, const char *destination)
{
    for (size_t i = 0; i < r->ndests; i++) {
        if (strcmp(r->dests[i], destination) == 0) {
            return;
        }
    }
    if (r->ndests < TH_REDIS_MAX_DESTS) {
        r->dests[r->ndests++] = th_xstrdup(destination);
    }
}

static void row_read(const redisReply *reply, size_t at, struct th_outbox_row *row)
{
    const char *dest = th_redis_elem_str(reply, at + 1);
    const char *ref = th_redis_elem_str(reply, at + 3);

    memset(row, 0, sizeof(*row));
    row->id = th_redis_elem_int(reply, at, 0);
    snprintf(row->destination, sizeof(row->destination), "%s", dest == NULL ? "" : dest);
    row->kind = (enum th_outbox_kind)th_redis_elem_int(reply, at + 2, 0);
    snprintf(row->ref, sizeof(row->ref), "%s", ref == NULL ? "" : ref);
    row->attempts = (int)th_redis_elem_int(reply, at + 4, 0);
    row->created_ms = th_redis_elem_int(reply, at + 5, 0);
    row->next_attempt_ms = th_redis_elem_int(reply, at + 6, 0);
}

enum th_err th_store_redis_outbox_due(struct th_store *st, const char *destination, int64_t now_ms,
                                      struct th_outbox_row *rows, size_t max, size_t *n)
{
    struct th_redis *r = st->redis;
    char now[24];
    char count[24];
    char claim[24];
    int64_t mono = th_clock_mono_ms();
    const char *argv[] = {destination, now,   count,
                          r->consumer, claim, mono >= r->cleanup_at_ms ? "1" : "0"};
    redisReply *reply = NULL;
    enum th_err rc;

    if (destination == NULL || n == NULL || (max > 0 && rows == NULL)) {
        return TH_EINVAL;
    }
    *n = 0;
    if (max == 0) {
        return TH_OK;
    }
    rc = th_redis_writable(st, "read due deliveries");
    if (rc != TH_OK) {
        return rc;
    }
    max = max > MAX_DUE ? MAX_DUE : max;
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    snprintf(count, sizeof(count), "%zu", max);
    snprintf(claim, sizeof(claim), "%lld", (long long)r->claim_after_ms);
    remember_destination(r, destination);
    rc = th_redis_eval(st, &due_script, "read due deliveries", 6, argv, NULL, &reply);
    if (rc == TH_OK && (reply->type != REDIS_REPLY_ARRAY || reply->elements % DUE_FIELDS != 0 ||
                        reply->elements / DUE_FIELDS > max)) {
        rc = th_redis_fail(st, TH_EIO, "read due deliveries", "redis: unexpected reply");
    }
    if (rc == TH_OK) {
        if (argv[5][0] == '1') {
            r->cleanup_at_ms = mono + CLEANUP_MS;
        }
        for (size_t i = 0; i < reply->elements / DUE_FIELDS; i++) {
            row_read(reply, i * DUE_FIELDS, &rows[(*n)++]);
        }
    }
    freeReplyObject(reply);
    return rc;
}

/* Runs a row script on: the row id, @p ntimes times in milliseconds, then @p text unless NULL. */
static enum th_err row_call(struct th_store *st, const struct th_redis_script *script,
                            const char *what, int64_t id, const int64_t *times, size_t ntimes,
                            const char *text, long long *res)
{
    char numbers[3][24];
    const char *argv[4];
    size_t argc = 0;

    snprintf(numbers[0], sizeof(numbers[0]), "%lld", (long long)id);
    argv[argc++] = numbers[0];
    for (size_t i = 0; i < ntimes && i < 2; i++) {
        snprintf(numbers[i + 1], sizeof(numbers[i + 1]), "%lld", (long long)times[i]);
        argv[argc++] = numbers[i + 1];
    }
    if (text != NULL) {
        argv[argc++] = text;
    }
    *res = 0;
    return row_script(st, script, what, argc, argv, res);
}

/* The scripts answer 0 for a row that is not there (dropped, or pruned meanwhile). */
static enum th_err row_found(enum th_err rc, long long res)
{
    return rc == TH_OK && res == 0 ? TH_ENOTFOUND : rc;
}

enum th_err th_store_redis_outbox_done(struct th_store *st, int64_t id, int64_t now_ms)
{
    long long res;
    enum th_err rc = row_call(st, &done_script, "mark delivered", id, &now_ms, 1, NULL, &res);
    return row_found(rc, res);
}

enum th_err th_store_redis_outbox_retry(struct th_store *st, int64_t id, int64_t next_ms,
                                        const char *error, int64_t now_ms)
{
    const int64_t times[] = {next_ms, now_ms};
    long long res;
    enum th_err rc = row_call(st, &retry_script, "schedule retry", id, times, 2, error, &res);
    return row_found(rc, res);
}

enum th_err th_store_redis_outbox_dead(struct th_store *st, int64_t id, const char *error,
                                       int64_t now_ms)
{
    long long res;
    enum th_err rc = row_call(st, &dead_script, "park dead letter", id, &now_ms, 1, error, &res);
    return row_found(rc, res);
}

enum th_err th_store_redis_outbox_counts(struct th_store *st, const char *destination,
                                         size_t *pending, size_t *dead)
{
    const char *argv[] = {destination};
    redisReply *reply = NULL;
    enum th_err rc;

    if (pending == NULL || dead == NULL) {
        return TH_EINVAL;
    }
    *pending = 0;
    *dead = 0;
    rc = th_redis_eval(st, &counts_script, "count deliveries", destination == NULL ? 0 : 1, argv,
                       NULL, &reply);
    if (rc == TH_OK && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)) {
        rc = th_redis_fail(st, TH_EIO, "count deliveries", "redis: unexpected reply");
    }
    if (rc == TH_OK) {
        *pending = (size_t)th_redis_elem_int(reply, 0, 0);
        *dead = (size_t)th_redis_elem_int(reply, 1, 0);
    }
    freeReplyObject(reply);
    return rc;
}

enum th_err th_store_redis_outbox_next_due(struct th_store *st, const char *destination,
                                           int64_t *next_ms)
{
    const char *argv[] = {destination};
    redisReply *reply = NULL;
    enum th_err rc;

    if (next_ms == NULL) {
        return TH_EINVAL;
    }
    *next_ms = INT64_MAX;
    rc = th_redis_eval(st, &next_due_script, "find next delivery", destination == NULL ? 0 : 1,
                       argv, NULL, &reply);
    if (rc == TH_OK && reply->type == REDIS_REPLY_STRING) {
        *next_ms = strtoll(reply->str, NULL, 10);
    } else if (rc == TH_OK && reply->type != REDIS_REPLY_NIL) {
        rc = th_redis_fail(st, TH_EIO, "find next delivery", "redis: unexpected reply");
    }
    freeReplyObject(reply);
    return rc;
}

static const char *kind_name(int64_t kind)
{
    if (kind < 0 || (size_t)kind >= sizeof(kind_names) / sizeof(kind_names[0])) {
        return "unknown";
    }
    return kind_names[kind];
}

/* As store_outbox.c's outbox_json: a retry time only while the row waits. */
static json_t *outbox_json(const redisReply *reply, size_t at)
{
    const char *state = th_redis_elem_str(reply, at + 4);
    json_t *obj = json_object();

    json_object_set_new(obj, "id", json_integer(th_redis_elem_int(reply, at, 0)));
    th_store_json_set_text(obj, "destination", th_redis_elem_str(reply, at + 1));
    th_store_json_set_text(obj, "kind", kind_name(th_redis_elem_int(reply, at + 2, -1)));
    th_store_json_set_text(obj, "ref", th_redis_elem_str(reply, at + 3));
    th_store_json_set_text(obj, "state", state);
    json_object_set_new(obj, "attempts", json_integer(th_redis_elem_int(reply, at + 5, 0)));
    th_store_json_set_time(obj, "created_at", th_redis_elem_int(reply, at + 6, 0));
    if (state != NULL && strcmp(state, "pending") == 0) {
        th_store_json_set_time(obj, "next_attempt_at", th_redis_elem_int(reply, at + 7, 0));
    } else {
        json_object_set_new(obj, "next_attempt_at", json_null());
    }
    th_store_json_set_time(obj, "updated_at", th_redis_elem_int(reply, at + 8, 0));
    th_store_json_set_text(obj, "last_error", th_redis_elem_str(reply, at + 9));
    return obj;
}

static bool state_ok(const char *state)
{
    return state == NULL || strcmp(state, "pending") == 0 || strcmp(state, "dead") == 0 ||
           strcmp(state, "done") == 0;
}

enum th_err th_store_redis_outbox_list(struct th_store *st, const char *destination,
                                       const char *state, size_t limit, json_t **out)
{
    char text[24];
    const char *argv[] = {text, state == NULL ? "" : state, destination};
    redisReply *reply = NULL;
    enum th_err rc = TH_OK;

    if (out == NULL || !state_ok(state)) {
        return TH_EINVAL;
    }
    *out = NULL;
    if (limit > 0) {
        snprintf(text, sizeof(text), "%zu", limit > MAX_LIST ? (size_t)MAX_LIST : limit);
        rc = th_redis_eval(st, &list_script, "list deliveries", destination == NULL ? 2 : 3, argv,
                           NULL, &reply);
        if (rc == TH_OK &&
            (reply->type != REDIS_REPLY_ARRAY || reply->elements % LIST_FIELDS != 0)) {
            rc = th_redis_fail(st, TH_EIO, "list deliveries", "redis: unexpected reply");
        }
    }
    if (rc == TH_OK) {
        *out = json_array();
        for (size_t i = 0; reply != NULL && i < reply->elements; i += LIST_FIELDS) {
            json_array_append_new(*out, outbox_json(reply, i));
        }
    }
    freeReplyObject(reply);
    return rc;
}

/* 1: done; -1: no such row; -2: the row is not a dead letter. */
static enum th_err on_dead_letter(struct th_store *st, const struct th_redis_script *script,
                                  const char *what, int64_t id, int64_t now_ms)
{
    long long res;
    enum th_err rc = row_call(st, script, what, id, &now_ms, 1, NULL, &res);
    if (rc == TH_OK && res < 0) {
        rc = res == -1 ? TH_ENOTFOUND : TH_EINVAL;
    }
    return rc;
}

enum th_err th_store_redis_outbox_requeue(struct th_store *st, int64_t id, int64_t now_ms)
{
    return on_dead_letter(st, &requeue_script, "requeue dead letter", id, now_ms);
}

enum th_err th_store_redis_outbox_drop(struct th_store *st, int64_t id)
{
    return on_dead_letter(st, &drop_script, "drop dead letter", id, 0);
}
