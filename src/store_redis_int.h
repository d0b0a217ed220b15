/* SPDX-License-Identifier: MIT */
/*
 * store_redis_int.h -- what the two files of the Redis store share: store_redis.c (the data
 * model, the connection, scripts, accounts, applying a request, alerts, rule errors,
 * housekeeping) and store_redis_outbox.c (the outbox on Redis Streams), and the URL parser
 * tests/fuzz/fuzz_redis_url.c calls. Not a public interface.
 */
#ifndef TRAILHOOK_STORE_REDIS_INT_H
#define TRAILHOOK_STORE_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "trailhook/err.h"
#include "trailhook/store.h"

/* Every Lua script the store runs; each is the shared prelude (store_redis.c) plus its body. */
enum th_redis_script_id {
    TH_RS_ACCOUNT_ADD,
    TH_RS_ACCOUNT_REMOVE,
    TH_RS_ACCOUNTS_LIST,
    TH_RS_APPLY,
    TH_RS_ALERTS_RECENT,
    TH_RS_PRUNE,
    TH_RS_OUTBOX_DUE,
    TH_RS_OUTBOX_DONE,
    TH_RS_OUTBOX_RETRY,
    TH_RS_OUTBOX_DEAD,
    TH_RS_OUTBOX_COUNTS,
    TH_RS_OUTBOX_NEXT_DUE,
    TH_RS_OUTBOX_LIST,
    TH_RS_OUTBOX_REQUEUE,
    TH_RS_OUTBOX_DROP,
    TH_RS_OUTBOX_RELEASE,
    TH_RS_COUNT
};

struct th_redis_script {
    enum th_redis_script_id id; /* its slot in the handle's SHA1 cache */
    const char *body;
};

/* Destinations whose stream this handle read as a consumer: released when it closes. */
#define TH_REDIS_MAX_DESTS 64

struct th_redis {
    redisContext *c; /* NULL while disconnected */
    char *host;
    int port;
    char *user;     /* NULL: AUTH with the password only */
    char *password; /* NULL: no AUTH; never logged or shown */
    int db;
    enum th_store_mode mode;
    int64_t claim_after_ms;
    char consumer[128]; /* this handle's consumer name in every destination's group */
    /* Reconnecting: no attempt before retry_at_ms (monotonic); the wait doubles per failure. */
    int64_t retry_at_ms;
    int64_t failed_at_ms;
    int64_t backoff_ms;
    bool down_reported;
    char reason[192]; /* why the last connect failed or the connection was lost */
    char sha[TH_RS_COUNT][41];
    char *dests[TH_REDIS_MAX_DESTS];
    size_t ndests;
    int64_t cleanup_at_ms; /* monotonic: when due next removes idle consumers */
};

/* state.redis_url taken apart: redis://[[user:]password@]host[:port][/db]. */
struct th_redis_url {
    char *host;     /* never empty; an IPv6 address without its [] */
    int port;       /* 1 to 65535; 6379 when the URL names none */
    char *user;     /* NULL: none (AUTH with the password only) */
    char *password; /* NULL: none; never logged or shown */
    int db;         /* 0 to 2147483647; 0 when the URL names none */
};

/**
 * Parses @p url (the user and password percent-decoded; %00 refused). rediss:// is refused:
 * this hiredis has no TLS.
 * @param[out] out filled on success, zeroed on failure; freed with th_redis_url_free
 * @return TH_OK; TH_EINVAL (not a redis:// URL, malformed) or TH_EUNSUPPORTED (rediss://), with
 * one sentence in @p err that never quotes the URL, so never shows the password.
 */
enum th_err th_redis_parse_url(const char *url, struct th_redis_url *out, char *err, size_t errlen);

/** Wipes the password, frees @p u's strings and zeroes it; @p u may be NULL. */
void th_redis_url_free(struct th_redis_url *u);

/** Keeps "<what>: <detail>" for th_store_last_error and logs it. @return @p rc. */
enum th_err th_redis_fail(struct th_store *st, enum th_err rc, const char *what, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

/** TH_EIO (with the reason kept) when @p st was opened read-only: nothing may be written. */
enum th_err th_redis_writable(struct th_store *st, const char *what);

/**
 * Runs @p script (EVALSHA, EVAL when the server does not know it) with no keys and @p argc
 * arguments (binary-safe, @p lens may be NULL for C strings), connecting first when needed.
 * @param[out] out the reply, freed by the caller with freeReplyObject
 * @return TH_OK; TH_EIO (unreachable, connection lost, script error) with last_error set.
 */
enum th_err th_redis_eval(struct th_store *st, const struct th_redis_script *script,
                          const char *what, size_t argc, const char *const *argv,
                          const size_t *lens, redisReply **out);

/** Runs one plain command (argv[0] is its name) like th_redis_eval. */
enum th_err th_redis_command(struct th_store *st, const char *what, size_t argc,
                             const char *const *argv, const size_t *lens, redisReply **out);

/** Element @p i of an array reply as a C string; NULL when missing, nil or not a string. */
const char *th_redis_elem_str(const redisReply *r, size_t i);

/** Element @p i of an array reply as an integer (an integer or a decimal string); @p def else. */
int64_t th_redis_elem_int(const redisReply *r, size_t i, int64_t def);

/** The Lua prelude every script starts with: key names and the outbox's row transitions. */
extern const char th_redis_lua_prelude[];

#endif
