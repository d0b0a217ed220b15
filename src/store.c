/* SPDX-License-Identifier: MIT */
/*
 * store.c -- the SQLite backend of the durable store: one WAL database under state_dir holding
 * alerts, dedup windows, seen event IDs, the new-account set, rule errors and the outbox.
 * This file opens and migrates the database and owns the statement cache, transactions, the
 * account set and housekeeping; store_alerts.c applies requests, store_outbox.c drains.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "trailhook/clock.h"
#include "trailhook/config.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"
#include "store_int.h"
#include "store_redis.h"

#define BUSY_TIMEOUT_MS 5000
#define MS_PER_MINUTE   ((int64_t)60 * 1000)
#define MS_PER_DAY      ((int64_t)24 * 60 * MS_PER_MINUTE)
#define DONE_KEEP_MS    (7 * MS_PER_DAY)

/* Version 1, as first shipped: never edit it, add a migration below. Every statement is
 * idempotent, so re-running it over a partial schema is harmless. */
static const char schema_v1_sql[] =
    "CREATE TABLE IF NOT EXISTS alerts ("
    " id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, dedup_key TEXT NOT NULL, title TEXT,"
    " severity TEXT, status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),"
    " event_count INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL,"
    " last_seen_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS alerts_created ON alerts (created_ms);"
    "CREATE TABLE IF NOT EXISTS windows ("
    " rule_id TEXT NOT NULL, dedup_key TEXT NOT NULL, window_start_ms INTEGER NOT NULL,"
    " window_end_ms INTEGER NOT NULL, count INTEGER NOT NULL,"
    " alert_id TEXT REFERENCES alerts (id), first_event_ms INTEGER NOT NULL, doc TEXT NOT NULL,"
    " PRIMARY KEY (rule_id, dedup_key));"
    "CREATE TABLE IF NOT EXISTS seen_events ("
    " event_id TEXT PRIMARY KEY, alert_id TEXT REFERENCES alerts (id),"
    " seen_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS seen_events_seen ON seen_events (seen_ms);"
    "CREATE TABLE IF NOT EXISTS accounts ("
    " account_id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL, source TEXT NOT NULL,"
    " added_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rule_errors ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, rule_id TEXT NOT NULL, event_id TEXT,"
    " error TEXT NOT NULL, event TEXT, created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL, kind INTEGER NOT NULL,"
    " ref TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),"
    " attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
    " next_attempt_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (destination, state, next_attempt_ms);"
    /* Written and rolled back by th_store_check_writable; never holds a row. */
    "CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, checked_ms INTEGER NOT NULL);";

/* Version 2: resolutions (DESIGN §5). alert_destinations remembers where each alert was to be
 * sent for as long as the alert exists: delivered outbox rows are pruned after a week, and an
 * exposure may be taken back later than that, yet PagerDuty must still hear the resolve.
 * It is filled from the outbox for alerts that predate it. */
static const char schema_v2_sql[] =
    "ALTER TABLE alerts ADD COLUMN resolved_ms INTEGER;"
    "CREATE INDEX IF NOT EXISTS alerts_key ON alerts (rule_id, dedup_key, created_ms);"
    "CREATE TABLE IF NOT EXISTS alert_destinations ("
    " alert_id TEXT NOT NULL REFERENCES alerts (id), destination TEXT NOT NULL,"
    " PRIMARY KEY (alert_id, destination)) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO alert_destinations (alert_id, destination)"
    " SELECT DISTINCT ref, destination FROM outbox"
    " WHERE kind = 0 AND ref IN (SELECT id FROM alerts);";

/* migrations[v] takes a database from user_version v to v + 1; a new database runs them all.
 * They run inside migrate()'s BEGIN IMMEDIATE, after it read the version: of two processes
 * migrating at once the second waits, then finds nothing to do. That is what makes the
 * ALTER TABLE of version 2, which cannot run twice, safe. */
static const char *const migrations[] = {schema_v1_sql, schema_v2_sql};

#define SCHEMA_VERSION ((int)NPARAMS(migrations))

#define ALERT_COLUMNS                                                                              \
    "id, rule_id, dedup_key, status, event_count, first_seen_ms, last_seen_ms, created_ms,"        \
    " updated_ms, doc, resolved_ms"

#define OUTBOX_COLUMNS                                                                             \
    "id, destination, kind, ref, state, attempts, created_ms, next_attempt_ms, updated_ms,"        \
    " last_error"

/*
 * A resolve (kind 2) waits while its alert's trigger (kind 0) to the same destination is still
 * pending: PagerDuty must never get "resolve" before the "trigger" it closes, or the trigger
 * would open an incident nothing resolves.
 */
#define NOT_BLOCKED                                                                                \
    "NOT (outbox.kind = 2 AND EXISTS (SELECT 1 FROM outbox a WHERE a.destination ="                \
    " outbox.destination AND a.ref = outbox.ref AND a.kind = 0 AND a.state = 'pending'))"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    /* The later expiry wins and brings its source; added_ms stays the first sighting. */
    [S_ACCOUNT_UPSERT] = "INSERT INTO accounts (account_id, expires_ms, source, added_ms)"
                         " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (account_id) DO UPDATE SET"
                         " source = CASE WHEN excluded.expires_ms > expires_ms"
                         " THEN excluded.source ELSE source END,"
                         " expires_ms = MAX(expires_ms, excluded.expires_ms)",
    [S_ACCOUNT_DELETE] = "DELETE FROM accounts WHERE account_id = ?1",
    [S_ACCOUNT_CHECK] = "SELECT 1 FROM accounts WHERE account_id = ?1 AND expires_ms > ?2",
    [S_ACCOUNT_LIST] = "SELECT account_id, expires_ms, source, added_ms FROM accounts"
                       " ORDER BY account_id",
    [S_SEEN_GET] = "SELECT alert_id FROM seen_events WHERE event_id = ?1",
    [S_SEEN_PUT] = "INSERT INTO seen_events (event_id, alert_id, seen_ms) VALUES (?1, ?2, ?3)",
    [S_WINDOW_GET] = "SELECT window_start_ms, window_end_ms, count, alert_id FROM windows"
                     " WHERE rule_id = ?1 AND dedup_key = ?2",
    [S_WINDOW_OPEN] = "INSERT INTO windows (rule_id, dedup_key, window_start_ms, window_end_ms,"
                      " count, alert_id, first_event_ms, doc)"
                      " VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5, ?6)"
                      " ON CONFLICT (rule_id, dedup_key) DO UPDATE SET"
                      " window_start_ms = excluded.window_start_ms,"
                      " window_end_ms = excluded.window_end_ms, count = 0, alert_id = NULL,"
                      " first_event_ms = excluded.first_event_ms, doc = excluded.doc",
    [S_WINDOW_SAVE] = "UPDATE windows SET count = ?3, alert_id = ?4"
                      " WHERE rule_id = ?1 AND dedup_key = ?2",
    /* An end that is not after the start marks a window a resolution ended (a real window
     * lasts at least a minute); store_alerts.c never counts into it again. */
    [S_WINDOW_END] = "UPDATE windows SET window_end_ms = window_start_ms"
                     " WHERE rule_id = ?1 AND dedup_key = ?2",
    /* The document comes from the window: with a threshold above 1 the alert shows the event
     * that opened the window, not the one that happened to reach the threshold. */
    [S_ALERT_CREATE] = "INSERT INTO alerts (id, rule_id, dedup_key, title, severity, status,"
                       " event_count, first_seen_ms, last_seen_ms, created_ms, updated_ms, doc)"
                       " SELECT ?1, rule_id, dedup_key, ?4, ?5, 'open', ?6,"
                       " MIN(first_event_ms, ?7), MAX(first_event_ms, ?7), ?8, ?8, doc"
                       " FROM windows WHERE rule_id = ?2 AND dedup_key = ?3",
    [S_ALERT_DEST_PUT] = "INSERT OR IGNORE INTO alert_destinations (alert_id, destination)"
                         " VALUES (?1, ?2)",
    [S_ALERT_TOUCH] = "UPDATE alerts SET event_count = ?2, first_seen_ms = MIN(first_seen_ms, ?3),"
                      " last_seen_ms = MAX(last_seen_ms, ?3), updated_ms = ?4 WHERE id = ?1",
    [S_ALERT_GET] = "SELECT " ALERT_COLUMNS " FROM alerts WHERE id = ?1",
    [S_ALERT_RECENT] = "SELECT " ALERT_COLUMNS " FROM alerts"
                       " ORDER BY created_ms DESC, rowid DESC LIMIT ?1",
    [S_ALERT_OPEN_FIND] = "SELECT id, last_seen_ms FROM alerts WHERE rule_id = ?1"
                          " AND dedup_key = ?2 AND status = 'open'"
                          " ORDER BY created_ms DESC, rowid DESC LIMIT 1",
    [S_ALERT_RESOLVE] = "UPDATE alerts SET status = 'resolved', resolved_ms = ?2, updated_ms = ?3"
                        " WHERE id = ?1",
    [S_RULE_ERROR_PUT] = "INSERT INTO rule_errors (rule_id, event_id, error, event, created_ms)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_RULE_ERROR_GET] = "SELECT id, rule_id, event_id, error, event, created_ms"
                         " FROM rule_errors WHERE id = ?1",
    [S_OUTBOX_PUT] = "INSERT INTO outbox (destination, kind, ref, state, attempts, created_ms,"
                     " next_attempt_ms, updated_ms) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)",
    [S_OUTBOX_PUT_RESOLVE] =
        "INSERT INTO outbox (destination, kind, ref, state, attempts, created_ms,"
        " next_attempt_ms, updated_ms) SELECT destination, ?2, alert_id, 'pending', 0, ?3, ?3, ?3"
        " FROM alert_destinations WHERE alert_id = ?1 ORDER BY destination",
    [S_OUTBOX_DUE] = "SELECT id, destination, kind, ref, attempts, created_ms, next_attempt_ms"
                     " FROM outbox WHERE destination = ?1 AND state = 'pending'"
                     " AND next_attempt_ms <= ?2 AND " NOT_BLOCKED " ORDER BY id LIMIT ?3",
    [S_OUTBOX_DONE] = "UPDATE outbox SET state = 'done', updated_ms = ?2 WHERE id = ?1",
    [S_OUTBOX_RETRY] = "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,"
                       " last_error = ?3, updated_ms = ?4 WHERE id = ?1",
    [S_OUTBOX_DEAD] = "UPDATE outbox SET state = 'dead', attempts = attempts + 1,"
                      " last_error = ?2, updated_ms = ?3 WHERE id = ?1",
    [S_OUTBOX_COUNTS] =
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'dead'), 0)"
        " FROM outbox WHERE ?1 IS NULL OR destination = ?1",
    [S_OUTBOX_NEXT] = "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'"
                      " AND " NOT_BLOCKED,
    /* Separate from S_OUTBOX_NEXT so that it can use the outbox_due index. */
    [S_OUTBOX_NEXT_DEST] = "SELECT MIN(next_attempt_ms) FROM outbox"
                           " WHERE destination = ?1 AND state = 'pending' AND " NOT_BLOCKED,
    [S_OUTBOX_LIST] = "SELECT " OUTBOX_COLUMNS " FROM outbox"
                      " WHERE (?1 IS NULL OR destination = ?1) AND (?2 IS NULL OR state = ?2)"
                      " ORDER BY id DESC LIMIT ?3",
    [S_OUTBOX_STATE] = "SELECT state FROM outbox WHERE id = ?1",
    /* A requeued letter starts a fresh life: created_ms too, or a letter parked for its age
     * (max_age_seconds) would die again before its first new attempt. */
    [S_OUTBOX_REQUEUE] = "UPDATE outbox SET state = 'pending', attempts = 0, created_ms = ?2,"
                         " next_attempt_ms = ?2, updated_ms = ?2, last_error = NULL"
                         " WHERE id = ?1 AND state = 'dead'",
    [S_OUTBOX_DROP] = "DELETE FROM outbox WHERE id = ?1 AND state = 'dead'",
    [S_PRUNE_SEEN] = "DELETE FROM seen_events WHERE seen_ms < ?1",
    [S_PRUNE_ACCOUNTS] = "DELETE FROM accounts WHERE expires_ms < ?1",
    [S_PRUNE_OUTBOX] = "DELETE FROM outbox WHERE state = 'done' AND updated_ms < ?1",
    [S_PRUNE_WINDOWS] = "DELETE FROM windows WHERE window_end_ms < ?1",
    [S_PROBE] = "INSERT OR REPLACE INTO probe (id, checked_ms) VALUES (1, ?1)",
};

/* ---- small helpers ---------------------------------------------------------------------- */

void th_store_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Busy and locked clear up by themselves; everything else needs an operator. */
static enum th_err map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TH_ETEMP;
    default:
        return TH_EIO;
    }
}

/* SQLite's messages name tables and columns, never bound values, so nothing an event carried
 * ends up in the log. */
enum th_err th_store_db_fail(struct th_store *st, int rc, const char *what)
{
    const char *msg = sqlite3_errmsg(st->db);

    /* sqlite3_db_cacheflush and friends return a code without setting the handle's message. */
    if ((sqlite3_errcode(st->db) & 0xff) != (rc & 0xff)) {
        msg = sqlite3_errstr(rc);
    }
    snprintf(st->last_error, sizeof(st->last_error), "%s: %s", what, msg);
    th_log(TH_LOG_WARN, "store", "%s", st->last_error);
    return map_rc(rc);
}

void th_store_stmt_finish(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int bind_param(sqlite3_stmt *s, int i, const struct th_store_param *p)
{
    if (!p->is_text) {
        return sqlite3_bind_int64(s, i, p->num);
    }
    if (p->text == NULL) {
        return sqlite3_bind_null(s, i);
    }
    return sqlite3_bind_text(s, i, p->text, -1, SQLITE_TRANSIENT);
}

/* The cached statement @p id (prepared on first use) with @p p bound to ?1..?n. */
static enum th_err stmt_bind(struct th_store *st, enum th_store_stmt id,
                             const struct th_store_param *p, size_t n, const char *what,
                             sqlite3_stmt **out)
{
    int rc = SQLITE_OK;

    if (st->stmts[id] == NULL) {
        rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[id],
                                NULL);
    }
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        rc = bind_param(st->stmts[id], (int)i + 1, &p[i]);
    }
    if (rc != SQLITE_OK) {
        enum th_err err = th_store_db_fail(st, rc, what);
        if (st->stmts[id] != NULL) {
            th_store_stmt_finish(st->stmts[id]);
        }
        return err;
    }
    *out = st->stmts[id];
    return TH_OK;
}

enum th_err th_store_stmt_next(struct th_store *st, sqlite3_stmt *s, const char *what, bool *row)
{
    enum th_err rc = TH_OK;
    int src = sqlite3_step(s);

    *row = src == SQLITE_ROW;
    if (*row) {
        return TH_OK;
    }
    if (src != SQLITE_DONE) {
        rc = th_store_db_fail(st, src, what);
    }
    th_store_stmt_finish(s);
    return rc;
}

enum th_err th_store_stmt_query(struct th_store *st, enum th_store_stmt id,
                                const struct th_store_param *p, size_t n, const char *what,
                                sqlite3_stmt **out, bool *row)
{
    enum th_err rc = stmt_bind(st, id, p, n, what, out);

    *row = false;
    return rc == TH_OK ? th_store_stmt_next(st, *out, what, row) : rc;
}

enum th_err th_store_stmt_exec(struct th_store *st, enum th_store_stmt id,
                               const struct th_store_param *p, size_t n, const char *what)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = th_store_stmt_query(st, id, p, n, what, &s, &row);

    if (rc == TH_OK && row) {
        th_store_stmt_finish(s);
    }
    return rc;
}

enum th_err th_store_stmt_exec_one(struct th_store *st, enum th_store_stmt id,
                                   const struct th_store_param *p, size_t n, const char *what)
{
    enum th_err rc = th_store_stmt_exec(st, id, p, n, what);

    if (rc == TH_OK && sqlite3_changes(st->db) == 0) {
        rc = TH_ENOTFOUND;
    }
    return rc;
}

enum th_err th_store_stmt_collect(struct th_store *st, enum th_store_stmt id,
                                  const struct th_store_param *p, size_t n,
                                  json_t *(*make)(sqlite3_stmt *), const char *what, json_t **out)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    json_t *arr = json_array();
    enum th_err rc = th_store_stmt_query(st, id, p, n, what, &s, &row);

    while (rc == TH_OK && row) {
        json_array_append_new(arr, make(s));
        rc = th_store_stmt_next(st, s, what, &row);
    }
    if (rc == TH_OK) {
        *out = arr;
        arr = NULL;
    }
    json_decref(arr);
    return rc;
}

enum th_err th_store_stmt_get_one(struct th_store *st, enum th_store_stmt id,
                                  const struct th_store_param *p, size_t n,
                                  json_t *(*make)(sqlite3_stmt *), const char *what, json_t **out)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = th_store_stmt_query(st, id, p, n, what, &s, &row);

    if (rc != TH_OK) {
        return rc;
    }
    if (!row) {
        return TH_ENOTFOUND;
    }
    *out = make(s);
    th_store_stmt_finish(s);
    return TH_OK;
}

const char *th_store_col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

static enum th_err exec(struct th_store *st, const char *sql, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? TH_OK : th_store_db_fail(st, rc, what);
}

enum th_err th_store_tx_begin(struct th_store *st)
{
    return th_store_stmt_exec(st, S_BEGIN, NULL, 0, "begin");
}

enum th_err th_store_tx_commit(struct th_store *st)
{
    return th_store_stmt_exec(st, S_COMMIT, NULL, 0, "commit");
}

/* After an I/O error SQLite may have rolled back already; a second ROLLBACK would only fail. */
void th_store_tx_rollback(struct th_store *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

void th_store_json_set_time(json_t *obj, const char *key, int64_t ms)
{
    char buf[32];

    th_clock_format_iso8601(ms, buf);
    json_object_set_new(obj, key, json_string(buf));
}

void th_store_json_set_text(json_t *obj, const char *key, const char *v)
{
    json_object_set_new(obj, key, v == NULL ? json_null() : json_string(v));
}

/* ---- opening ---------------------------------------------------------------------------- */

/* mkdir -p: returns 0 or the errno of the step that failed. */
static int mkdir_p(const char *path, mode_t mode)
{
    char *copy = th_xstrdup(path);
    struct stat sb;
    int e = 0;

    for (char *p = copy + 1; *p != '\0' && e == 0; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(copy, mode) != 0 && errno != EEXIST) {
            e = errno;
        }
        *p = '/';
    }
    if (e == 0 && mkdir(copy, mode) != 0) {
        e = errno;
        if (e == EEXIST) {
            e = stat(copy, &sb) != 0 ? errno : (S_ISDIR(sb.st_mode) ? 0 : ENOTDIR);
        }
    }
    free(copy);
    return e;
}

/* SQLite URIs treat '?', '#' and '%' specially; escape all but the plainest path bytes. */
static char *ro_uri(const char *path)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t len = strlen(path);
    char *uri = th_xmalloc(len * 3 + sizeof("file://?mode=ro"));
    char *o = uri;

    /* An empty authority ("file://" + "/abs") keeps a path starting "//" from being read as
     * a host name. */
    const char *scheme = path[0] == '/' ? "file://" : "file:";

    strcpy(o, scheme);
    o += strlen(scheme);
    for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p) != NULL) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hexd[*p >> 4];
            *o++ = hexd[*p & 0x0f];
        }
    }
    memcpy(o, "?mode=ro", sizeof("?mode=ro"));
    return uri;
}

static enum th_err read_user_version(struct th_store *st, int *version)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? TH_OK : th_store_db_fail(st, rc, "read schema version");
}

static enum th_err set_wal(struct th_store *st)
{
    sqlite3_stmt *s = NULL;
    bool wal = false;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_ROW) {
        wal = th_store_col_text(s, 0) != NULL && strcmp(th_store_col_text(s, 0), "wal") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        return th_store_db_fail(st, rc, "set journal mode");
    }
    if (!wal) {
        snprintf(st->last_error, sizeof(st->last_error), "the file system refused WAL mode");
        return TH_EIO;
    }
    return TH_OK;
}

/*
 * Waiting for another connection's write lock. SQLite's own busy timeout sleeps 1, 2, 5, 10 ... up
 * to 100 ms at a time, while a writer here holds the lock for about one fsync (~1 ms): a request
 * behind it would wait ten times longer than needed. This one polls from 50 us, doubling to 2 ms,
 * and gives up after BUSY_TIMEOUT_MS as before.
 */
static int on_busy(void *ctx, int count)
{
    struct th_store *st = ctx;
    int64_t now = th_clock_mono_us();
    if (count == 0) {
        st->busy_since_us = now;
    }
    if (now - st->busy_since_us >= (int64_t)BUSY_TIMEOUT_MS * 1000) {
        return 0;
    }
    unsigned step = count < 6 ? 50u << count : 2000u;
    struct timespec ts = {0, (long)step * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

static enum th_err configure(struct th_store *st, enum th_store_mode mode)
{
    enum th_err rc;

    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_handler(st->db, on_busy, st);
    rc = exec(st, "PRAGMA foreign_keys = ON", "enable foreign keys");
    if (rc != TH_OK || mode == TH_STORE_READONLY) {
        return rc;
    }
    rc = set_wal(st);
    if (rc != TH_OK) {
        return rc;
    }
    /* A burst (or a spell of a full disk, whose failed commits still grow it) leaves a large
     * write-ahead log behind; without a limit its file keeps that size for good. */
    rc = exec(st, "PRAGMA journal_size_limit = 4194304", "limit the log's size");
    if (rc != TH_OK) {
        return rc;
    }
    /* A 2xx promises that a crash right after loses nothing. In WAL mode NORMAL keeps the
     * database consistent but may drop the last commits on power loss; FULL syncs the WAL on
     * every commit, so a committed alert and its outbox rows are on disk before we answer. */
    return exec(st, "PRAGMA synchronous = FULL", "set synchronous");
}

/* Runs migrations[version] and every later one, then records the new version. */
static enum th_err migrate_from(struct th_store *st, int version)
{
    char what[48];
    char *bump = th_xasprintf("PRAGMA user_version = %d", SCHEMA_VERSION);
    enum th_err rc = TH_OK;

    for (int v = version; v < SCHEMA_VERSION && rc == TH_OK; v++) {
        snprintf(what, sizeof(what), "migrate schema to version %d", v + 1);
        rc = exec(st, migrations[v], what);
    }
    if (rc == TH_OK) {
        rc = exec(st, bump, "set schema version");
    }
    free(bump);
    return rc;
}

static enum th_err migrate(struct th_store *st)
{
    int version = 0;
    enum th_err rc = th_store_tx_begin(st);

    if (rc != TH_OK) {
        return rc;
    }
    rc = read_user_version(st, &version);
    if (rc == TH_OK && version > SCHEMA_VERSION) {
        snprintf(st->last_error, sizeof(st->last_error),
                 "schema version %d is newer than this trailhook's %d", version, SCHEMA_VERSION);
        rc = TH_EIO;
    }
    if (rc == TH_OK && version < SCHEMA_VERSION) {
        rc = migrate_from(st, version);
    }
    if (rc == TH_OK) {
        rc = th_store_tx_commit(st);
    }
    if (rc != TH_OK) {
        th_store_tx_rollback(st);
    } else if (version > 0 && version < SCHEMA_VERSION) {
        th_log(TH_LOG_INFO, "store", "migrated the database from schema version %d to %d", version,
               SCHEMA_VERSION);
    }
    return rc;
}

static enum th_err open_readwrite(struct th_store *st, const char *state_dir, const char *path,
                                  char *err, size_t errlen)
{
    char ebuf[128];
    enum th_err rc;
    int e = mkdir_p(state_dir, 0700);

    if (e != 0) {
        strerror_r(e, ebuf, sizeof(ebuf));
        th_store_set_err(err, errlen, "cannot create state directory %s: %s", state_dir, ebuf);
        return TH_EIO;
    }
    e = sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (e != SQLITE_OK) {
        rc = th_store_db_fail(st, e, "open");
    } else if (sqlite3_db_readonly(st->db, "main") == 1) {
        /* SQLite silently falls back to read-only for a write-protected file. */
        snprintf(st->last_error, sizeof(st->last_error), "the database file is read-only");
        rc = TH_EIO;
    } else {
        rc = configure(st, TH_STORE_READWRITE);
    }
    if (rc == TH_OK) {
        rc = migrate(st);
    }
    if (rc != TH_OK) {
        th_store_set_err(err, errlen, "cannot open database %s: %s", path, st->last_error);
    }
    return rc;
}

static enum th_err open_readonly(struct th_store *st, const char *path, char *err, size_t errlen)
{
    char ebuf[128];
    char *uri = NULL;
    struct stat sb;
    int version = 0;
    int e;
    enum th_err rc = TH_OK;

    /* Checked first because SQLite would report a missing file as a generic CANTOPEN. */
    if (stat(path, &sb) != 0) {
        e = errno;
        strerror_r(e, ebuf, sizeof(ebuf));
        th_store_set_err(err, errlen, "no database at %s: %s", path, ebuf);
        return (e == ENOENT || e == ENOTDIR) ? TH_ENOTFOUND : TH_EIO;
    }
    uri = ro_uri(path);
    e = sqlite3_open_v2(uri, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                        NULL);
    rc = e == SQLITE_OK ? configure(st, TH_STORE_READONLY) : th_store_db_fail(st, e, "open");
    if (rc == TH_OK) {
        rc = read_user_version(st, &version);
    }
    if (rc == TH_OK && version == 0) {
        th_store_set_err(err, errlen, "database %s holds no trailhook state", path);
        rc = TH_ENOTFOUND;
    } else if (rc == TH_OK && version > SCHEMA_VERSION) {
        th_store_set_err(err, errlen,
                         "database %s has schema version %d, newer than this trailhook's %d", path,
                         version, SCHEMA_VERSION);
        rc = TH_EIO;
    } else if (rc != TH_OK) {
        th_store_set_err(err, errlen, "cannot open database %s: %s", path, st->last_error);
    }
    free(uri);
    return rc;
}

enum th_err th_store_open(const char *state_dir, enum th_store_mode mode, struct th_store **out,
                          char *err, size_t errlen)
{
    struct th_store *st = NULL;
    char *path = NULL;
    enum th_err rc;

    th_store_set_err(err, errlen, "%s", "");
    if (out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    if (state_dir == NULL || state_dir[0] == '\0') {
        th_store_set_err(err, errlen, "no state directory given");
        return TH_EINVAL;
    }
    path = th_xasprintf("%s/%s", state_dir, TH_STORE_DB_NAME);
    st = th_xcalloc(1, sizeof(*st));
    if (mode == TH_STORE_READONLY) {
        rc = open_readonly(st, path, err, errlen);
    } else {
        rc = open_readwrite(st, state_dir, path, err, errlen);
    }
    if (rc != TH_OK) {
        goto out;
    }
    *out = st;
    st = NULL;
out:
    th_store_free(st);
    free(path);
    return rc;
}

enum th_err th_store_open_config(const struct th_config *cfg, enum th_store_mode mode,
                                 struct th_store **out, char *err, size_t errlen)
{
    if (strcmp(cfg->state_backend, "redis") != 0) {
        return th_store_open(cfg->state_dir, mode, out, err, errlen);
    }
    struct th_store *st = th_xcalloc(1, sizeof(*st));
    enum th_err rc = th_store_redis_open(st, cfg->state_redis_url, mode,
                                         cfg->state_claim_after_seconds * 1000, err, errlen);
    if (rc != TH_OK) {
        th_store_free(st);
        st = NULL;
    }
    *out = st;
    return rc;
}

bool th_store_exists_config(const struct th_config *cfg)
{
    return strcmp(cfg->state_backend, "redis") == 0 || th_store_exists(cfg->state_dir);
}

bool th_store_exists(const char *state_dir)
{
    char *path = th_xasprintf("%s/%s", state_dir, TH_STORE_DB_NAME);
    bool ok = access(path, F_OK) == 0;
    free(path);
    return ok;
}

void th_store_free(struct th_store *st)
{
    if (st == NULL) {
        return;
    }
    if (st->redis != NULL) {
        th_store_redis_close(st);
    }
    for (size_t i = 0; i < S_COUNT; i++) {
        sqlite3_finalize(st->stmts[i]);
    }
    sqlite3_close(st->db);
    free(st);
}

const char *th_store_last_error(const struct th_store *st)
{
    return st == NULL ? "" : st->last_error;
}

/* ---- accounts --------------------------------------------------------------------------- */

enum th_err th_store_account_add(struct th_store *st, const char *account_id, int64_t expires_ms,
                                 const char *source, int64_t now_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_account_add(st, account_id, expires_ms, source, now_ms);
    }
    const struct th_store_param p[] = {p_text(account_id), p_int(expires_ms), p_text(source),
                                       p_int(now_ms)};

    if (st == NULL || account_id == NULL || source == NULL) {
        return TH_EINVAL;
    }
    return th_store_stmt_exec(st, S_ACCOUNT_UPSERT, p, NPARAMS(p), "add account");
}

enum th_err th_store_account_remove(struct th_store *st, const char *account_id)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_account_remove(st, account_id);
    }
    const struct th_store_param p[] = {p_text(account_id)};

    if (st == NULL || account_id == NULL) {
        return TH_EINVAL;
    }
    return th_store_stmt_exec_one(st, S_ACCOUNT_DELETE, p, NPARAMS(p), "remove account");
}

enum th_err th_store_account_check(struct th_store *st, const char *account_id, int64_t at_ms,
                                   bool *is_new)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_account_check(st, account_id, at_ms, is_new);
    }
    const struct th_store_param p[] = {p_text(account_id), p_int(at_ms)};
    sqlite3_stmt *s = NULL;
    enum th_err rc;

    if (st == NULL || account_id == NULL || is_new == NULL) {
        return TH_EINVAL;
    }
    rc = th_store_stmt_query(st, S_ACCOUNT_CHECK, p, NPARAMS(p), "check account", &s, is_new);
    if (rc == TH_OK && *is_new) {
        th_store_stmt_finish(s);
    }
    return rc;
}

static json_t *account_json(sqlite3_stmt *s)
{
    json_t *obj = json_object();

    th_store_json_set_text(obj, "account_id", th_store_col_text(s, 0));
    th_store_json_set_time(obj, "expires_at", sqlite3_column_int64(s, 1));
    th_store_json_set_text(obj, "source", th_store_col_text(s, 2));
    th_store_json_set_time(obj, "added_at", sqlite3_column_int64(s, 3));
    return obj;
}

enum th_err th_store_accounts_list(struct th_store *st, json_t **out)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_accounts_list(st, out);
    }
    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return th_store_stmt_collect(st, S_ACCOUNT_LIST, NULL, 0, account_json, "list accounts", out);
}

enum th_err th_store_defer_durability(struct th_store *st)
{
    if (st == NULL || st->redis != NULL) {
        return TH_OK; /* Redis: durability is the server's (appendfsync) */
    }
    return exec(st, "PRAGMA synchronous = NORMAL", "defer durability");
}

/* ---- housekeeping ----------------------------------------------------------------------- */

static enum th_err prune_all(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms)
{
    const struct {
        enum th_store_stmt id;
        int64_t before_ms;
        const char *what;
    } steps[] = {
        {S_PRUNE_SEEN, now_ms - seen_ttl_ms, "prune event ids"},
        {S_PRUNE_ACCOUNTS, now_ms - MS_PER_DAY, "prune accounts"},
        {S_PRUNE_OUTBOX, now_ms - DONE_KEEP_MS, "prune deliveries"},
        /* An ended window is never read again (the next event opens a new one); dropping it
         * a day later keeps the table at the size of the live keys. */
        {S_PRUNE_WINDOWS, now_ms - MS_PER_DAY, "prune dedup windows"},
    };
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < NPARAMS(steps) && rc == TH_OK; i++) {
        const struct th_store_param p[] = {p_int(steps[i].before_ms)};
        rc = th_store_stmt_exec(st, steps[i].id, p, NPARAMS(p), steps[i].what);
    }
    return rc;
}

enum th_err th_store_prune(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_prune(st, now_ms, seen_ttl_ms);
    }
    enum th_err rc;

    if (st == NULL || seen_ttl_ms < 0) {
        return TH_EINVAL;
    }
    rc = th_store_tx_begin(st);
    if (rc == TH_OK) {
        rc = prune_all(st, now_ms, seen_ttl_ms);
    }
    if (rc == TH_OK) {
        rc = th_store_tx_commit(st);
    }
    if (rc != TH_OK) {
        th_store_tx_rollback(st);
    }
    return rc;
}

/*
 * The database's probe below can pass on a full disk: SQLite reuses the room its write-ahead log
 * already has. A request's commit may need more, so the disk must also have room for new blocks:
 * writing this much next to the database (and removing it) tells.
 */
#define PROBE_SPACE_BYTES 65536

static enum th_err probe_space(struct th_store *st)
{
    static const char zeros[4096];
    char path[4096];
    const char *db = sqlite3_db_filename(st->db, "main");
    enum th_err rc = TH_OK;

    if (db == NULL || db[0] == '\0') {
        return TH_OK; /* an in-memory database: no disk */
    }
    snprintf(path, sizeof(path), "%s-probe", db);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    for (size_t done = 0; fd >= 0 && rc == TH_OK && done < PROBE_SPACE_BYTES;) {
        ssize_t n = write(fd, zeros, sizeof(zeros));
        rc = n > 0 ? TH_OK : TH_EIO;
        done += n > 0 ? (size_t)n : 0;
    }
    if (fd < 0 || rc != TH_OK || fsync(fd) != 0) {
        snprintf(st->last_error, sizeof(st->last_error), "space probe: %.160s: %s", path,
                 strerror(errno));
        rc = TH_EIO;
    }
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    return rc;
}

enum th_err th_store_check_writable(struct th_store *st)
{
    if (st != NULL && st->redis != NULL) {
        return th_store_redis_check_writable(st);
    }
    const struct th_store_param p[] = {p_int(th_clock_now_ms())};
    int src;
    enum th_err rc;

    if (st == NULL) {
        return TH_EINVAL;
    }
    rc = th_store_tx_begin(st);
    if (rc == TH_OK) {
        rc = th_store_stmt_exec(st, S_PROBE, p, NPARAMS(p), "probe write");
    }
    /* A rolled-back change never reaches the disk by itself. Flushing the dirty page into the
     * WAL (uncommitted, so no reader sees it) makes a full disk or a read-only file system
     * fail here, where readiness can report it, rather than on the next request's commit. */
    if (rc == TH_OK) {
        src = sqlite3_db_cacheflush(st->db);
        rc = src == SQLITE_OK ? TH_OK : th_store_db_fail(st, src, "probe flush");
    }
    th_store_tx_rollback(st);
    return rc == TH_OK ? probe_space(st) : rc;
}
