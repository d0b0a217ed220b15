/* SPDX-License-Identifier: MIT */
/*
 * store_alerts.c -- applying one request's effects to the SQLite store in one transaction:
 * seen event IDs, dedup windows, alerts and their outbox rows, resolutions, rule errors; and
 * reading alerts and rule-error records back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "trailhook/hash.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"
#include "store_int.h"
#include "store_redis.h"

#define MS_PER_MINUTE ((int64_t)60 * 1000)
#define ALERT_ID_LEN  32

/* A dedup window as read (or just opened) inside an apply transaction. */
struct window {
    int64_t start_ms;
    int64_t count;
    char alert_id[ALERT_ID_LEN + 1]; /* "" while below threshold */
};

/* An empty alert id means "none yet" in C and NULL in the database (a foreign key). */
static const char *alert_ref(const char *id)
{
    return id[0] == '\0' ? NULL : id;
}

/* ---- seen event IDs and dedup windows --------------------------------------------------- */

/* Looks the event ID up; when seen, copies the alert it counted toward ("" if none). */
static enum th_err seen_get(struct th_store *st, const char *event_id, bool *seen,
                            char alert_id[ALERT_ID_LEN + 1])
{
    const struct th_store_param p[] = {p_text(event_id)};
    sqlite3_stmt *s = NULL;
    enum th_err rc =
        th_store_stmt_query(st, S_SEEN_GET, p, NPARAMS(p), "look up event id", &s, seen);

    if (rc == TH_OK && *seen) {
        if (th_store_col_text(s, 0) != NULL) {
            snprintf(alert_id, ALERT_ID_LEN + 1, "%s", th_store_col_text(s, 0));
        }
        th_store_stmt_finish(s);
    }
    return rc;
}

static enum th_err seen_put(struct th_store *st, const char *event_id, const char *alert_id,
                            int64_t now_ms)
{
    const struct th_store_param p[] = {p_text(event_id), p_text(alert_ref(alert_id)),
                                       p_int(now_ms)};

    return th_store_stmt_exec(st, S_SEEN_PUT, p, NPARAMS(p), "remember event id");
}

/* Opens a fresh window at now_ms holding this event's document, replacing an ended one.
 * @p prev_start_ms is the start of the window it replaces, or INT64_MIN. */
static enum th_err window_open(struct th_store *st, const struct th_store_match *m, int64_t now_ms,
                               int64_t prev_start_ms, struct window *w)
{
    /* The alert id derives from the start, so a window that follows one a resolution ended in
     * the same millisecond must start later or it would name the resolved alert again. */
    int64_t start_ms = now_ms > prev_start_ms ? now_ms : prev_start_ms + 1;
    int64_t end_ms = start_ms + (int64_t)m->dedup_period_minutes * MS_PER_MINUTE;
    char *doc =
        m->doc == NULL ? th_xstrdup("{}") : json_dumps(m->doc, JSON_COMPACT | JSON_ENCODE_ANY);
    const struct th_store_param p[] = {p_text(m->rule_id), p_text(m->dedup_key),    p_int(start_ms),
                                       p_int(end_ms),      p_int(m->event_time_ms), p_text(doc)};
    enum th_err rc = TH_ENOMEM;

    if (doc != NULL) {
        rc = th_store_stmt_exec(st, S_WINDOW_OPEN, p, NPARAMS(p), "open dedup window");
    }
    free(doc);
    memset(w, 0, sizeof(*w));
    w->start_ms = start_ms;
    return rc;
}

/* Loads the current window of the match's key, opening a new one when none is current: none
 * yet, past its end, or ended by a resolution (its end not after its start, S_WINDOW_END). */
static enum th_err window_current(struct th_store *st, const struct th_store_match *m,
                                  int64_t now_ms, struct window *w)
{
    const struct th_store_param p[] = {p_text(m->rule_id), p_text(m->dedup_key)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    int64_t start_ms;
    int64_t end_ms;
    enum th_err rc =
        th_store_stmt_query(st, S_WINDOW_GET, p, NPARAMS(p), "read dedup window", &s, &row);

    if (rc != TH_OK) {
        return rc;
    }
    if (!row) {
        return window_open(st, m, now_ms, INT64_MIN, w);
    }
    start_ms = sqlite3_column_int64(s, 0);
    end_ms = sqlite3_column_int64(s, 1);
    if (now_ms >= end_ms || end_ms <= start_ms) {
        th_store_stmt_finish(s);
        return window_open(st, m, now_ms, start_ms, w);
    }
    memset(w, 0, sizeof(*w));
    w->start_ms = start_ms;
    w->count = sqlite3_column_int64(s, 2);
    if (th_store_col_text(s, 3) != NULL) {
        snprintf(w->alert_id, sizeof(w->alert_id), "%s", th_store_col_text(s, 3));
    }
    th_store_stmt_finish(s);
    return TH_OK;
}

/* ---- matches ---------------------------------------------------------------------------- */

/* The id is a pure function of rule, key and window start, so replicas that open the same
 * window independently name the same alert (and PagerDuty dedups on it). */
static void alert_id_make(const struct th_store_match *m, int64_t window_start_ms,
                          char out[ALERT_ID_LEN + 1])
{
    unsigned char digest[TH_SHA256_LEN];
    char *material =
        th_xasprintf("%s\n%s\n%lld", m->rule_id, m->dedup_key, (long long)window_start_ms);

    th_sha256(material, strlen(material), digest);
    th_hex(digest, ALERT_ID_LEN / 2, out);
    free(material);
}

/* Queues the alert for each destination and remembers where it went, for its resolution. */
static enum th_err alert_fan_out(struct th_store *st, const struct th_store_match *m,
                                 const char *id, int64_t now_ms)
{
    enum th_err rc =
        th_store_outbox_put_all(st, m->destinations, m->ndestinations, TH_OUTBOX_ALERT, id, now_ms);

    for (size_t i = 0; i < m->ndestinations && rc == TH_OK; i++) {
        const struct th_store_param p[] = {p_text(id), p_text(m->destinations[i])};
        rc = th_store_stmt_exec(st, S_ALERT_DEST_PUT, p, NPARAMS(p), "record alert destination");
    }
    return rc;
}

static enum th_err alert_create(struct th_store *st, const struct th_store_match *m,
                                struct window *w, int64_t now_ms)
{
    char id[ALERT_ID_LEN + 1];
    enum th_err rc;

    alert_id_make(m, w->start_ms, id);
    const struct th_store_param p[] = {
        p_text(id),          p_text(m->rule_id), p_text(m->dedup_key),    p_text(m->title),
        p_text(m->severity), p_int(w->count),    p_int(m->event_time_ms), p_int(now_ms)};
    rc = th_store_stmt_exec(st, S_ALERT_CREATE, p, NPARAMS(p), "create alert");
    if (rc == TH_OK) {
        rc = alert_fan_out(st, m, id, now_ms);
    }
    if (rc == TH_OK) {
        memcpy(w->alert_id, id, sizeof(w->alert_id));
    }
    return rc;
}

/* Counts the event in its window: creates the alert at the threshold, updates it after. */
static enum th_err window_count(struct th_store *st, const struct th_store_match *m,
                                struct window *w, int64_t now_ms, bool *new_alert)
{
    enum th_err rc = TH_OK;

    w->count++;
    if (w->alert_id[0] == '\0' && w->count >= m->threshold) {
        rc = alert_create(st, m, w, now_ms);
        *new_alert = rc == TH_OK;
    } else if (w->alert_id[0] != '\0') {
        const struct th_store_param p[] = {p_text(w->alert_id), p_int(w->count),
                                           p_int(m->event_time_ms), p_int(now_ms)};
        rc = th_store_stmt_exec(st, S_ALERT_TOUCH, p, NPARAMS(p), "update alert");
    }
    if (rc == TH_OK) {
        const struct th_store_param p[] = {p_text(m->rule_id), p_text(m->dedup_key),
                                           p_int(w->count), p_text(alert_ref(w->alert_id))};
        rc = th_store_stmt_exec(st, S_WINDOW_SAVE, p, NPARAMS(p), "update dedup window");
    }
    return rc;
}

static enum th_err apply_match(struct th_store *st, const struct th_store_match *m, int64_t now_ms,
                               struct th_store_match_result *res)
{
    struct window w;
    bool seen = false;
    enum th_err rc = TH_OK;

    memset(res, 0, sizeof(*res));
    if (m->event_id != NULL) {
        rc = seen_get(st, m->event_id, &seen, res->alert_id);
    }
    if (rc != TH_OK || seen) {
        res->duplicate = seen;
        return rc;
    }
    rc = window_current(st, m, now_ms, &w);
    if (rc == TH_OK) {
        rc = window_count(st, m, &w, now_ms, &res->new_alert);
    }
    if (rc == TH_OK && m->event_id != NULL) {
        rc = seen_put(st, m->event_id, w.alert_id, now_ms);
    }
    if (rc == TH_OK) {
        memcpy(res->alert_id, w.alert_id, sizeof(res->alert_id));
    }
    return rc;
}

/* ---- resolutions ------------------------------------------------------------------------ */

/* The newest open alert of the key: the current window's, or one an earlier window left open.
 * A revocation older than the alert's latest exposure (a late delivery, a backfill out of order)
 * takes nothing back: the image was made public again after it.
 * @param[out] id "" when there is none */
static enum th_err alert_open_find(struct th_store *st, const struct th_store_resolution *r,
                                   char id[ALERT_ID_LEN + 1])
{
    const struct th_store_param p[] = {p_text(r->rule_id), p_text(r->dedup_key)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc =
        th_store_stmt_query(st, S_ALERT_OPEN_FIND, p, NPARAMS(p), "find open alert", &s, &row);

    id[0] = '\0';
    if (rc == TH_OK && row) {
        bool later = r->event_time_ms >= sqlite3_column_int64(s, 1);
        if (later && th_store_col_text(s, 0) != NULL) {
            snprintf(id, ALERT_ID_LEN + 1, "%s", th_store_col_text(s, 0));
        }
        th_store_stmt_finish(s);
    }
    return rc;
}

/* Resolves the alert, ends its key's window so that the next exposure opens a new alert, and
 * tells every destination the alert was meant for. A destination whose ALERT row is still
 * pending gets that first: a destination's rows go out oldest first. */
static enum th_err alert_resolve(struct th_store *st, const struct th_store_resolution *r,
                                 const char *id, int64_t now_ms)
{
    const struct th_store_param resolve[] = {p_text(id), p_int(r->event_time_ms), p_int(now_ms)};
    const struct th_store_param key[] = {p_text(r->rule_id), p_text(r->dedup_key)};
    const struct th_store_param fan[] = {p_text(id), p_int(TH_OUTBOX_RESOLVE), p_int(now_ms)};
    enum th_err rc =
        th_store_stmt_exec(st, S_ALERT_RESOLVE, resolve, NPARAMS(resolve), "resolve alert");

    if (rc == TH_OK) {
        rc = th_store_stmt_exec(st, S_WINDOW_END, key, NPARAMS(key), "end dedup window");
    }
    if (rc == TH_OK) {
        rc = th_store_stmt_exec(st, S_OUTBOX_PUT_RESOLVE, fan, NPARAMS(fan), "queue resolve");
    }
    return rc;
}

/* A resolution's event ID is remembered apart from the matches' ("resolve" + LF + ID): an
 * exposure must never count as a duplicate of a revocation that happened to carry its ID (the
 * placeholder IDs of sample data do), or its alert would be lost. */
static enum th_err apply_resolution(struct th_store *st, const struct th_store_resolution *r,
                                    int64_t now_ms)
{
    char id[ALERT_ID_LEN + 1] = "";
    char *seen_key = r->event_id == NULL ? NULL : th_xasprintf("resolve\n%s", r->event_id);
    bool seen = false;
    enum th_err rc = TH_OK;

    if (seen_key != NULL) {
        rc = seen_get(st, seen_key, &seen, id);
    }
    if (rc == TH_OK && !seen) {
        rc = alert_open_find(st, r, id);
        if (rc == TH_OK && id[0] != '\0') {
            rc = alert_resolve(st, r, id, now_ms);
        }
        if (rc == TH_OK && seen_key != NULL) {
            rc = seen_put(st, seen_key, id, now_ms);
        }
    }
    free(seen_key);
    return rc;
}

/* ---- rule errors and the whole batch ---------------------------------------------------- */

static enum th_err apply_rule_error(struct th_store *st, const struct th_store_rule_error *re,
                                    int64_t now_ms)
{
    char *event = re->event == NULL ? NULL : json_dumps(re->event, JSON_COMPACT | JSON_ENCODE_ANY);
    const struct th_store_param p[] = {p_text(re->rule_id), p_text(re->event_id), p_text(re->error),
                                       p_text(event), p_int(now_ms)};
    char ref[24];
    enum th_err rc = th_store_stmt_exec(st, S_RULE_ERROR_PUT, p, NPARAMS(p), "record rule error");

    free(event);
    if (rc == TH_OK) {
        snprintf(ref, sizeof(ref), "%lld", (long long)sqlite3_last_insert_rowid(st->db));
        rc = th_store_outbox_put_all(st, re->destinations, re->ndestinations, TH_OUTBOX_RULE_ERROR,
                                     ref, now_ms);
    }
    return rc;
}

/* Destination names must fit th_outbox_row.destination, or a row could never be claimed. */
static bool destinations_ok(const char *const *d, size_t n)
{
    if (n > 0 && d == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (d[i] == NULL || d[i][0] == '\0' ||
            strlen(d[i]) >= sizeof(((struct th_outbox_row *)NULL)->destination)) {
            return false;
        }
    }
    return true;
}

static bool match_ok(const struct th_store_match *m)
{
    return m->rule_id != NULL && m->dedup_key != NULL && m->threshold >= 1 &&
           m->dedup_period_minutes >= 1 && destinations_ok(m->destinations, m->ndestinations);
}

static bool arrays_ok(const struct th_store_batch *b, const struct th_store_match_result *results)
{
    return !(b->nmatches > 0 && (b->matches == NULL || results == NULL)) &&
           !(b->nrule_errors > 0 && b->rule_errors == NULL) &&
           !(b->naccounts > 0 && b->accounts == NULL) &&
           !(b->nresolutions > 0 && b->resolutions == NULL);
}

/* Refuses a malformed batch before anything is written, so a bad caller never half-applies
 * (both backends). */
bool th_store_batch_ok(const struct th_store_batch *b, const struct th_store_match_result *results)
{
    if (!arrays_ok(b, results)) {
        return false;
    }
    for (size_t i = 0; i < b->naccounts; i++) {
        if (b->accounts[i].account_id == NULL) {
            return false;
        }
    }
    for (size_t i = 0; i < b->nmatches; i++) {
        if (!match_ok(&b->matches[i])) {
            return false;
        }
    }
    for (size_t i = 0; i < b->nresolutions; i++) {
        if (b->resolutions[i].rule_id == NULL || b->resolutions[i].dedup_key == NULL) {
            return false;
        }
    }
    for (size_t i = 0; i < b->nrule_errors; i++) {
        const struct th_store_rule_error *re = &b->rule_errors[i];
        if (re->rule_id == NULL || re->error == NULL ||
            !destinations_ok(re->destinations, re->ndestinations)) {
            return false;
        }
    }
    return true;
}

/* Resolutions come after the matches: one in the same request as the exposure it takes back
 * resolves the alert that exposure just opened. */
static enum th_err apply_all(struct th_store *st, const struct th_store_batch *b, int64_t now_ms,
                             struct th_store_match_result *results)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < b->naccounts && rc == TH_OK; i++) {
        rc = th_store_account_add(st, b->accounts[i].account_id, b->accounts[i].expires_ms,
                                  "learned", now_ms);
    }
    for (size_t i = 0; i < b->nmatches && rc == TH_OK; i++) {
        rc = apply_match(st, &b->matches[i], now_ms, &results[i]);
    }
    for (size_t i = 0; i < b->nresolutions && rc == TH_OK; i++) {
        rc = apply_resolution(st, &b->resolutions[i], now_ms);
    }
    for (size_t i = 0; i < b->nrule_errors && rc == TH_OK; i++) {
        rc = apply_rule_error(st, &b->rule_errors[i], now_ms);
    }
    return rc;
}

void th_store_apply_group(struct th_store *st, const struct th_store_batch *batches, size_t n,
                          int64_t now_ms, struct th_store_match_result *const *results,
                          enum th_err *rcs)
{
    enum th_err rc = TH_OK;
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        bool ok = st != NULL && th_store_batch_ok(&batches[i], results[i]);
        rcs[i] = ok ? TH_OK : TH_EINVAL;
        any = any || ok;
    }
    if (st != NULL && st->redis != NULL) {
        for (size_t i = 0; i < n; i++) { /* each batch is one script, atomic by itself */
            if (rcs[i] == TH_OK) {
                rcs[i] = th_store_redis_apply(st, &batches[i], now_ms, results[i]);
            }
        }
        return;
    }
    if (!any) {
        return;
    }
    /* One transaction, one fsync, for every batch: under load a worker takes what waited while
     * it was committing, so requests share the disk's flushes instead of queueing for them.
     * IMMEDIATE takes the write lock up front: two writers never both read a window and then
     * fail to upgrade, they queue on the busy timeout instead. */
    rc = th_store_tx_begin(st);
    for (size_t i = 0; rc == TH_OK && i < n; i++) {
        if (rcs[i] == TH_OK) {
            rc = apply_all(st, &batches[i], now_ms, results[i]);
        }
    }
    if (rc == TH_OK) {
        rc = th_store_tx_commit(st);
    }
    if (rc != TH_OK) {
        th_store_tx_rollback(st);
    }
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == TH_OK && rc != TH_OK) {
            rcs[i] = rc;
            if (batches[i].nmatches > 0) { /* nothing was applied: no result may say otherwise */
                memset(results[i], 0, batches[i].nmatches * sizeof(*results[i]));
            }
        }
    }
}

enum th_err th_store_apply(struct th_store *st, const struct th_store_batch *batch, int64_t now_ms,
                           struct th_store_match_result *results)
{
    enum th_err rc = TH_EINVAL;
    if (batch != NULL) {
        th_store_apply_group(st, batch, 1, now_ms, &results, &rc);
    }
    return rc;
}

/* ---- reading alerts and rule errors ----------------------------------------------------- */

/* The stored document with the columns laid over it: the database, not the document, is the
 * truth for count, status and times. */
static json_t *alert_json(sqlite3_stmt *s)
{
    const char *doc = th_store_col_text(s, 9);
    json_t *stored = doc == NULL ? NULL : json_loads(doc, 0, NULL);
    /* Identity first, so a person reading a console line sees what the alert is at once. */
    json_t *obj = json_object();

    th_store_json_set_text(obj, "id", th_store_col_text(s, 0));
    th_store_json_set_text(obj, "rule", th_store_col_text(s, 1));
    th_store_json_set_text(obj, "dedup_key", th_store_col_text(s, 2));
    th_store_json_set_text(obj, "status", th_store_col_text(s, 3));
    json_object_set_new(obj, "event_count", json_integer(sqlite3_column_int64(s, 4)));
    th_store_json_set_time(obj, "first_seen", sqlite3_column_int64(s, 5));
    th_store_json_set_time(obj, "last_seen", sqlite3_column_int64(s, 6));
    th_store_json_set_time(obj, "created_at", sqlite3_column_int64(s, 7));
    th_store_json_set_time(obj, "updated_at", sqlite3_column_int64(s, 8));
    if (sqlite3_column_type(s, 10) != SQLITE_NULL) {
        th_store_json_set_time(obj, "resolved_at", sqlite3_column_int64(s, 10));
    }
    if (json_is_object(stored)) {
        json_object_update_missing(obj, stored);
    }
    json_decref(stored);
    return obj;
}

enum th_err th_store_alert_get(struct th_store *st, const char *alert_id, json_t **out)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_alert_get(st, alert_id, out);
    }
    const struct th_store_param p[] = {p_text(alert_id)};

    if (st == NULL || alert_id == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return th_store_stmt_get_one(st, S_ALERT_GET, p, NPARAMS(p), alert_json, "read alert", out);
}

enum th_err th_store_alerts_recent(struct th_store *st, size_t limit, json_t **out)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_alerts_recent(st, limit, out);
    }
    const struct th_store_param p[] = {p_limit(limit)};

    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return th_store_stmt_collect(st, S_ALERT_RECENT, p, NPARAMS(p), alert_json, "list alerts", out);
}

static json_t *rule_error_json(sqlite3_stmt *s)
{
    const char *event = th_store_col_text(s, 4);
    json_t *ev = event == NULL ? NULL : json_loads(event, JSON_DECODE_ANY, NULL);
    json_t *obj = json_object();

    json_object_set_new(obj, "id", json_integer(sqlite3_column_int64(s, 0)));
    th_store_json_set_text(obj, "rule", th_store_col_text(s, 1));
    th_store_json_set_text(obj, "event_id", th_store_col_text(s, 2));
    th_store_json_set_text(obj, "error", th_store_col_text(s, 3));
    json_object_set_new(obj, "event", ev == NULL ? json_null() : ev);
    th_store_json_set_time(obj, "created_at", sqlite3_column_int64(s, 5));
    return obj;
}

enum th_err th_store_rule_error_get(struct th_store *st, int64_t id, json_t **out)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_rule_error_get(st, id, out);
    }
    const struct th_store_param p[] = {p_int(id)};

    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return th_store_stmt_get_one(st, S_RULE_ERROR_GET, p, NPARAMS(p), rule_error_json,
                                 "read rule error", out);
}
