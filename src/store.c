/* SPDX-License-Identifier: MIT */
/*
 * store.c -- the SQLite backend of the durable store: one WAL database under state_dir holding
 * alerts, dedup windows, seen event IDs, the new-account set, rule errors and the outbox.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "trailhook/clock.h"
#include "trailhook/hash.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"

#define SCHEMA_VERSION  1
#define BUSY_TIMEOUT_MS 5000
#define MS_PER_MINUTE   ((int64_t)60 * 1000)
#define MS_PER_DAY      ((int64_t)24 * 60 * MS_PER_MINUTE)
#define DONE_KEEP_MS    (7 * MS_PER_DAY)
#define ALERT_ID_LEN    32

/* Version 1. Every statement is idempotent so two processes migrating at once are harmless;
 * they also run under BEGIN IMMEDIATE, so the second one waits and then finds nothing to do. */
static const char schema_sql[] =
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

#define ALERT_COLUMNS                                                                              \
    "id, rule_id, dedup_key, status, event_count, first_seen_ms, last_seen_ms, created_ms,"        \
    " updated_ms, doc"

enum stmt_id {
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
    S_ALERT_CREATE,
    S_ALERT_TOUCH,
    S_ALERT_GET,
    S_ALERT_RECENT,
    S_RULE_ERROR_PUT,
    S_RULE_ERROR_GET,
    S_OUTBOX_PUT,
    S_OUTBOX_DUE,
    S_OUTBOX_DONE,
    S_OUTBOX_RETRY,
    S_OUTBOX_DEAD,
    S_OUTBOX_COUNTS,
    S_OUTBOX_NEXT,
    S_PRUNE_SEEN,
    S_PRUNE_ACCOUNTS,
    S_PRUNE_OUTBOX,
    S_PRUNE_WINDOWS,
    S_PROBE,
    S_COUNT
};

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
    /* The document comes from the window: with a threshold above 1 the alert shows the event
     * that opened the window, not the one that happened to reach the threshold. */
    [S_ALERT_CREATE] = "INSERT INTO alerts (id, rule_id, dedup_key, title, severity, status,"
                       " event_count, first_seen_ms, last_seen_ms, created_ms, updated_ms, doc)"
                       " SELECT ?1, rule_id, dedup_key, ?4, ?5, 'open', ?6,"
                       " MIN(first_event_ms, ?7), MAX(first_event_ms, ?7), ?8, ?8, doc"
                       " FROM windows WHERE rule_id = ?2 AND dedup_key = ?3",
    [S_ALERT_TOUCH] = "UPDATE alerts SET event_count = ?2, first_seen_ms = MIN(first_seen_ms, ?3),"
                      " last_seen_ms = MAX(last_seen_ms, ?3), updated_ms = ?4 WHERE id = ?1",
    [S_ALERT_GET] = "SELECT " ALERT_COLUMNS " FROM alerts WHERE id = ?1",
    [S_ALERT_RECENT] = "SELECT " ALERT_COLUMNS " FROM alerts"
                       " ORDER BY created_ms DESC, rowid DESC LIMIT ?1",
    [S_RULE_ERROR_PUT] = "INSERT INTO rule_errors (rule_id, event_id, error, event, created_ms)"
                         " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_RULE_ERROR_GET] = "SELECT id, rule_id, event_id, error, event, created_ms"
                         " FROM rule_errors WHERE id = ?1",
    [S_OUTBOX_PUT] = "INSERT INTO outbox (destination, kind, ref, state, attempts, created_ms,"
                     " next_attempt_ms, updated_ms) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)",
    [S_OUTBOX_DUE] = "SELECT id, destination, kind, ref, attempts, created_ms, next_attempt_ms"
                     " FROM outbox WHERE destination = ?1 AND state = 'pending'"
                     " AND next_attempt_ms <= ?2 ORDER BY id LIMIT ?3",
    [S_OUTBOX_DONE] = "UPDATE outbox SET state = 'done', updated_ms = ?2 WHERE id = ?1",
    [S_OUTBOX_RETRY] = "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2,"
                       " last_error = ?3, updated_ms = ?4 WHERE id = ?1",
    [S_OUTBOX_DEAD] = "UPDATE outbox SET state = 'dead', last_error = ?2, updated_ms = ?3"
                      " WHERE id = ?1",
    [S_OUTBOX_COUNTS] =
        "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'dead'), 0)"
        " FROM outbox WHERE ?1 IS NULL OR destination = ?1",
    [S_OUTBOX_NEXT] = "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'",
    [S_PRUNE_SEEN] = "DELETE FROM seen_events WHERE seen_ms < ?1",
    [S_PRUNE_ACCOUNTS] = "DELETE FROM accounts WHERE expires_ms < ?1",
    [S_PRUNE_OUTBOX] = "DELETE FROM outbox WHERE state = 'done' AND updated_ms < ?1",
    [S_PRUNE_WINDOWS] = "DELETE FROM windows WHERE window_end_ms < ?1",
    [S_PROBE] = "INSERT OR REPLACE INTO probe (id, checked_ms) VALUES (1, ?1)",
};

struct th_store {
    sqlite3 *db;
    sqlite3_stmt *stmts[S_COUNT]; /* prepared on first use, finalized by th_store_free */
    char last_error[256];
};

/* A dedup window as read (or just opened) inside an apply transaction. */
struct window {
    int64_t start_ms;
    int64_t count;
    char alert_id[ALERT_ID_LEN + 1]; /* "" while below threshold */
};

/* One bound parameter: text (NULL binds SQL NULL) or an integer. */
struct param {
    const char *text;
    int64_t num;
    bool is_text;
};

#define NPARAMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- small helpers ---------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
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

/* Keeps the failure text for th_store_last_error. SQLite's messages name tables and columns,
 * never bound values, so nothing an event carried ends up in the log. */
static enum th_err db_fail(struct th_store *st, int rc, const char *what)
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

/* Resetting at once matters: a statement left mid-result keeps its read snapshot open. */
static void stmt_finish(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static struct param p_text(const char *v)
{
    struct param p = {.text = v, .num = 0, .is_text = true};

    return p;
}

static struct param p_int(int64_t v)
{
    struct param p = {.text = NULL, .num = v, .is_text = false};

    return p;
}

static int bind_param(sqlite3_stmt *s, int i, const struct param *p)
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
static enum th_err stmt_bind(struct th_store *st, enum stmt_id id, const struct param *p, size_t n,
                             const char *what, sqlite3_stmt **out)
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
        enum th_err err = db_fail(st, rc, what);
        if (st->stmts[id] != NULL) {
            stmt_finish(st->stmts[id]);
        }
        return err;
    }
    *out = st->stmts[id];
    return TH_OK;
}

/* Steps to the next row. Unless *row comes back true the statement is reset; when the caller
 * stops reading early it calls stmt_finish. */
static enum th_err stmt_next(struct th_store *st, sqlite3_stmt *s, const char *what, bool *row)
{
    enum th_err rc = TH_OK;
    int src = sqlite3_step(s);

    *row = src == SQLITE_ROW;
    if (*row) {
        return TH_OK;
    }
    if (src != SQLITE_DONE) {
        rc = db_fail(st, src, what);
    }
    stmt_finish(s);
    return rc;
}

/* Runs a query up to its first row (see stmt_next). */
static enum th_err stmt_query(struct th_store *st, enum stmt_id id, const struct param *p, size_t n,
                              const char *what, sqlite3_stmt **out, bool *row)
{
    enum th_err rc = stmt_bind(st, id, p, n, what, out);

    *row = false;
    return rc == TH_OK ? stmt_next(st, *out, what, row) : rc;
}

/* Runs a statement whose rows, if any, do not matter. */
static enum th_err stmt_exec(struct th_store *st, enum stmt_id id, const struct param *p, size_t n,
                             const char *what)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = stmt_query(st, id, p, n, what, &s, &row);

    if (rc == TH_OK && row) {
        stmt_finish(s);
    }
    return rc;
}

/* Runs a single-row update or delete: TH_ENOTFOUND when no row matched. */
static enum th_err stmt_exec_one(struct th_store *st, enum stmt_id id, const struct param *p,
                                 size_t n, const char *what)
{
    enum th_err rc = stmt_exec(st, id, p, n, what);

    if (rc == TH_OK && sqlite3_changes(st->db) == 0) {
        rc = TH_ENOTFOUND;
    }
    return rc;
}

/* Reads every row of a query into a new array, make() building each element. */
static enum th_err stmt_collect(struct th_store *st, enum stmt_id id, const struct param *p,
                                size_t n, json_t *(*make)(sqlite3_stmt *), const char *what,
                                json_t **out)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    json_t *arr = json_array();
    enum th_err rc = stmt_query(st, id, p, n, what, &s, &row);

    while (rc == TH_OK && row) {
        json_array_append_new(arr, make(s));
        rc = stmt_next(st, s, what, &row);
    }
    if (rc == TH_OK) {
        *out = arr;
        arr = NULL;
    }
    json_decref(arr);
    return rc;
}

/* Reads the one row of a lookup by key: TH_ENOTFOUND when there is none. */
static enum th_err stmt_get_one(struct th_store *st, enum stmt_id id, const struct param *p,
                                size_t n, json_t *(*make)(sqlite3_stmt *), const char *what,
                                json_t **out)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = stmt_query(st, id, p, n, what, &s, &row);

    if (rc != TH_OK) {
        return rc;
    }
    if (!row) {
        return TH_ENOTFOUND;
    }
    *out = make(s);
    stmt_finish(s);
    return TH_OK;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

/* An empty alert id means "none yet" in C and NULL in the database (a foreign key). */
static const char *alert_ref(const char *id)
{
    return id[0] == '\0' ? NULL : id;
}

static enum th_err exec(struct th_store *st, const char *sql, const char *what)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? TH_OK : db_fail(st, rc, what);
}

static enum th_err tx_begin(struct th_store *st)
{
    return stmt_exec(st, S_BEGIN, NULL, 0, "begin");
}

static enum th_err tx_commit(struct th_store *st)
{
    return stmt_exec(st, S_COMMIT, NULL, 0, "commit");
}

/* After an I/O error SQLite may have rolled back already; a second ROLLBACK would only fail. */
static void tx_rollback(struct th_store *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static void json_set_time(json_t *obj, const char *key, int64_t ms)
{
    char buf[32];

    th_clock_format_iso8601(ms, buf);
    json_object_set_new(obj, key, json_string(buf));
}

static void json_set_text(json_t *obj, const char *key, const char *v)
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
    return rc == SQLITE_OK ? TH_OK : db_fail(st, rc, "read schema version");
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
        wal = col_text(s, 0) != NULL && strcmp(col_text(s, 0), "wal") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_OK) {
        return db_fail(st, rc, "set journal mode");
    }
    if (!wal) {
        snprintf(st->last_error, sizeof(st->last_error), "the file system refused WAL mode");
        return TH_EIO;
    }
    return TH_OK;
}

static enum th_err configure(struct th_store *st, enum th_store_mode mode)
{
    enum th_err rc;

    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    rc = exec(st, "PRAGMA foreign_keys = ON", "enable foreign keys");
    if (rc != TH_OK || mode == TH_STORE_READONLY) {
        return rc;
    }
    rc = set_wal(st);
    if (rc != TH_OK) {
        return rc;
    }
    /* A 2xx promises that a crash right after loses nothing. In WAL mode NORMAL keeps the
     * database consistent but may drop the last commits on power loss; FULL syncs the WAL on
     * every commit, so a committed alert and its outbox rows are on disk before we answer. */
    return exec(st, "PRAGMA synchronous = FULL", "set synchronous");
}

static enum th_err migrate(struct th_store *st)
{
    char *bump = NULL;
    int version = 0;
    enum th_err rc = tx_begin(st);

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
        rc = exec(st, schema_sql, "create schema");
        bump = th_xasprintf("PRAGMA user_version = %d", SCHEMA_VERSION);
        if (rc == TH_OK) {
            rc = exec(st, bump, "set schema version");
        }
    }
    if (rc == TH_OK) {
        rc = tx_commit(st);
    }
    if (rc != TH_OK) {
        tx_rollback(st);
    }
    free(bump);
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
        set_err(err, errlen, "cannot create state directory %s: %s", state_dir, ebuf);
        return TH_EIO;
    }
    e = sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (e != SQLITE_OK) {
        rc = db_fail(st, e, "open");
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
        set_err(err, errlen, "cannot open database %s: %s", path, st->last_error);
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
        set_err(err, errlen, "no database at %s: %s", path, ebuf);
        return (e == ENOENT || e == ENOTDIR) ? TH_ENOTFOUND : TH_EIO;
    }
    uri = ro_uri(path);
    e = sqlite3_open_v2(uri, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                        NULL);
    rc = e == SQLITE_OK ? configure(st, TH_STORE_READONLY) : db_fail(st, e, "open");
    if (rc == TH_OK) {
        rc = read_user_version(st, &version);
    }
    if (rc == TH_OK && version == 0) {
        set_err(err, errlen, "database %s holds no trailhook state", path);
        rc = TH_ENOTFOUND;
    } else if (rc == TH_OK && version > SCHEMA_VERSION) {
        set_err(err, errlen, "database %s has schema version %d, newer than this trailhook's %d",
                path, version, SCHEMA_VERSION);
        rc = TH_EIO;
    } else if (rc != TH_OK) {
        set_err(err, errlen, "cannot open database %s: %s", path, st->last_error);
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

    set_err(err, errlen, "%s", "");
    if (out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    if (state_dir == NULL || state_dir[0] == '\0') {
        set_err(err, errlen, "no state directory given");
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

void th_store_free(struct th_store *st)
{
    if (st == NULL) {
        return;
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

static enum th_err account_upsert(struct th_store *st, const char *account_id, int64_t expires_ms,
                                  const char *source, int64_t now_ms)
{
    const struct param p[] = {p_text(account_id), p_int(expires_ms), p_text(source), p_int(now_ms)};

    return stmt_exec(st, S_ACCOUNT_UPSERT, p, NPARAMS(p), "add account");
}

enum th_err th_store_account_add(struct th_store *st, const char *account_id, int64_t expires_ms,
                                 const char *source, int64_t now_ms)
{
    if (st == NULL || account_id == NULL || source == NULL) {
        return TH_EINVAL;
    }
    return account_upsert(st, account_id, expires_ms, source, now_ms);
}

enum th_err th_store_account_remove(struct th_store *st, const char *account_id)
{
    const struct param p[] = {p_text(account_id)};

    if (st == NULL || account_id == NULL) {
        return TH_EINVAL;
    }
    return stmt_exec_one(st, S_ACCOUNT_DELETE, p, NPARAMS(p), "remove account");
}

enum th_err th_store_account_check(struct th_store *st, const char *account_id, int64_t at_ms,
                                   bool *is_new)
{
    const struct param p[] = {p_text(account_id), p_int(at_ms)};
    sqlite3_stmt *s = NULL;
    enum th_err rc;

    if (st == NULL || account_id == NULL || is_new == NULL) {
        return TH_EINVAL;
    }
    rc = stmt_query(st, S_ACCOUNT_CHECK, p, NPARAMS(p), "check account", &s, is_new);
    if (rc == TH_OK && *is_new) {
        stmt_finish(s);
    }
    return rc;
}

static json_t *account_json(sqlite3_stmt *s)
{
    json_t *obj = json_object();

    json_set_text(obj, "account_id", col_text(s, 0));
    json_set_time(obj, "expires_at", sqlite3_column_int64(s, 1));
    json_set_text(obj, "source", col_text(s, 2));
    json_set_time(obj, "added_at", sqlite3_column_int64(s, 3));
    return obj;
}

enum th_err th_store_accounts_list(struct th_store *st, json_t **out)
{
    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return stmt_collect(st, S_ACCOUNT_LIST, NULL, 0, account_json, "list accounts", out);
}

/* ---- apply ------------------------------------------------------------------------------ */

static enum th_err outbox_put_all(struct th_store *st, const char *const *destinations, size_t n,
                                  enum th_outbox_kind kind, const char *ref, int64_t now_ms)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < n && rc == TH_OK; i++) {
        const struct param p[] = {p_text(destinations[i]), p_int(kind), p_text(ref), p_int(now_ms)};
        rc = stmt_exec(st, S_OUTBOX_PUT, p, NPARAMS(p), "queue delivery");
    }
    return rc;
}

/* Looks the event ID up; when seen, copies the alert it counted toward ("" if none). */
static enum th_err seen_get(struct th_store *st, const char *event_id, bool *seen,
                            char alert_id[ALERT_ID_LEN + 1])
{
    const struct param p[] = {p_text(event_id)};
    sqlite3_stmt *s = NULL;
    enum th_err rc = stmt_query(st, S_SEEN_GET, p, NPARAMS(p), "look up event id", &s, seen);

    if (rc == TH_OK && *seen) {
        if (col_text(s, 0) != NULL) {
            snprintf(alert_id, ALERT_ID_LEN + 1, "%s", col_text(s, 0));
        }
        stmt_finish(s);
    }
    return rc;
}

/* Opens a fresh window at now_ms holding this event's document, replacing an ended one. */
static enum th_err window_open(struct th_store *st, const struct th_store_match *m, int64_t now_ms,
                               struct window *w)
{
    int64_t end_ms = now_ms + (int64_t)m->dedup_period_minutes * MS_PER_MINUTE;
    char *doc =
        m->doc == NULL ? th_xstrdup("{}") : json_dumps(m->doc, JSON_COMPACT | JSON_ENCODE_ANY);
    const struct param p[] = {p_text(m->rule_id), p_text(m->dedup_key),    p_int(now_ms),
                              p_int(end_ms),      p_int(m->event_time_ms), p_text(doc)};
    enum th_err rc = TH_ENOMEM;

    if (doc != NULL) {
        rc = stmt_exec(st, S_WINDOW_OPEN, p, NPARAMS(p), "open dedup window");
    }
    free(doc);
    memset(w, 0, sizeof(*w));
    w->start_ms = now_ms;
    return rc;
}

/* Loads the current window of the match's key, opening a new one when none is current. */
static enum th_err window_current(struct th_store *st, const struct th_store_match *m,
                                  int64_t now_ms, struct window *w)
{
    const struct param p[] = {p_text(m->rule_id), p_text(m->dedup_key)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc = stmt_query(st, S_WINDOW_GET, p, NPARAMS(p), "read dedup window", &s, &row);

    if (rc != TH_OK) {
        return rc;
    }
    if (!row) {
        return window_open(st, m, now_ms, w);
    }
    if (now_ms >= sqlite3_column_int64(s, 1)) {
        stmt_finish(s);
        return window_open(st, m, now_ms, w);
    }
    memset(w, 0, sizeof(*w));
    w->start_ms = sqlite3_column_int64(s, 0);
    w->count = sqlite3_column_int64(s, 2);
    if (col_text(s, 3) != NULL) {
        snprintf(w->alert_id, sizeof(w->alert_id), "%s", col_text(s, 3));
    }
    stmt_finish(s);
    return TH_OK;
}

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

static enum th_err alert_create(struct th_store *st, const struct th_store_match *m,
                                struct window *w, int64_t now_ms)
{
    char id[ALERT_ID_LEN + 1];
    enum th_err rc;

    alert_id_make(m, w->start_ms, id);
    const struct param p[] = {
        p_text(id),          p_text(m->rule_id), p_text(m->dedup_key),    p_text(m->title),
        p_text(m->severity), p_int(w->count),    p_int(m->event_time_ms), p_int(now_ms)};
    rc = stmt_exec(st, S_ALERT_CREATE, p, NPARAMS(p), "create alert");
    if (rc == TH_OK) {
        rc = outbox_put_all(st, m->destinations, m->ndestinations, TH_OUTBOX_ALERT, id, now_ms);
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
        const struct param p[] = {p_text(w->alert_id), p_int(w->count), p_int(m->event_time_ms),
                                  p_int(now_ms)};
        rc = stmt_exec(st, S_ALERT_TOUCH, p, NPARAMS(p), "update alert");
    }
    if (rc == TH_OK) {
        const struct param p[] = {p_text(m->rule_id), p_text(m->dedup_key), p_int(w->count),
                                  p_text(alert_ref(w->alert_id))};
        rc = stmt_exec(st, S_WINDOW_SAVE, p, NPARAMS(p), "update dedup window");
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
        const struct param p[] = {p_text(m->event_id), p_text(alert_ref(w.alert_id)),
                                  p_int(now_ms)};
        rc = stmt_exec(st, S_SEEN_PUT, p, NPARAMS(p), "remember event id");
    }
    if (rc == TH_OK) {
        memcpy(res->alert_id, w.alert_id, sizeof(res->alert_id));
    }
    return rc;
}

static enum th_err apply_rule_error(struct th_store *st, const struct th_store_rule_error *re,
                                    int64_t now_ms)
{
    char *event = re->event == NULL ? NULL : json_dumps(re->event, JSON_COMPACT | JSON_ENCODE_ANY);
    const struct param p[] = {p_text(re->rule_id), p_text(re->event_id), p_text(re->error),
                              p_text(event), p_int(now_ms)};
    char ref[24];
    enum th_err rc = stmt_exec(st, S_RULE_ERROR_PUT, p, NPARAMS(p), "record rule error");

    free(event);
    if (rc == TH_OK) {
        snprintf(ref, sizeof(ref), "%lld", (long long)sqlite3_last_insert_rowid(st->db));
        rc = outbox_put_all(st, re->destinations, re->ndestinations, TH_OUTBOX_RULE_ERROR, ref,
                            now_ms);
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

/* Refuses a malformed batch before the transaction, so a bad caller never half-applies. */
static bool batch_ok(const struct th_store_batch *b, const struct th_store_match_result *results)
{
    if ((b->nmatches > 0 && (b->matches == NULL || results == NULL)) ||
        (b->nrule_errors > 0 && b->rule_errors == NULL) ||
        (b->naccounts > 0 && b->accounts == NULL)) {
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
    for (size_t i = 0; i < b->nrule_errors; i++) {
        const struct th_store_rule_error *re = &b->rule_errors[i];
        if (re->rule_id == NULL || re->error == NULL ||
            !destinations_ok(re->destinations, re->ndestinations)) {
            return false;
        }
    }
    return true;
}

static enum th_err apply_all(struct th_store *st, const struct th_store_batch *b, int64_t now_ms,
                             struct th_store_match_result *results)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < b->naccounts && rc == TH_OK; i++) {
        rc = account_upsert(st, b->accounts[i].account_id, b->accounts[i].expires_ms, "learned",
                            now_ms);
    }
    for (size_t i = 0; i < b->nmatches && rc == TH_OK; i++) {
        rc = apply_match(st, &b->matches[i], now_ms, &results[i]);
    }
    for (size_t i = 0; i < b->nrule_errors && rc == TH_OK; i++) {
        rc = apply_rule_error(st, &b->rule_errors[i], now_ms);
    }
    return rc;
}

enum th_err th_store_apply(struct th_store *st, const struct th_store_batch *batch, int64_t now_ms,
                           struct th_store_match_result *results)
{
    enum th_err rc;

    if (st == NULL || batch == NULL || !batch_ok(batch, results)) {
        return TH_EINVAL;
    }
    /* IMMEDIATE takes the write lock up front: two writers never both read a window and then
     * fail to upgrade, they queue on the busy timeout instead. */
    rc = tx_begin(st);
    if (rc == TH_OK) {
        rc = apply_all(st, batch, now_ms, results);
    }
    if (rc == TH_OK) {
        rc = tx_commit(st);
    }
    if (rc != TH_OK) {
        tx_rollback(st);
        /* Nothing was applied, so no result may claim otherwise. */
        if (batch->nmatches > 0) {
            memset(results, 0, batch->nmatches * sizeof(*results));
        }
    }
    return rc;
}

/* ---- alerts and rule errors ------------------------------------------------------------- */

/* The stored document with the columns laid over it: the database, not the document, is the
 * truth for count, status and times. */
static json_t *alert_json(sqlite3_stmt *s)
{
    const char *doc = col_text(s, 9);
    json_t *stored = doc == NULL ? NULL : json_loads(doc, 0, NULL);
    /* Identity first, so a person reading a console line sees what the alert is at once. */
    json_t *obj = json_object();

    json_set_text(obj, "id", col_text(s, 0));
    json_set_text(obj, "rule", col_text(s, 1));
    json_set_text(obj, "dedup_key", col_text(s, 2));
    json_set_text(obj, "status", col_text(s, 3));
    json_object_set_new(obj, "event_count", json_integer(sqlite3_column_int64(s, 4)));
    json_set_time(obj, "first_seen", sqlite3_column_int64(s, 5));
    json_set_time(obj, "last_seen", sqlite3_column_int64(s, 6));
    json_set_time(obj, "created_at", sqlite3_column_int64(s, 7));
    json_set_time(obj, "updated_at", sqlite3_column_int64(s, 8));
    if (json_is_object(stored)) {
        json_object_update_missing(obj, stored);
    }
    json_decref(stored);
    return obj;
}

enum th_err th_store_alert_get(struct th_store *st, const char *alert_id, json_t **out)
{
    const struct param p[] = {p_text(alert_id)};

    if (st == NULL || alert_id == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return stmt_get_one(st, S_ALERT_GET, p, NPARAMS(p), alert_json, "read alert", out);
}

enum th_err th_store_alerts_recent(struct th_store *st, size_t limit, json_t **out)
{
    const struct param p[] = {p_int(limit > INT64_MAX ? INT64_MAX : (int64_t)limit)};

    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return stmt_collect(st, S_ALERT_RECENT, p, NPARAMS(p), alert_json, "list alerts", out);
}

static json_t *rule_error_json(sqlite3_stmt *s)
{
    const char *event = col_text(s, 4);
    json_t *ev = event == NULL ? NULL : json_loads(event, JSON_DECODE_ANY, NULL);
    json_t *obj = json_object();

    json_object_set_new(obj, "id", json_integer(sqlite3_column_int64(s, 0)));
    json_set_text(obj, "rule", col_text(s, 1));
    json_set_text(obj, "event_id", col_text(s, 2));
    json_set_text(obj, "error", col_text(s, 3));
    json_object_set_new(obj, "event", ev == NULL ? json_null() : ev);
    json_set_time(obj, "created_at", sqlite3_column_int64(s, 5));
    return obj;
}

enum th_err th_store_rule_error_get(struct th_store *st, int64_t id, json_t **out)
{
    const struct param p[] = {p_int(id)};

    if (st == NULL || out == NULL) {
        return TH_EINVAL;
    }
    *out = NULL;
    return stmt_get_one(st, S_RULE_ERROR_GET, p, NPARAMS(p), rule_error_json, "read rule error",
                        out);
}

/* ---- outbox ----------------------------------------------------------------------------- */

static void outbox_row_read(sqlite3_stmt *s, struct th_outbox_row *row)
{
    const char *dest = col_text(s, 1);
    const char *ref = col_text(s, 3);

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
    const struct param p[] = {p_text(destination), p_int(now_ms),
                              p_int(max > INT64_MAX ? INT64_MAX : (int64_t)max)};
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
    rc = stmt_query(st, S_OUTBOX_DUE, p, NPARAMS(p), "read due deliveries", &s, &row);
    while (rc == TH_OK && row && *n < max) {
        outbox_row_read(s, &rows[(*n)++]);
        rc = stmt_next(st, s, "read due deliveries", &row);
    }
    if (rc == TH_OK && row) {
        stmt_finish(s);
    }
    if (rc != TH_OK) {
        *n = 0;
    }
    return rc;
}

enum th_err th_store_outbox_done(struct th_store *st, int64_t id, int64_t now_ms)
{
    const struct param p[] = {p_int(id), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return stmt_exec_one(st, S_OUTBOX_DONE, p, NPARAMS(p), "mark delivered");
}

enum th_err th_store_outbox_retry(struct th_store *st, int64_t id, int64_t next_ms,
                                  const char *error, int64_t now_ms)
{
    const struct param p[] = {p_int(id), p_int(next_ms), p_text(error), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return stmt_exec_one(st, S_OUTBOX_RETRY, p, NPARAMS(p), "schedule retry");
}

enum th_err th_store_outbox_dead(struct th_store *st, int64_t id, const char *error, int64_t now_ms)
{
    const struct param p[] = {p_int(id), p_text(error), p_int(now_ms)};

    if (st == NULL) {
        return TH_EINVAL;
    }
    return stmt_exec_one(st, S_OUTBOX_DEAD, p, NPARAMS(p), "park dead letter");
}

enum th_err th_store_outbox_counts(struct th_store *st, const char *destination, size_t *pending,
                                   size_t *dead)
{
    const struct param p[] = {p_text(destination)};
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc;

    if (st == NULL || pending == NULL || dead == NULL) {
        return TH_EINVAL;
    }
    *pending = 0;
    *dead = 0;
    rc = stmt_query(st, S_OUTBOX_COUNTS, p, NPARAMS(p), "count deliveries", &s, &row);
    if (rc == TH_OK && row) {
        *pending = (size_t)sqlite3_column_int64(s, 0);
        *dead = (size_t)sqlite3_column_int64(s, 1);
        stmt_finish(s);
    }
    return rc;
}

enum th_err th_store_outbox_next_due(struct th_store *st, int64_t *next_ms)
{
    sqlite3_stmt *s = NULL;
    bool row = false;
    enum th_err rc;

    if (st == NULL || next_ms == NULL) {
        return TH_EINVAL;
    }
    *next_ms = INT64_MAX;
    rc = stmt_query(st, S_OUTBOX_NEXT, NULL, 0, "find next delivery", &s, &row);
    if (rc == TH_OK && row) {
        if (sqlite3_column_type(s, 0) != SQLITE_NULL) {
            *next_ms = sqlite3_column_int64(s, 0);
        }
        stmt_finish(s);
    }
    return rc;
}

/* ---- housekeeping ----------------------------------------------------------------------- */

static enum th_err prune_all(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms)
{
    const struct {
        enum stmt_id id;
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
        const struct param p[] = {p_int(steps[i].before_ms)};
        rc = stmt_exec(st, steps[i].id, p, NPARAMS(p), steps[i].what);
    }
    return rc;
}

enum th_err th_store_prune(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms)
{
    enum th_err rc;

    if (st == NULL || seen_ttl_ms < 0) {
        return TH_EINVAL;
    }
    rc = tx_begin(st);
    if (rc == TH_OK) {
        rc = prune_all(st, now_ms, seen_ttl_ms);
    }
    if (rc == TH_OK) {
        rc = tx_commit(st);
    }
    if (rc != TH_OK) {
        tx_rollback(st);
    }
    return rc;
}

enum th_err th_store_check_writable(struct th_store *st)
{
    const struct param p[] = {p_int(th_clock_now_ms())};
    int src;
    enum th_err rc;

    if (st == NULL) {
        return TH_EINVAL;
    }
    rc = tx_begin(st);
    if (rc == TH_OK) {
        rc = stmt_exec(st, S_PROBE, p, NPARAMS(p), "probe write");
    }
    /* A rolled-back change never reaches the disk by itself. Flushing the dirty page into the
     * WAL (uncommitted, so no reader sees it) makes a full disk or a read-only file system
     * fail here, where readiness can report it, rather than on the next request's commit. */
    if (rc == TH_OK) {
        src = sqlite3_db_cacheflush(st->db);
        rc = src == SQLITE_OK ? TH_OK : db_fail(st, src, "probe flush");
    }
    tx_rollback(st);
    return rc;
}
