/* SPDX-License-Identifier: MIT */
/*
 * store_outbox.c -- the outbox of the SQLite store: rows queued by store_alerts.c in the
 * request's transaction, claimed by the deliverer per destination, marked delivered, retried
 * or parked as dead letters; listed, retried and dropped by operators.
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "trailhook/store.h"
#include "store_int.h"
#include "store_redis.h"

static const char *const kind_names[] = {
    [TH_OUTBOX_ALERT] = "alert",
    [TH_OUTBOX_RULE_ERROR] = "rule_error",
    [TH_OUTBOX_RESOLVE] = "resolve",
};

enum th_err th_store_outbox_put_all(struct th_store *st, const char *const *destinations, size_t n,
                                    enum th_outbox_kind kind, const char *ref, int64_t now_ms)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < n && rc == TH_OK; i++) {
        const struct th_store_param p[] = {p_text(destinations[i]), p_int(kind), p_text(ref),
                                           p_int(now_ms)};
        rc = th_store_stmt_exec(st, S_OUTBOX_PUT, p, NPARAMS(p), "queue delivery");
    }
    return rc;
}

/* ---- delivery --------------------------------------------------------------------------- */

static void outbox_row_read(sqlite3_stmt *s, struct th_outbox_row *row)
{
    const char *dest = th_store_col_text(s, 1);
    const char *ref = th_store_col_text(s, 3);

    memset(row, 0, sizeof(*row));
    row->id = sqlite3_column_int64(s, 0);
    snprintf(row->destination, sizeof(row->destination), "%s", dest == NULL ? "" : dest);
    row->kind = (enum th_outbox_kind)sqlite3_column_int(s, 2);
    snprintf(row->ref, sizeof(row->ref), "%s", ref == NULL ? "" : ref);
    row->attempts = sqlite3_column_int(s, 4);
    row->created_ms = sqlite3_column_int64(s, 5);
    row->next_attempt_ms = sqlite3_column_int64(s, 6);
}

enum th_err th_store_outbox_due(struct th_store *st, const char *destination, int64_t now_ms,
                                struct th_outbox_row *rows, size_t max, size_t *n)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_due(st, destination, now_ms, rows, max, n);
    }
    const struct th_store_param p[] = {p_text(destination), p_int(now_ms), p_limit(max)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc;

    if (st == NULL || destination == NULL || n == NULL || (max > 0 && rows == NULL)) {
        return TH_EINVAL;
    }
    *n = 0;
    if (max == 0) {
        return TH_OK;
    }
    rc = th_store_stmt_query(st, S_OUTBOX_DUE, p, NPARAMS(p), "read due deliveries", &s, &row);
    while (rc == TH_OK && row && *n < max) {
        outbox_row_read(s, &rows[(*n)++]);
        rc = th_store_stmt_next(st, s, "read due deliveries", &row);
    }
    if (rc == TH_OK && row) {
        th_store_stmt_finish(s);
    }
    if (rc != TH_OK) {
        *n = 0;
    }
    return rc;
}

bool th_store_outbox_takes_rows(const struct th_store *st)
{
    return st != NULL && st->redis != NULL;
}

enum th_err th_store_outbox_done(struct th_store *st, int64_t id, int64_t now_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_done(st, id, now_ms);
    }
    const struct th_store_param p[] = {p_int(id), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return th_store_stmt_exec_one(st, S_OUTBOX_DONE, p, NPARAMS(p), "mark delivered");
}

enum th_err th_store_outbox_retry(struct th_store *st, int64_t id, int64_t next_ms,
                                  const char *error, int64_t now_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_retry(st, id, next_ms, error, now_ms);
    }
    const struct th_store_param p[] = {p_int(id), p_int(next_ms), p_text(error), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return th_store_stmt_exec_one(st, S_OUTBOX_RETRY, p, NPARAMS(p), "schedule retry");
}

enum th_err th_store_outbox_dead(struct th_store *st, int64_t id, const char *error, int64_t now_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_dead(st, id, error, now_ms);
    }
    const struct th_store_param p[] = {p_int(id), p_text(error), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return th_store_stmt_exec_one(st, S_OUTBOX_DEAD, p, NPARAMS(p), "park dead letter");
}

enum th_err th_store_outbox_counts(struct th_store *st, const char *destination, size_t *pending,
                                   size_t *dead)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_counts(st, destination, pending, dead);
    }
    const struct th_store_param p[] = {p_text(destination)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc;

    if (st == NULL || pending == NULL || dead == NULL) {
        return TH_EINVAL;
    }
    *pending = 0;
    *dead = 0;
    rc = th_store_stmt_query(st, S_OUTBOX_COUNTS, p, NPARAMS(p), "count deliveries", &s, &row);
    if (rc == TH_OK && row) {
        *pending = (size_t)sqlite3_column_int64(s, 0);
        *dead = (size_t)sqlite3_column_int64(s, 1);
        th_store_stmt_finish(s);
    }
    return rc;
}

enum th_err th_store_outbox_next_due(struct th_store *st, const char *destination, int64_t *next_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_next_due(st, destination, next_ms);
    }
    const struct th_store_param p[] = {p_text(destination)};
    enum th_store_stmt id = destination == NULL ? S_OUTBOX_NEXT : S_OUTBOX_NEXT_DEST;
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc;

    if (st == NULL || next_ms == NULL) {
        return TH_EINVAL;
    }
    *next_ms = INT64_MAX;
    rc = th_store_stmt_query(st, id, p, destination == NULL ? 0 : NPARAMS(p), "find next delivery",
                             &s, &row);
    if (rc == TH_OK && row) {
        if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
            *next_ms = sqlite3_column_int64(s, 0);
        }
        th_store_stmt_finish(s);
    }
    return rc;
}

/* ---- operators -------------------------------------------------------------------------- */

static const char *kind_name(int kind)
{
    if (kind < 0 || (size_t)kind >= NPARAMS(kind_names) || kind_names[kind] == NULL) {
        return "unknown";
    }
    return kind_names[kind];
}

/* A retry time means something only while the row waits; an error only once one happened. */
static json_t *outbox_json(sqlite3_stmt *s)
{
    const char *state = th_store_col_text(s, 4);
    json_t *obj = json_object();

    json_object_set_new(obj, "id", json_integer(sqlite3_column_int64(s, 0)));
    th_store_json_set_text(obj, "destination", th_store_col_text(s, 1));
    th_store_json_set_text(obj, "kind", kind_name(sqlite3_column_int(s, 2)));
    th_store_json_set_text(obj, "ref", th_store_col_text(s, 3));
    th_store_json_set_text(obj, "state", state);
    json_object_set_new(obj, "attempts", json_integer(sqlite3_column_int64(s, 5)));
    th_store_json_set_time(obj, "created_at", sqlite3_column_int64(s, 6));
    if (state != NULL && strcmp(state, "pending") == 0) {
        th_store_json_set_time(obj, "next_attempt_at", sqlite3_column_int64(s, 7));
    } else {
        json_object_set_new(obj, "next_attempt_at", json_null());
    }
    th_store_json_set_time(obj, "updated_at", sqlite3_column_int64(s, 8));
    th_store_json_set_text(obj, "last_error", th_store_col_text(s, 9));
    return obj;
}

static bool state_ok(const char *state)
{
    return state == NULL || strcmp(state, "pending") == 0 || strcmp(state, "dead") == 0 ||
           strcmp(state, "done") == 0;
}

enum th_err th_store_outbox_list(struct th_store *st, const char *destination, const char *state,
                                 size_t limit, json_t **out)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_list(st, destination, state, limit, out);
    }
    const struct th_store_param p[] = {p_text(destination), p_text(state), p_limit(limit)};

    if (st == NULL || out == NULL || !state_ok(state)) {
        return TH_EINVAL;
    }
    *out = NULL;
    return th_store_stmt_collect(st, S_OUTBOX_LIST, p, NPARAMS(p), outbox_json, "list deliveries",
                                 out);
}

/* Runs @p id, which acts only on a dead letter: TH_ENOTFOUND when there is no row @p row_id,
 * TH_EINVAL when it is not dead. */
static enum th_err on_dead_letter(struct th_store *st, enum th_store_stmt id,
                                  const struct th_store_param *p, size_t n, int64_t row_id,
                                  const char *what)
{
    const struct th_store_param key[] = {p_int(row_id)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = th_store_stmt_exec_one(st, id, p, n, what);

    if (rc != TH_ENOTFOUND) {
        return rc;
    }
    rc = th_store_stmt_query(st, S_OUTBOX_STATE, key, NPARAMS(key), what, &s, &row);
    if (rc == TH_OK && row) {
        th_store_stmt_finish(s);
        return TH_EINVAL;
    }
    return rc == TH_OK ? TH_ENOTFOUND : rc;
}

enum th_err th_store_outbox_requeue(struct th_store *st, int64_t id, int64_t now_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_requeue(st, id, now_ms);
    }
    const struct th_store_param p[] = {p_int(id), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return on_dead_letter(st, S_OUTBOX_REQUEUE, p, NPARAMS(p), id, "requeue dead letter");
}

enum th_err th_store_outbox_drop(struct th_store *st, int64_t id)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_outbox_drop(st, id);
    }
    const struct th_store_param p[] = {p_int(id)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return on_dead_letter(st, S_OUTBOX_DROP, p, NPARAMS(p), id, "drop dead letter");
}
