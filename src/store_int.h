/* SPDX-License-Identifier: MIT */
/*
 * store_int.h -- what the three files of the SQLite store share: store.c (opening, schema and
 * migrations, the statement cache, transactions, accounts, housekeeping), store_alerts.c
 * (applying a request, alerts, rule errors) and store_outbox.c (the outbox). Not a public
 * interface.
 */
#ifndef TRAILHOOK_STORE_INT_H
#define TRAILHOOK_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "trailhook/err.h"
#include "trailhook/store.h"

/* Every statement the store runs; the SQL is in store.c, beside the schema it relies on. */
enum th_store_stmt {
    S_BEGIN,
    S_COMMIT,
    S_ACCOUNT_UPSERT,
    S_ACCOUNT_DELETE,
    S_ACCOUNT_CHECK,
    S_ACCOUNT_LIST,
    S_SEEN_GET,
    S_SEEN_PUT,
    S_WINDOW_GET,
    S_WINDOW_OPEN,
    S_WINDOW_SAVE,
    S_WINDOW_END,
    S_ALERT_CREATE,
    S_ALERT_DEST_PUT,
    S_ALERT_TOUCH,
    S_ALERT_GET,
    S_ALERT_RECENT,
    S_ALERT_OPEN_FIND,
    S_ALERT_RESOLVE,
    S_RULE_ERROR_PUT,
    S_RULE_ERROR_GET,
    S_OUTBOX_PUT,
    S_OUTBOX_PUT_RESOLVE,
    S_OUTBOX_DUE,
    S_OUTBOX_DONE,
    S_OUTBOX_RETRY,
    S_OUTBOX_DEAD,
    S_OUTBOX_COUNTS,
    S_OUTBOX_NEXT,
    S_OUTBOX_NEXT_DEST,
    S_OUTBOX_LIST,
    S_OUTBOX_STATE,
    S_OUTBOX_REQUEUE,
    S_OUTBOX_DROP,
    S_PRUNE_SEEN,
    S_PRUNE_ACCOUNTS,
    S_PRUNE_OUTBOX,
    S_PRUNE_WINDOWS,
    S_PROBE,
    S_COUNT
};

struct th_store {
    struct th_redis *redis; /* non-NULL: the Redis backend (store_redis.c); db is then unused */
    sqlite3 *db;
    sqlite3_stmt *stmts[S_COUNT]; /* prepared on first use, finalized by th_store_free */
    char last_error[256];
    int64_t busy_since_us; /* monotonic: when the current wait for the write lock began */
};

/* One bound parameter: text (NULL binds SQL NULL) or an integer. */
struct th_store_param {
    const char *text;
    int64_t num;
    bool is_text;
};

#define NPARAMS(a) (sizeof(a) / sizeof((a)[0]))

static inline struct th_store_param p_text(const char *v)
{
    struct th_store_param p = {.text = v, .num = 0, .is_text = true};

    return p;
}

static inline struct th_store_param p_int(int64_t v)
{
    struct th_store_param p = {.text = NULL, .num = v, .is_text = false};

    return p;
}

/* A size_t count as a LIMIT parameter. */
static inline struct th_store_param p_limit(size_t v)
{
    return p_int(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

/** Keeps the failure text for th_store_last_error, logs it. @return TH_ETEMP or TH_EIO. */
enum th_err th_store_db_fail(struct th_store *st, int rc, const char *what);

/** Resets a statement and clears its bindings (a statement mid-result holds a read snapshot). */
void th_store_stmt_finish(sqlite3_stmt *s);

/** Steps to the next row; unless *row comes back true the statement is reset. A caller that
 * stops reading early calls th_store_stmt_finish. */
enum th_err th_store_stmt_next(struct th_store *st, sqlite3_stmt *s, const char *what, bool *row);

/** Runs the cached statement @p id with @p p bound to ?1..?n up to its first row (see next).
 * @param[out] out the statement, borrowed from the handle's cache */
enum th_err th_store_stmt_query(struct th_store *st, enum th_store_stmt id,
                                const struct th_store_param *p, size_t n, const char *what,
                                sqlite3_stmt **out, bool *row);

/** Runs a statement whose rows, if any, do not matter. */
enum th_err th_store_stmt_exec(struct th_store *st, enum th_store_stmt id,
                               const struct th_store_param *p, size_t n, const char *what);

/** Runs a single-row update or delete. @return TH_ENOTFOUND when no row matched. */
enum th_err th_store_stmt_exec_one(struct th_store *st, enum th_store_stmt id,
                                   const struct th_store_param *p, size_t n, const char *what);

/** Reads every row into a new array, @p make building each element. @param[out] out new. */
enum th_err th_store_stmt_collect(struct th_store *st, enum th_store_stmt id,
                                  const struct th_store_param *p, size_t n,
                                  json_t *(*make)(sqlite3_stmt *), const char *what, json_t **out);

/** Reads the one row of a lookup by key. @param[out] out new. @return TH_ENOTFOUND. */
enum th_err th_store_stmt_get_one(struct th_store *st, enum th_store_stmt id,
                                  const struct th_store_param *p, size_t n,
                                  json_t *(*make)(sqlite3_stmt *), const char *what, json_t **out);

/** Column @p i as text, borrowed until the statement steps or resets; NULL for SQL NULL. */
const char *th_store_col_text(sqlite3_stmt *s, int i);

/** BEGIN IMMEDIATE: the write lock up front, so writers queue on the busy timeout. */
enum th_err th_store_tx_begin(struct th_store *st);
enum th_err th_store_tx_commit(struct th_store *st);
void th_store_tx_rollback(struct th_store *st);

/** Sets @p key of @p obj to @p ms as ISO 8601. */
void th_store_json_set_time(json_t *obj, const char *key, int64_t ms);

/** Sets @p key of @p obj to the text @p v, or null when @p v is NULL. */
void th_store_json_set_text(json_t *obj, const char *key, const char *v);

/** Queues one pending row of @p kind for each destination, due at @p now_ms (store_outbox.c).
 */
enum th_err th_store_outbox_put_all(struct th_store *st, const char *const *destinations, size_t n,
                                    enum th_outbox_kind kind, const char *ref, int64_t now_ms);

/* Whether a batch is well formed (store_alerts.c); both backends check it before writing. */
bool th_store_batch_ok(const struct th_store_batch *b, const struct th_store_match_result *results);

/* Formats an open error into the caller's buffer (either may be NULL/0); both backends. */
void th_store_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
