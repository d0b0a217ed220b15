/* SPDX-License-Identifier: MIT */
/*
 * test_store.c -- the durable store against a real SQLite file in a fresh temporary directory or,
 * when TH_TEST_REDIS_URL is set (tests/run_with_redis.sh), against that Redis database, flushed
 * before each test. The same cases run on both backends; the few that are about SQLite's files
 * skip under Redis, and the Redis cases (replicas, a dead Redis) skip under SQLite.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <sqlite3.h>

#include "trailhook/clock.h"
#include "trailhook/config.h"
#include "trailhook/hash.h"
#include "trailhook/store.h"
#include "../src/store_int.h"
#include "../src/store_redis.h"
#include "../src/store_redis_int.h"

#define RULE   "AWS.CloudTrail.AMIModifiedForPublicAccess"
#define T0     1700000000000LL /* the tests' "now": 2023-11-14T22:13:20Z */
#define MINUTE 60000LL
#define DAY    86400000LL

struct fx {
    char dir[64];        /* the mkdtemp directory, removed by teardown */
    char state_dir[128]; /* dir/state: does not exist until a read-write open */
    struct th_store *st; /* read-write handle, NULL for the open tests */
};

static const char *const two_dests[] = {"slack", "pagerduty"};
static const char *const webhook_only[] = {"webhook"};

/* Set from TH_TEST_REDIS_URL: the store under test is that Redis database. */
static const char *redis_url;
static struct th_config redis_cfg;

/* Skips a test that is about SQLite's files (or about Redis) on the other backend. */
#define SQLITE_ONLY()                                                                              \
    do {                                                                                           \
        if (redis_url != NULL) {                                                                   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)
#define REDIS_ONLY()                                                                               \
    do {                                                                                           \
        if (redis_url == NULL) {                                                                   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- fixtures and helpers --------------------------------------------------------------- */

static void rm_rf(const char *path)
{
    struct stat sb;
    DIR *d = NULL;
    struct dirent *e = NULL;

    if (lstat(path, &sb) != 0) {
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        d = opendir(path);
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char child[512];
                snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
                rm_rf(child);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        rmdir(path);
        return;
    }
    unlink(path);
}

static int setup_dir(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/th_store_XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->state_dir, sizeof(fx->state_dir), "%s/state", fx->dir);
    *state = fx;
    return 0;
}

/* A plain connection to the test database, for what the store does not offer. */
static redisContext *redis_raw(void)
{
    char host[64] = "";
    int port = 0;
    int db = 0;
    redisContext *c = NULL;
    redisReply *r = NULL;

    if (sscanf(redis_url, "redis://%63[^:/]:%d/%d", host, &port, &db) < 2) {
        return NULL;
    }
    c = redisConnect(host, port);
    if (c == NULL || c->err != 0) {
        redisFree(c);
        return NULL;
    }
    r = redisCommand(c, "SELECT %d", db);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Runs one command on a fresh plain connection; false when it failed. */
static bool redis_run(const char *cmd)
{
    redisContext *c = redis_raw();
    redisReply *r = c == NULL ? NULL : redisCommand(c, cmd);
    bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;

    freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* Opens a handle on the fixture's store: SQLite under state_dir, or the Redis database. */
static enum th_err open_store(const struct fx *fx, enum th_store_mode mode, struct th_store **out,
                              char *err, size_t errlen)
{
    if (redis_url != NULL) {
        return th_store_open_config(&redis_cfg, mode, out, err, errlen);
    }
    return th_store_open(fx->state_dir, mode, out, err, errlen);
}

static int setup(void **state)
{
    struct fx *fx = NULL;
    char err[256];

    if (setup_dir(state) != 0) {
        return -1;
    }
    fx = *state;
    if (redis_url != NULL && !redis_run("FLUSHDB")) {
        fprintf(stderr, "setup: cannot flush the redis database\n");
        return -1;
    }
    if (redis_url != NULL) {
        /* Undone here too in case test_redis_refused_writes_fail_the_probe failed midway. */
        (void)redis_run("CONFIG SET min-replicas-to-write 0");
    }
    if (open_store(fx, TH_STORE_READWRITE, &fx->st, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    th_store_free(fx->st);
    rm_rf(fx->dir);
    free(fx);
    return 0;
}

static struct th_store_match match_of(const char *key, const char *event_id, int64_t event_ms,
                                      const json_t *doc)
{
    struct th_store_match m = {
        .rule_id = RULE,
        .dedup_key = key,
        .event_id = event_id,
        .event_time_ms = event_ms,
        .dedup_period_minutes = 60,
        .threshold = 1,
        .title = "AMI made public",
        .severity = "Medium",
        .doc = doc,
        .destinations = two_dests,
        .ndestinations = 2,
    };
    return m;
}

static enum th_err apply_one(struct th_store *st, const struct th_store_match *m, int64_t now_ms,
                             struct th_store_match_result *res)
{
    struct th_store_batch b = {.matches = m, .nmatches = 1};

    return th_store_apply(st, &b, now_ms, res);
}

/* Applies a default match for @p key / @p event_id at @p now_ms (event time = now). */
static struct th_store_match_result hit(struct th_store *st, const char *key, const char *event_id,
                                        int64_t now_ms)
{
    struct th_store_match m = match_of(key, event_id, now_ms, NULL);
    struct th_store_match_result res;

    assert_int_equal(apply_one(st, &m, now_ms, &res), TH_OK);
    return res;
}

/* What replicas must agree on: sha256(rule "\n" key "\n" window start), first 32 hex chars. */
static void expected_id(const char *key, int64_t window_start_ms, char out[33])
{
    unsigned char digest[TH_SHA256_LEN];
    char material[256];

    snprintf(material, sizeof(material), "%s\n%s\n%lld", RULE, key, (long long)window_start_ms);
    th_sha256(material, strlen(material), digest);
    th_hex(digest, 16, out);
}

static size_t pending(struct th_store *st, const char *dest)
{
    size_t p = 0;
    size_t d = 0;

    assert_int_equal(th_store_outbox_counts(st, dest, &p, &d), TH_OK);
    return p;
}

static json_int_t alert_count(struct th_store *st, const char *id)
{
    json_t *a = NULL;
    json_int_t n;

    assert_int_equal(th_store_alert_get(st, id, &a), TH_OK);
    n = json_integer_value(json_object_get(a, "event_count"));
    json_decref(a);
    return n;
}

static void assert_json_str(const json_t *obj, const char *key, const char *want)
{
    const json_t *v = json_object_get(obj, key);

    assert_non_null(v);
    assert_string_equal(json_string_value(v), want);
}

static void assert_json_time(const json_t *obj, const char *key, int64_t ms)
{
    char buf[32];

    th_clock_format_iso8601(ms, buf);
    assert_json_str(obj, key, buf);
}

static size_t recent_alerts(struct th_store *st)
{
    json_t *arr = NULL;
    size_t n;

    assert_int_equal(th_store_alerts_recent(st, 100, &arr), TH_OK);
    n = json_array_size(arr);
    json_decref(arr);
    return n;
}

/* ---- opening ---------------------------------------------------------------------------- */

static void test_open_creates_state_dir_and_wal_db(void **state)
{
    struct fx *fx = *state;
    char nested[256];
    char db[300];
    char err[256];
    struct stat sb;
    sqlite3 *raw = NULL;
    sqlite3_stmt *s = NULL;

    SQLITE_ONLY();

    snprintf(nested, sizeof(nested), "%s/a/b", fx->state_dir);
    assert_int_equal(th_store_open(nested, TH_STORE_READWRITE, &fx->st, err, sizeof(err)), TH_OK);
    assert_int_equal(stat(nested, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(db, sizeof(db), "%s/%s", nested, TH_STORE_DB_NAME);
    assert_int_equal(stat(db, &sb), 0);

    /* The journal mode is a property of the file, visible to any other connection. */
    assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(raw);

    /* Opening again (a restart, or a second thread's handle) finds the schema in place. */
    struct th_store *again = NULL;
    assert_int_equal(th_store_open(nested, TH_STORE_READWRITE, &again, err, sizeof(err)), TH_OK);
    th_store_free(again);
}

static void test_open_readonly_missing_creates_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store *st = NULL;
    char err[256] = "";
    struct stat sb;

    SQLITE_ONLY();

    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READONLY, &st, err, sizeof(err)),
                     TH_ENOTFOUND);
    assert_null(st);
    assert_non_null(strstr(err, fx->state_dir));
    assert_int_equal(stat(fx->state_dir, &sb), -1);
    assert_int_equal(errno, ENOENT);

    /* An existing directory without a database: still not found, and still nothing created. */
    assert_int_equal(mkdir(fx->state_dir, 0700), 0);
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READONLY, &st, err, sizeof(err)),
                     TH_ENOTFOUND);
    char db[300];
    snprintf(db, sizeof(db), "%s/%s", fx->state_dir, TH_STORE_DB_NAME);
    assert_int_equal(stat(db, &sb), -1);
}

/* ---- accounts --------------------------------------------------------------------------- */

static void test_accounts_add_check_expiry_boundary(void **state)
{
    struct fx *fx = *state;
    bool is_new = false;

    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + 1000, "operator", T0),
                     TH_OK);
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0 + 999, &is_new), TH_OK);
    assert_true(is_new);
    /* Expiring exactly at the event's time means it is no longer new. */
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0 + 1000, &is_new), TH_OK);
    assert_false(is_new);
    assert_int_equal(th_store_account_check(fx->st, "999999999999", T0, &is_new), TH_OK);
    assert_false(is_new);
}

static void test_accounts_later_expiry_wins(void **state)
{
    struct fx *fx = *state;
    bool is_new = false;

    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + DAY, "operator", T0), TH_OK);
    /* An earlier expiry does not shorten the entry... */
    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + 1000, "learned", T0), TH_OK);
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0 + DAY - 1, &is_new), TH_OK);
    assert_true(is_new);
    /* ...and a later one extends it. */
    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + 3 * DAY, "learned", T0),
                     TH_OK);
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0 + 2 * DAY, &is_new), TH_OK);
    assert_true(is_new);
}

static void test_accounts_remove_and_list(void **state)
{
    struct fx *fx = *state;
    json_t *list = NULL;
    bool is_new = true;

    assert_int_equal(th_store_account_add(fx->st, "222222222222", T0 + DAY, "operator", T0), TH_OK);
    assert_int_equal(th_store_account_add(fx->st, "111111111111", T0 + 2 * DAY, "operator", T0),
                     TH_OK);
    assert_int_equal(th_store_accounts_list(fx->st, &list), TH_OK);
    assert_int_equal(json_array_size(list), 2);
    const json_t *first = json_array_get(list, 0);
    assert_json_str(first, "account_id", "111111111111"); /* ordered by id */
    assert_json_time(first, "expires_at", T0 + 2 * DAY);
    assert_json_str(first, "source", "operator");
    assert_json_time(first, "added_at", T0);
    json_decref(list);

    assert_int_equal(th_store_account_remove(fx->st, "111111111111"), TH_OK);
    assert_int_equal(th_store_account_check(fx->st, "111111111111", T0, &is_new), TH_OK);
    assert_false(is_new);
    assert_int_equal(th_store_account_remove(fx->st, "111111111111"), TH_ENOTFOUND);
    assert_int_equal(th_store_accounts_list(fx->st, &list), TH_OK);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
}

static void test_accounts_learned_through_apply(void **state)
{
    struct fx *fx = *state;
    struct th_store_learned_account acct = {.account_id = "444455556666", .expires_ms = T0 + DAY};
    struct th_store_batch b = {.accounts = &acct, .naccounts = 1};
    json_t *list = NULL;
    bool is_new = false;

    assert_int_equal(th_store_apply(fx->st, &b, T0, NULL), TH_OK);
    assert_int_equal(th_store_account_check(fx->st, "444455556666", T0, &is_new), TH_OK);
    assert_true(is_new);
    assert_int_equal(th_store_accounts_list(fx->st, &list), TH_OK);
    assert_json_str(json_array_get(list, 0), "source", "learned");
    json_decref(list);
}

/* ---- alerts and dedup ------------------------------------------------------------------- */

static void test_apply_one_match_creates_alert_and_outbox(void **state)
{
    struct fx *fx = *state;
    json_t *doc = json_pack("{s:s, s:s, s:i}", "eventName", "ModifyImageAttribute", "status",
                            "from the doc", "event_count", 99);
    struct th_store_match m = match_of("k1", "ev-1", T0 - 5000, doc);
    struct th_store_match_result res;
    struct th_outbox_row rows[4];
    char want[33];
    size_t n = 0;
    json_t *a = NULL;

    assert_int_equal(apply_one(fx->st, &m, T0, &res), TH_OK);
    expected_id("k1", T0, want);
    assert_string_equal(res.alert_id, want);
    assert_true(res.new_alert);
    assert_false(res.duplicate);

    /* One pending row per destination of the match, due now. */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(th_store_outbox_due(fx->st, two_dests[i], T0, rows, 4, &n), TH_OK);
        assert_int_equal(n, 1);
        assert_string_equal(rows[0].destination, two_dests[i]);
        assert_int_equal(rows[0].kind, TH_OUTBOX_ALERT);
        assert_string_equal(rows[0].ref, want);
        assert_int_equal(rows[0].attempts, 0);
        assert_int_equal(rows[0].next_attempt_ms, T0);
    }
    assert_int_equal(pending(fx->st, "webhook"), 0);

    assert_int_equal(th_store_alert_get(fx->st, want, &a), TH_OK);
    assert_json_str(a, "id", want);
    assert_json_str(a, "rule", RULE);
    assert_json_str(a, "dedup_key", "k1");
    assert_json_str(a, "status", "open"); /* the column wins over the doc's key */
    assert_int_equal(json_integer_value(json_object_get(a, "event_count")), 1);
    assert_json_time(a, "first_seen", T0 - 5000);
    assert_json_time(a, "last_seen", T0 - 5000);
    assert_json_time(a, "created_at", T0);
    assert_json_time(a, "updated_at", T0);
    assert_json_str(a, "eventName", "ModifyImageAttribute"); /* the doc's own keys stay */
    json_decref(a);
    json_decref(doc);

    assert_int_equal(th_store_alert_get(fx->st, "0123456789abcdef0123456789abcdef", &a),
                     TH_ENOTFOUND);
    assert_null(a);
}

static void test_duplicate_event_id_counts_once(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result again = hit(fx->st, "k1", "ev-1", T0 + 1000);

    assert_true(again.duplicate);
    assert_false(again.new_alert);
    assert_string_equal(again.alert_id, first.alert_id);
    assert_int_equal(alert_count(fx->st, first.alert_id), 1);
    assert_int_equal(pending(fx->st, "slack"), 1);
}

static void test_second_event_in_window_updates_count_not_pager(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result second = hit(fx->st, "k1", "ev-2", T0 + 10 * MINUTE);
    json_t *a = NULL;

    assert_string_equal(second.alert_id, first.alert_id);
    assert_false(second.new_alert);
    assert_false(second.duplicate);
    assert_int_equal(pending(fx->st, "slack"), 1);
    assert_int_equal(pending(fx->st, "pagerduty"), 1);
    assert_int_equal(th_store_alert_get(fx->st, first.alert_id, &a), TH_OK);
    assert_int_equal(json_integer_value(json_object_get(a, "event_count")), 2);
    assert_json_time(a, "first_seen", T0);
    assert_json_time(a, "last_seen", T0 + 10 * MINUTE);
    assert_json_time(a, "updated_at", T0 + 10 * MINUTE);
    json_decref(a);
}

static void test_event_after_window_end_opens_new_alert(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result last_in = hit(fx->st, "k1", "ev-2", T0 + 60 * MINUTE - 1);
    struct th_store_match_result next = hit(fx->st, "k1", "ev-3", T0 + 60 * MINUTE);
    char want[33];

    assert_string_equal(last_in.alert_id, first.alert_id);
    assert_string_not_equal(next.alert_id, first.alert_id);
    assert_true(next.new_alert);
    expected_id("k1", T0 + 60 * MINUTE, want);
    assert_string_equal(next.alert_id, want);
    assert_int_equal(alert_count(fx->st, first.alert_id), 2);
    assert_int_equal(alert_count(fx->st, next.alert_id), 1);
    assert_int_equal(pending(fx->st, "slack"), 2);
}

static void test_threshold_waits_then_carries_first_doc(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result res;
    json_t *docs[3];
    json_t *a = NULL;
    const char *ids[] = {"ev-1", "ev-2", "ev-3"};

    for (int i = 0; i < 3; i++) {
        docs[i] = json_pack("{s:i}", "n", i + 1);
        struct th_store_match m = match_of("k1", ids[i], T0 + i * MINUTE, docs[i]);
        m.threshold = 3;
        assert_int_equal(apply_one(fx->st, &m, T0 + i * MINUTE, &res), TH_OK);
        assert_int_equal(res.new_alert, i == 2);
        if (i < 2) {
            assert_string_equal(res.alert_id, "");
            assert_int_equal(pending(fx->st, NULL), 0);
        }
    }
    assert_int_equal(th_store_alert_get(fx->st, res.alert_id, &a), TH_OK);
    assert_int_equal(json_integer_value(json_object_get(a, "event_count")), 3);
    assert_int_equal(json_integer_value(json_object_get(a, "n")), 1);
    assert_json_time(a, "first_seen", T0);
    assert_json_time(a, "last_seen", T0 + 2 * MINUTE);
    json_decref(a);
    assert_int_equal(pending(fx->st, NULL), 2);

    /* A retry of an event that counted below the threshold is still a duplicate. */
    struct th_store_match m = match_of("k1", "ev-1", T0, docs[0]);
    m.threshold = 3;
    assert_int_equal(apply_one(fx->st, &m, T0 + 3 * MINUTE, &res), TH_OK);
    assert_true(res.duplicate);
    assert_string_equal(res.alert_id, "");
    for (int i = 0; i < 3; i++) {
        json_decref(docs[i]);
    }
}

static void test_different_keys_different_alerts(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result a = hit(fx->st, "123456789012/us-east-1/ami-1", "ev-1", T0);
    struct th_store_match_result b = hit(fx->st, "123456789012/us-east-1/ami-2", "ev-2", T0);

    assert_true(a.new_alert);
    assert_true(b.new_alert);
    assert_string_not_equal(a.alert_id, b.alert_id);
    assert_int_equal(pending(fx->st, "slack"), 2);
    assert_int_equal(recent_alerts(fx->st), 2);
}

static void test_same_key_twice_in_one_batch(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m[4] = {
        match_of("k1", "ev-1", T0, NULL), match_of("k1", "ev-2", T0, NULL),
        match_of("k1", "ev-2", T0, NULL), /* the same record twice in one body */
        match_of("k1", NULL, T0, NULL),   /* no eventID: never a duplicate */
    };
    struct th_store_batch b = {.matches = m, .nmatches = 4};
    struct th_store_match_result res[4];

    assert_int_equal(th_store_apply(fx->st, &b, T0, res), TH_OK);
    assert_true(res[0].new_alert);
    assert_false(res[1].new_alert);
    assert_false(res[1].duplicate);
    assert_true(res[2].duplicate);
    assert_false(res[3].duplicate);
    for (size_t i = 1; i < 4; i++) {
        assert_string_equal(res[i].alert_id, res[0].alert_id);
    }
    assert_int_equal(alert_count(fx->st, res[0].alert_id), 3);
    assert_int_equal(pending(fx->st, "slack"), 1);
    assert_int_equal(recent_alerts(fx->st), 1);
}

static void test_null_event_ids_all_count(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", NULL, T0);
    struct th_store_match_result second = hit(fx->st, "k1", NULL, T0 + 1);

    assert_false(second.duplicate);
    assert_int_equal(alert_count(fx->st, first.alert_id), 2);
}

static void test_alerts_recent_newest_first(void **state)
{
    struct fx *fx = *state;
    json_t *arr = NULL;
    struct th_store_match_result r[3] = {
        hit(fx->st, "k1", "ev-1", T0),
        hit(fx->st, "k2", "ev-2", T0 + 1),
        hit(fx->st, "k3", "ev-3", T0 + 2),
    };

    assert_int_equal(th_store_alerts_recent(fx->st, 2, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 2);
    assert_json_str(json_array_get(arr, 0), "id", r[2].alert_id);
    assert_json_str(json_array_get(arr, 1), "id", r[1].alert_id);
    assert_json_str(json_array_get(arr, 0), "status", "open");
    json_decref(arr);
    assert_int_equal(th_store_alerts_recent(fx->st, 0, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
}

static void test_invalid_batch_applies_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m[2] = {match_of("k1", "ev-1", T0, NULL),
                                  match_of("k2", "ev-2", T0, NULL)};
    struct th_store_batch b = {.matches = m, .nmatches = 2};
    struct th_store_match_result res[2];

    m[1].dedup_key = NULL;
    assert_int_equal(th_store_apply(fx->st, &b, T0, res), TH_EINVAL);
    assert_int_equal(recent_alerts(fx->st), 0);
    assert_int_equal(pending(fx->st, NULL), 0);
}

/* ---- rule errors ------------------------------------------------------------------------ */

static void test_rule_error_kept_and_outboxed_to_its_destinations(void **state)
{
    struct fx *fx = *state;
    json_t *event = json_pack("{s:s, s:[i]}", "eventID", "ev-bad", "items", 7);
    struct th_store_rule_error re = {
        .rule_id = RULE,
        .event_id = "ev-bad",
        .error = "launchPermission.add.items[0] is not an object",
        .event = event,
        .destinations = webhook_only,
        .ndestinations = 1,
    };
    struct th_store_batch b = {.rule_errors = &re, .nrule_errors = 1};
    struct th_outbox_row row;
    size_t n = 0;
    json_t *got = NULL;

    assert_int_equal(th_store_apply(fx->st, &b, T0, NULL), TH_OK);
    assert_int_equal(pending(fx->st, "slack"), 0);
    assert_int_equal(pending(fx->st, "pagerduty"), 0);
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0, &row, 1, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(row.kind, TH_OUTBOX_RULE_ERROR);

    assert_int_equal(th_store_rule_error_get(fx->st, strtoll(row.ref, NULL, 10), &got), TH_OK);
    assert_int_equal(json_integer_value(json_object_get(got, "id")), strtoll(row.ref, NULL, 10));
    assert_json_str(got, "rule", RULE);
    assert_json_str(got, "event_id", "ev-bad");
    assert_json_str(got, "error", re.error);
    assert_true(json_equal(json_object_get(got, "event"), event));
    assert_json_time(got, "created_at", T0);
    json_decref(got);
    json_decref(event);
    assert_int_equal(th_store_rule_error_get(fx->st, 9999, &got), TH_ENOTFOUND);
}

/* ---- outbox ----------------------------------------------------------------------------- */

static void test_outbox_due_retry_done(void **state)
{
    struct fx *fx = *state;
    struct th_outbox_row rows[4];
    size_t n = 9;
    int64_t next = 0;

    hit(fx->st, "k1", "ev-1", T0);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 - 1, rows, 4, &n), TH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    int64_t slack_id = rows[0].id;

    assert_int_equal(th_store_outbox_retry(fx->st, slack_id, T0 + 5000, "HTTP 503", T0), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + 4999, rows, 4, &n), TH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(th_store_outbox_next_due(fx->st, NULL, &next), TH_OK);
    assert_int_equal(next, T0); /* pagerduty's row is still due now */
    assert_int_equal(th_store_outbox_due(fx->st, "pagerduty", T0, rows, 4, &n), TH_OK);
    assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0), TH_OK);
    assert_int_equal(th_store_outbox_next_due(fx->st, NULL, &next), TH_OK);
    assert_int_equal(next, T0 + 5000);

    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + 5000, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].attempts, 1);
    assert_int_equal(rows[0].created_ms, T0);
    assert_int_equal(th_store_outbox_done(fx->st, slack_id, T0 + 5000), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + DAY, rows, 4, &n), TH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(pending(fx->st, NULL), 0);
    assert_int_equal(th_store_outbox_next_due(fx->st, NULL, &next), TH_OK);
    assert_int_equal(next, INT64_MAX);
    assert_int_equal(th_store_outbox_done(fx->st, 424242, T0), TH_ENOTFOUND);
    assert_int_equal(th_store_outbox_retry(fx->st, 424242, T0, "x", T0), TH_ENOTFOUND);
}

static void test_outbox_dead_letters_and_counts(void **state)
{
    struct fx *fx = *state;
    struct th_outbox_row rows[4];
    size_t n = 0;
    size_t p = 0;
    size_t d = 0;

    hit(fx->st, "k1", "ev-1", T0);
    hit(fx->st, "k2", "ev-2", T0 + 1);
    hit(fx->st, "k3", "ev-3", T0 + 2);
    /* At most max rows, oldest first. */
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + 2, rows, 2, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_true(rows[0].id < rows[1].id);
    assert_int_equal(rows[0].created_ms, T0);

    assert_int_equal(th_store_outbox_dead(fx->st, rows[0].id, "400 invalid_payload", T0 + 3),
                     TH_OK);
    assert_int_equal(th_store_outbox_counts(fx->st, "slack", &p, &d), TH_OK);
    assert_int_equal(p, 2);
    assert_int_equal(d, 1);
    assert_int_equal(th_store_outbox_counts(fx->st, NULL, &p, &d), TH_OK);
    assert_int_equal(p, 5);
    assert_int_equal(d, 1);
    /* A dead letter is never offered again. */
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + DAY, rows, 4, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(th_store_outbox_dead(fx->st, 424242, "x", T0), TH_ENOTFOUND);
}

/* ---- durability and concurrency --------------------------------------------------------- */

static void test_state_survives_close_and_reopen(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result res = hit(fx->st, "k1", "ev-1", T0);
    struct th_store *ro = NULL;
    char err[256];
    bool is_new = false;

    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + DAY, "operator", T0), TH_OK);
    th_store_free(fx->st);
    fx->st = NULL;

    assert_int_equal(open_store(fx, TH_STORE_READWRITE, &fx->st, err, sizeof(err)), TH_OK);
    assert_int_equal(alert_count(fx->st, res.alert_id), 1);
    assert_int_equal(pending(fx->st, "slack"), 1);
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0, &is_new), TH_OK);
    assert_true(is_new);
    /* The dedup window and seen IDs came back too. */
    assert_true(hit(fx->st, "k1", "ev-1", T0 + 1).duplicate);
    assert_string_equal(hit(fx->st, "k1", "ev-2", T0 + 2).alert_id, res.alert_id);

    /* trailhook eval reads the same state through a read-only handle. */
    assert_int_equal(open_store(fx, TH_STORE_READONLY, &ro, err, sizeof(err)), TH_OK);
    assert_int_equal(alert_count(ro, res.alert_id), 2);
    th_store_free(ro);
}

#define WORKERS           2
#define EVENTS_PER_WORKER 50

struct worker {
    const struct fx *fx;
    int index;
    int failures;
    int new_alerts;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct th_store *st = NULL;
    char err[256];

    if (open_store(w->fx, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        w->failures = EVENTS_PER_WORKER;
        return NULL;
    }
    for (int i = 0; i < EVENTS_PER_WORKER; i++) {
        char id[32];
        snprintf(id, sizeof(id), "w%d-ev-%d", w->index, i);
        struct th_store_match m = match_of("k1", id, T0 + i, NULL);
        struct th_store_match_result res;
        if (apply_one(st, &m, T0 + i, &res) != TH_OK) {
            w->failures++;
        } else if (res.new_alert) {
            w->new_alerts++;
        }
    }
    th_store_free(st);
    return NULL;
}

static void test_two_handles_concurrently_lose_no_counts(void **state)
{
    struct fx *fx = *state;
    pthread_t threads[WORKERS];
    struct worker workers[WORKERS];
    json_t *arr = NULL;
    int new_alerts = 0;

    for (int i = 0; i < WORKERS; i++) {
        workers[i] = (struct worker){.fx = fx, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].failures, 0);
        new_alerts += workers[i].new_alerts;
    }
    assert_int_equal(new_alerts, 1);
    assert_int_equal(th_store_alerts_recent(fx->st, 10, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "event_count")),
                     WORKERS * EVENTS_PER_WORKER);
    json_decref(arr);
    assert_int_equal(pending(fx->st, "slack"), 1);
}

static void test_apply_on_read_only_handle_fails_cleanly(void **state)
{
    struct fx *fx = *state;
    struct th_store *ro = NULL;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;
    char err[256];
    bool is_new = false;

    assert_int_equal(th_store_account_add(fx->st, "111122223333", T0 + DAY, "operator", T0), TH_OK);
    assert_int_equal(open_store(fx, TH_STORE_READONLY, &ro, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_account_check(ro, "111122223333", T0, &is_new), TH_OK);
    assert_true(is_new);

    memset(&res, 0x5a, sizeof(res));
    assert_int_equal(apply_one(ro, &m, T0, &res), TH_EIO);
    assert_string_equal(res.alert_id, "");
    assert_false(res.new_alert);
    assert_string_not_equal(th_store_last_error(ro), "");
    assert_int_equal(th_store_check_writable(ro), TH_EIO);
    assert_int_equal(th_store_account_add(ro, "999999999999", T0 + DAY, "operator", T0), TH_EIO);
    th_store_free(ro);

    assert_int_equal(recent_alerts(fx->st), 0);
    assert_int_equal(pending(fx->st, NULL), 0);
    assert_int_equal(th_store_check_writable(fx->st), TH_OK);
    /* The failed apply left no seen ID behind: the retry counts. */
    assert_true(hit(fx->st, "k1", "ev-1", T0).new_alert);
}

/* RLIMIT_FSIZE stands in for a full disk: any write past the limit fails, as with ENOSPC.
 * A fresh handle on a closed database starts with an empty WAL, so every commit must write. */
static void test_full_disk_applies_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;
    struct rlimit old;
    struct rlimit tiny;
    char err[256];
    void (*old_handler)(int) = NULL;

    SQLITE_ONLY();
    old_handler = signal(SIGXFSZ, SIG_IGN);

    th_store_free(fx->st);
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READWRITE, &fx->st, err, sizeof(err)),
                     TH_OK);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    tiny = old;
    tiny.rlim_cur = 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    enum th_err apply_rc = apply_one(fx->st, &m, T0, &res);
    enum th_err probe_rc = th_store_check_writable(fx->st);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(apply_rc, TH_EIO);
    assert_string_equal(res.alert_id, "");
    assert_int_equal(probe_rc, TH_EIO);
    assert_int_equal(th_store_check_writable(fx->st), TH_OK);
    assert_int_equal(recent_alerts(fx->st), 0);
    assert_int_equal(pending(fx->st, NULL), 0);
    /* The same handle works again once there is room. */
    assert_true(hit(fx->st, "k1", "ev-1", T0).new_alert);
}

/* ---- housekeeping ----------------------------------------------------------------------- */

static int64_t raw_count(const struct fx *fx, const char *sql)
{
    char db[300];
    sqlite3 *raw = NULL;
    sqlite3_stmt *s = NULL;
    int64_t n;

    snprintf(db, sizeof(db), "%s/%s", fx->state_dir, TH_STORE_DB_NAME);
    assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(raw);
    return n;
}

static const char *const kind_names[] = {"alert", "rule_error", "resolve"};

/* Outbox rows, in any state unless @p state says, of @p dest (NULL: all), of @p kind (-1: any)
 * and for @p ref (NULL: any): the table itself under SQLite, what operators list under Redis. */
static int64_t outbox_rows(const struct fx *fx, const char *dest, const char *state, int kind,
                           const char *ref)
{
    char sql[512];
    json_t *arr = NULL;
    int64_t n = 0;

    if (redis_url == NULL) {
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM outbox WHERE 1");
        if (dest != NULL) {
            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), " AND destination = '%s'", dest);
        }
        if (state != NULL) {
            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), " AND state = '%s'", state);
        }
        if (kind >= 0) {
            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), " AND kind = %d", kind);
        }
        if (ref != NULL) {
            snprintf(sql + strlen(sql), sizeof(sql) - strlen(sql), " AND ref = '%s'", ref);
        }
        return raw_count(fx, sql);
    }
    assert_int_equal(th_store_outbox_list(fx->st, dest, state, 100000, &arr), TH_OK);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *o = json_array_get(arr, i);
        const char *k = json_string_value(json_object_get(o, "kind"));
        const char *r = json_string_value(json_object_get(o, "ref"));
        n += (kind < 0 || strcmp(k, kind_names[kind]) == 0) && (ref == NULL || strcmp(r, ref) == 0);
    }
    json_decref(arr);
    return n;
}

static void test_prune_forgets_old_event_ids(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-old", T0);
    json_t *list = NULL;

    hit(fx->st, "k1", "ev-recent", T0 + 25 * MINUTE);
    assert_int_equal(th_store_account_add(fx->st, "111111111111", T0 - 2 * DAY, "operator", T0),
                     TH_OK);
    assert_int_equal(th_store_account_add(fx->st, "222222222222", T0 - MINUTE, "operator", T0),
                     TH_OK);
    assert_int_equal(th_store_prune(fx->st, T0 + 30 * MINUTE, 10 * MINUTE), TH_OK);

    /* The old ID is forgotten, so its retry counts again; the recent one is still known. */
    struct th_store_match_result again = hit(fx->st, "k1", "ev-old", T0 + 31 * MINUTE);
    assert_false(again.duplicate);
    assert_string_equal(again.alert_id, first.alert_id);
    assert_int_equal(alert_count(fx->st, first.alert_id), 3);
    assert_true(hit(fx->st, "k1", "ev-recent", T0 + 32 * MINUTE).duplicate);

    /* Accounts expired for more than a day go; recently expired ones stay. */
    assert_int_equal(th_store_accounts_list(fx->st, &list), TH_OK);
    assert_int_equal(json_array_size(list), 1);
    assert_json_str(json_array_get(list, 0), "account_id", "222222222222");
    json_decref(list);
}

static void test_prune_drops_week_old_deliveries_only(void **state)
{
    struct fx *fx = *state;
    struct th_outbox_row rows[2];
    size_t n = 0;

    hit(fx->st, "k1", "ev-1", T0);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0, rows, 2, &n), TH_OK);
    assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "pagerduty", T0, rows, 2, &n), TH_OK);
    assert_int_equal(th_store_outbox_dead(fx->st, rows[0].id, "400", T0), TH_OK);
    assert_int_equal(th_store_prune(fx->st, T0 + 8 * DAY, DAY), TH_OK);

    /* The delivered row is gone; the dead letter stays for an operator. */
    assert_int_equal(outbox_rows(fx, NULL, NULL, -1, NULL), 1);
    assert_int_equal(outbox_rows(fx, NULL, "dead", -1, NULL), 1);
    /* Alerts are never pruned. */
    assert_int_equal(recent_alerts(fx->st), 1);
}

/* ---- resolutions ------------------------------------------------------------------------ */

/* Applies one resolution of @p key at @p now_ms (event time one minute before). */
static void resolve(struct th_store *st, const char *key, const char *event_id, int64_t now_ms)
{
    struct th_store_resolution r = {
        .rule_id = RULE, .dedup_key = key, .event_id = event_id, .event_time_ms = now_ms};
    struct th_store_batch b = {.resolutions = &r, .nresolutions = 1};

    assert_int_equal(th_store_apply(st, &b, now_ms, NULL), TH_OK);
}

/* Outbox rows of @p kind for @p ref, in any state. */
static int64_t rows_of(const struct fx *fx, const char *dest, enum th_outbox_kind kind,
                       const char *ref)
{
    return outbox_rows(fx, dest, NULL, (int)kind, ref);
}

static void assert_status(struct th_store *st, const char *id, const char *status)
{
    json_t *a = NULL;

    assert_int_equal(th_store_alert_get(st, id, &a), TH_OK);
    assert_json_str(a, "status", status);
    json_decref(a);
}

static void test_resolution_resolves_alert_and_tells_its_destinations(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result other = hit(fx->st, "k2", "ev-2", T0);
    struct th_outbox_row rows[4];
    size_t n = 0;
    json_t *a = NULL;

    /* Whatever became of the ALERT rows, both destinations must hear of the resolution. */
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0, rows, 4, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "pagerduty", T0, rows, 4, &n), TH_OK);
    assert_int_equal(th_store_outbox_dead(fx->st, rows[0].id, "400 invalid", T0), TH_OK);

    resolve(fx->st, "k1", "rev-1", T0 + 10 * MINUTE);
    assert_int_equal(th_store_alert_get(fx->st, first.alert_id, &a), TH_OK);
    assert_json_str(a, "status", "resolved");
    assert_json_time(a, "resolved_at", T0 + 10 * MINUTE); /* the revoking event's time */
    assert_json_time(a, "updated_at", T0 + 10 * MINUTE);
    assert_int_equal(json_integer_value(json_object_get(a, "event_count")), 1);
    json_decref(a);
    assert_int_equal(th_store_alert_get(fx->st, other.alert_id, &a), TH_OK);
    assert_json_str(a, "status", "open");
    assert_null(json_object_get(a, "resolved_at"));
    json_decref(a);

    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rows_of(fx, two_dests[i], TH_OUTBOX_RESOLVE, first.alert_id), 1);
        assert_int_equal(rows_of(fx, two_dests[i], TH_OUTBOX_RESOLVE, other.alert_id), 0);
    }
    assert_int_equal(outbox_rows(fx, NULL, NULL, TH_OUTBOX_RESOLVE, NULL), 2);
    assert_int_equal(pending(fx->st, "webhook"), 0);
    /* Due now, and behind slack's still pending ALERT row of the other alert. */
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + 10 * MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].kind, TH_OUTBOX_ALERT);
    assert_string_equal(rows[0].ref, other.alert_id);
    assert_int_equal(rows[1].kind, TH_OUTBOX_RESOLVE);
    assert_string_equal(rows[1].ref, first.alert_id);
    assert_int_equal(rows[1].next_attempt_ms, T0 + 10 * MINUTE);
    assert_int_equal(rows[1].attempts, 0);
}

static void test_resolution_goes_only_where_the_alert_went(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;
    struct th_outbox_row rows[4];
    size_t n = 0;

    m.destinations = webhook_only;
    m.ndestinations = 1;
    assert_int_equal(apply_one(fx->st, &m, T0, &res), TH_OK);
    resolve(fx->st, "k1", "rev-1", T0 + MINUTE);
    assert_int_equal(pending(fx->st, "slack"), 0);
    assert_int_equal(pending(fx->st, "pagerduty"), 0);
    /* The ALERT row is still pending: the resolution waits until it is delivered. */
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0 + MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].kind, TH_OUTBOX_ALERT);
    assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0 + MINUTE), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0 + MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].kind, TH_OUTBOX_RESOLVE);
    assert_string_equal(rows[0].ref, res.alert_id);
}

static void test_resolve_waits_for_a_trigger_in_backoff(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;
    struct th_outbox_row rows[4];
    size_t n = 0;
    int64_t next = 0;

    m.destinations = webhook_only;
    m.ndestinations = 1;
    assert_int_equal(apply_one(fx->st, &m, T0, &res), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0, rows, 4, &n), TH_OK);
    /* The trigger failed and waits ten minutes; the resolution must not overtake it. */
    assert_int_equal(th_store_outbox_retry(fx->st, rows[0].id, T0 + 10 * MINUTE, "HTTP 500", T0),
                     TH_OK);
    resolve(fx->st, "k1", "rev-1", T0 + MINUTE);
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0 + 2 * MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(n, 0);
    assert_int_equal(th_store_outbox_next_due(fx->st, "webhook", &next), TH_OK);
    assert_int_equal(next, T0 + 10 * MINUTE);
    /* A trigger that became a dead letter no longer holds the resolution back. */
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0 + 10 * MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(th_store_outbox_dead(fx->st, rows[0].id, "HTTP 400", T0 + 10 * MINUTE), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "webhook", T0 + 10 * MINUTE, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].kind, TH_OUTBOX_RESOLVE);
}

/* 1 when @p event_id is remembered as seen without an alert. */
static int64_t seen_without_alert(const struct fx *fx, const char *event_id)
{
    char sql[256];
    redisContext *c = NULL;
    redisReply *r = NULL;
    int64_t n = 0;

    if (redis_url == NULL) {
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM seen_events WHERE event_id = '%s' AND alert_id IS NULL",
                 event_id);
        return raw_count(fx, sql);
    }
    c = redis_raw();
    assert_non_null(c);
    r = redisCommand(c, "HGET trailhook:seen %s", event_id);
    assert_non_null(r);
    n = r->type == REDIS_REPLY_STRING && r->len == 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void test_resolution_without_open_alert_does_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;

    resolve(fx->st, "k1", "rev-1", T0);
    assert_int_equal(recent_alerts(fx->st), 0);
    assert_int_equal(pending(fx->st, NULL), 0);
    /* Remembered, with no alert, so a retry of it is recognised. */
    assert_int_equal(seen_without_alert(fx, "resolve\nrev-1"), 1);

    /* A window still below its threshold is left alone. */
    m.threshold = 2;
    assert_int_equal(apply_one(fx->st, &m, T0 + 1, &res), TH_OK);
    assert_string_equal(res.alert_id, "");
    resolve(fx->st, "k1", "rev-2", T0 + 2);
    m.event_id = "ev-2";
    assert_int_equal(apply_one(fx->st, &m, T0 + 3, &res), TH_OK);
    assert_true(res.new_alert);
    assert_int_equal(alert_count(fx->st, res.alert_id), 2);
    assert_status(fx->st, res.alert_id, "open");
}

static void test_event_after_resolution_opens_new_alert(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result next;
    char want[33];

    resolve(fx->st, "k1", "rev-1", T0 + 5 * MINUTE);
    /* Well inside the first window's hour, yet a new exposure: a new alert and a new page. */
    next = hit(fx->st, "k1", "ev-2", T0 + 6 * MINUTE);
    assert_true(next.new_alert);
    assert_string_not_equal(next.alert_id, first.alert_id);
    expected_id("k1", T0 + 6 * MINUTE, want);
    assert_string_equal(next.alert_id, want);
    assert_status(fx->st, next.alert_id, "open");
    assert_status(fx->st, first.alert_id, "resolved");
    assert_int_equal(alert_count(fx->st, first.alert_id), 1);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rows_of(fx, two_dests[i], TH_OUTBOX_ALERT, next.alert_id), 1);
    }
    /* Its window runs from that event: later events count toward it. */
    assert_string_equal(hit(fx->st, "k1", "ev-3", T0 + 65 * MINUTE).alert_id, next.alert_id);
    assert_int_equal(alert_count(fx->st, next.alert_id), 2);
}

static void test_revocation_older_than_the_exposure_resolves_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_resolution r = {
        .rule_id = RULE, .dedup_key = "k1", .event_id = "rev-old", .event_time_ms = T0 - MINUTE};
    struct th_store_batch b = {.resolutions = &r, .nresolutions = 1};

    /* A revocation delivered late: the image was made public again after it. */
    assert_int_equal(th_store_apply(fx->st, &b, T0 + MINUTE, NULL), TH_OK);
    assert_status(fx->st, first.alert_id, "open");
    assert_int_equal(rows_of(fx, "slack", TH_OUTBOX_RESOLVE, first.alert_id), 0);
}

static void test_new_alert_in_the_resolving_millisecond_gets_new_id(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result next;
    char want[33];

    resolve(fx->st, "k1", "rev-1", T0);
    next = hit(fx->st, "k1", "ev-2", T0);
    assert_true(next.new_alert);
    assert_string_not_equal(next.alert_id, first.alert_id);
    expected_id("k1", T0 + 1, want); /* the window starts a millisecond later */
    assert_string_equal(next.alert_id, want);
    assert_int_equal(recent_alerts(fx->st), 2);
}

static void test_repeated_resolution_event_id_does_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_resolution r[2] = {
        {.rule_id = RULE, .dedup_key = "k1", .event_id = "rev-1", .event_time_ms = T0},
        {.rule_id = RULE, .dedup_key = "k1", .event_id = "rev-1", .event_time_ms = T0},
    };
    struct th_store_batch b = {.resolutions = r, .nresolutions = 2};
    struct th_store_match_result first = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result second;

    assert_int_equal(th_store_apply(fx->st, &b, T0 + MINUTE, NULL), TH_OK);
    assert_status(fx->st, first.alert_id, "resolved");
    second = hit(fx->st, "k1", "ev-2", T0 + 2 * MINUTE);
    assert_true(second.new_alert);
    /* The retried resolution must not take the new exposure's alert down. */
    resolve(fx->st, "k1", "rev-1", T0 + 3 * MINUTE);
    assert_status(fx->st, second.alert_id, "open");
    assert_int_equal(outbox_rows(fx, NULL, NULL, TH_OUTBOX_RESOLVE, NULL), 2);
    /* Without an event ID a resolution is never a duplicate. */
    resolve(fx->st, "k1", NULL, T0 + 4 * MINUTE);
    assert_status(fx->st, second.alert_id, "resolved");
}

/* Sample data reuses placeholder IDs ("..."): a revocation seen first must not make the
 * exposure that carries the same ID a duplicate, nor the other way round. */
static void test_match_and_resolution_ids_do_not_collide(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result res;

    resolve(fx->st, "k1", "...", T0);
    res = hit(fx->st, "k1", "...", T0 + 1);
    assert_false(res.duplicate);
    assert_true(res.new_alert);
    resolve(fx->st, "k1", "...", T0 + 2); /* a retry of the first resolution: nothing */
    assert_status(fx->st, res.alert_id, "open");
    assert_true(hit(fx->st, "k1", "...", T0 + 3).duplicate);
    resolve(fx->st, "k2", "ev-x", T0 + 4);
    resolve(fx->st, "k1", "ev-x", T0 + 5); /* the same ID was a resolution of k2: skipped */
    assert_status(fx->st, res.alert_id, "open");
}

static void test_resolution_in_same_batch_resolves_the_new_alert(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_resolution r = {
        .rule_id = RULE, .dedup_key = "k1", .event_id = "rev-1", .event_time_ms = T0 + 1};
    struct th_store_batch b = {.matches = &m, .nmatches = 1, .resolutions = &r, .nresolutions = 1};
    struct th_store_match_result res;
    struct th_outbox_row rows[4];
    size_t n = 0;

    assert_int_equal(th_store_apply(fx->st, &b, T0, &res), TH_OK);
    assert_true(res.new_alert);
    assert_status(fx->st, res.alert_id, "resolved");
    for (size_t i = 0; i < 2; i++) {
        /* Trigger first; the resolution once the trigger is out. */
        assert_int_equal(th_store_outbox_due(fx->st, two_dests[i], T0, rows, 4, &n), TH_OK);
        assert_int_equal(n, 1);
        assert_int_equal(rows[0].kind, TH_OUTBOX_ALERT);
        assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0), TH_OK);
        assert_int_equal(th_store_outbox_due(fx->st, two_dests[i], T0, rows, 4, &n), TH_OK);
        assert_int_equal(n, 1);
        assert_int_equal(rows[0].kind, TH_OUTBOX_RESOLVE);
        assert_string_equal(rows[0].ref, res.alert_id);
    }
}

static void test_resolution_takes_newest_open_alert_first(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result old = hit(fx->st, "k1", "ev-1", T0);
    struct th_store_match_result cur = hit(fx->st, "k1", "ev-2", T0 + 61 * MINUTE);

    assert_string_not_equal(old.alert_id, cur.alert_id);
    resolve(fx->st, "k1", "rev-1", T0 + 62 * MINUTE);
    assert_status(fx->st, cur.alert_id, "resolved");
    assert_status(fx->st, old.alert_id, "open");
    /* An earlier window's alert left open is found too. */
    resolve(fx->st, "k1", "rev-2", T0 + 63 * MINUTE);
    assert_status(fx->st, old.alert_id, "resolved");
    assert_int_equal(rows_of(fx, "slack", TH_OUTBOX_RESOLVE, old.alert_id), 1);
    assert_int_equal(rows_of(fx, "slack", TH_OUTBOX_RESOLVE, cur.alert_id), 1);
}

/* Delivered rows are pruned after a week; an exposure may last longer than that. */
static void test_resolution_after_prune_still_reaches_destinations(void **state)
{
    struct fx *fx = *state;
    struct th_store_match_result res = hit(fx->st, "k1", "ev-1", T0);
    struct th_outbox_row rows[2];
    size_t n = 0;

    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(th_store_outbox_due(fx->st, two_dests[i], T0, rows, 2, &n), TH_OK);
        assert_int_equal(th_store_outbox_done(fx->st, rows[0].id, T0), TH_OK);
    }
    assert_int_equal(th_store_prune(fx->st, T0 + 8 * DAY, DAY), TH_OK);
    assert_int_equal(outbox_rows(fx, NULL, NULL, -1, NULL), 0);
    resolve(fx->st, "k1", "rev-1", T0 + 8 * DAY);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(rows_of(fx, two_dests[i], TH_OUTBOX_RESOLVE, res.alert_id), 1);
    }
}

static void test_invalid_resolution_applies_nothing(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_resolution r = {.rule_id = RULE, .dedup_key = NULL};
    struct th_store_batch b = {.matches = &m, .nmatches = 1, .resolutions = &r, .nresolutions = 1};
    struct th_store_match_result res;

    assert_int_equal(th_store_apply(fx->st, &b, T0, &res), TH_EINVAL);
    b.resolutions = NULL;
    assert_int_equal(th_store_apply(fx->st, &b, T0, &res), TH_EINVAL);
    assert_int_equal(recent_alerts(fx->st), 0);
    assert_int_equal(pending(fx->st, NULL), 0);
}

/* ---- the outbox per destination and for operators --------------------------------------- */

static void test_outbox_next_due_per_destination(void **state)
{
    struct fx *fx = *state;
    struct th_outbox_row row;
    size_t n = 0;
    int64_t next = 0;

    assert_int_equal(th_store_outbox_next_due(fx->st, "slack", &next), TH_OK);
    assert_int_equal(next, INT64_MAX);
    hit(fx->st, "k1", "ev-1", T0);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0, &row, 1, &n), TH_OK);
    assert_int_equal(th_store_outbox_retry(fx->st, row.id, T0 + 5000, "HTTP 429", T0), TH_OK);

    assert_int_equal(th_store_outbox_next_due(fx->st, "slack", &next), TH_OK);
    assert_int_equal(next, T0 + 5000);
    assert_int_equal(th_store_outbox_next_due(fx->st, "pagerduty", &next), TH_OK);
    assert_int_equal(next, T0);
    assert_int_equal(th_store_outbox_next_due(fx->st, NULL, &next), TH_OK);
    assert_int_equal(next, T0);
    assert_int_equal(th_store_outbox_next_due(fx->st, "webhook", &next), TH_OK);
    assert_int_equal(next, INT64_MAX);
    /* A dead letter is due never. */
    assert_int_equal(th_store_outbox_dead(fx->st, row.id, "gone", T0 + 1), TH_OK);
    assert_int_equal(th_store_outbox_next_due(fx->st, "slack", &next), TH_OK);
    assert_int_equal(next, INT64_MAX);
    assert_int_equal(th_store_outbox_next_due(NULL, "slack", &next), TH_EINVAL);
}

/* Three rows of slack: a delivered ALERT, a dead ALERT, a pending RESOLVE; a webhook rule error. */
static void outbox_mix(struct th_store *st, int64_t ids[3])
{
    struct th_store_rule_error re = {
        .rule_id = RULE, .error = "bad item", .destinations = webhook_only, .ndestinations = 1};
    struct th_store_batch b = {.rule_errors = &re, .nrule_errors = 1};
    struct th_outbox_row rows[4];
    size_t n = 0;

    hit(st, "k1", "ev-1", T0);
    hit(st, "k2", "ev-2", T0 + 1);
    assert_int_equal(th_store_outbox_due(st, "slack", T0 + 1, rows, 4, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(th_store_outbox_done(st, rows[0].id, T0 + 2), TH_OK);
    assert_int_equal(th_store_outbox_retry(st, rows[1].id, T0 + 100, "HTTP 500", T0 + 2), TH_OK);
    assert_int_equal(th_store_outbox_dead(st, rows[1].id, "400 invalid_payload", T0 + 3), TH_OK);
    resolve(st, "k1", "rev-1", T0 + 4);
    assert_int_equal(th_store_apply(st, &b, T0 + 5, NULL), TH_OK);
    ids[0] = rows[0].id;
    ids[1] = rows[1].id;
    assert_int_equal(th_store_outbox_due(st, "slack", T0 + 4, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    ids[2] = rows[0].id;
}

static void test_outbox_list_for_operators(void **state)
{
    struct fx *fx = *state;
    int64_t ids[3];
    json_t *arr = NULL;
    const json_t *o = NULL;
    struct th_store_match_result k1 = hit(fx->st, "k1", "ev-1", T0); /* for its id only */

    outbox_mix(fx->st, ids);
    assert_int_equal(th_store_outbox_list(fx->st, NULL, NULL, 100, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 7); /* 2 + 2 ALERT, 2 RESOLVE, 1 rule error */
    o = json_array_get(arr, 0);                /* newest first */
    assert_json_str(o, "kind", "rule_error");
    assert_json_str(o, "destination", "webhook");
    json_decref(arr);

    assert_int_equal(th_store_outbox_list(fx->st, "slack", NULL, 100, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 3);
    o = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), ids[2]);
    assert_json_str(o, "kind", "resolve");
    assert_json_str(o, "ref", k1.alert_id);
    assert_json_str(o, "state", "pending");
    assert_json_time(o, "next_attempt_at", T0 + 4);
    assert_true(json_is_null(json_object_get(o, "last_error")));
    o = json_array_get(arr, 1);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), ids[1]);
    assert_json_str(o, "kind", "alert");
    assert_json_str(o, "state", "dead");
    /* One failed attempt (retried), then the one that parked it. */
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
    assert_json_time(o, "created_at", T0 + 1);
    assert_json_time(o, "updated_at", T0 + 3);
    assert_true(json_is_null(json_object_get(o, "next_attempt_at")));
    assert_json_str(o, "last_error", "400 invalid_payload");
    o = json_array_get(arr, 2);
    assert_json_str(o, "state", "done");
    assert_true(json_is_null(json_object_get(o, "next_attempt_at")));
    json_decref(arr);

    assert_int_equal(th_store_outbox_list(fx->st, NULL, "dead", 100, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 1);
    json_decref(arr);
    assert_int_equal(th_store_outbox_list(fx->st, "pagerduty", "pending", 1, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 1);
    assert_json_str(json_array_get(arr, 0), "kind", "resolve");
    json_decref(arr);
    assert_int_equal(th_store_outbox_list(fx->st, "nowhere", NULL, 100, &arr), TH_OK);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
    arr = NULL;
    assert_int_equal(th_store_outbox_list(fx->st, NULL, "stuck", 100, &arr), TH_EINVAL);
    assert_null(arr);
}

static void test_outbox_requeue_and_drop(void **state)
{
    struct fx *fx = *state;
    int64_t ids[3];
    struct th_outbox_row rows[4];
    size_t n = 0;
    size_t p = 0;
    size_t d = 0;

    outbox_mix(fx->st, ids);
    /* Only a dead letter can be requeued or dropped. */
    assert_int_equal(th_store_outbox_drop(fx->st, ids[2]), TH_EINVAL);
    assert_int_equal(th_store_outbox_drop(fx->st, ids[0]), TH_EINVAL);
    assert_int_equal(th_store_outbox_requeue(fx->st, ids[2], T0 + DAY), TH_EINVAL);
    assert_int_equal(th_store_outbox_requeue(fx->st, 424242, T0 + DAY), TH_ENOTFOUND);
    assert_int_equal(th_store_outbox_drop(fx->st, 424242), TH_ENOTFOUND);
    assert_int_equal(outbox_rows(fx, NULL, NULL, -1, NULL), 7);

    /* Requeued: pending, due now, attempts reset; after the pending RESOLVE of its id order. */
    assert_int_equal(th_store_outbox_requeue(fx->st, ids[1], T0 + DAY), TH_OK);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + DAY - 1, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].id, ids[2]);
    assert_int_equal(th_store_outbox_due(fx->st, "slack", T0 + DAY, rows, 4, &n), TH_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].id, ids[1]);
    assert_int_equal(rows[0].attempts, 0);
    assert_int_equal(rows[0].next_attempt_ms, T0 + DAY);
    assert_int_equal(th_store_outbox_counts(fx->st, "slack", &p, &d), TH_OK);
    assert_int_equal(p, 2);
    assert_int_equal(d, 0);
    assert_int_equal(th_store_outbox_requeue(fx->st, ids[1], T0 + DAY), TH_EINVAL);

    /* Dropped: gone for good. */
    assert_int_equal(th_store_outbox_dead(fx->st, ids[1], "400 again", T0 + DAY), TH_OK);
    assert_int_equal(th_store_outbox_drop(fx->st, ids[1]), TH_OK);
    assert_int_equal(outbox_rows(fx, NULL, NULL, -1, NULL), 6);
    assert_int_equal(th_store_outbox_drop(fx->st, ids[1]), TH_ENOTFOUND);
    assert_int_equal(th_store_outbox_counts(fx->st, NULL, &p, &d), TH_OK);
    assert_int_equal(d, 0);
}

/* ---- schema migration ------------------------------------------------------------------- */

/* Schema version 1 exactly as it shipped (src/store.c before resolutions). */
static const char schema_v1[] =
    "CREATE TABLE alerts ("
    " id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, dedup_key TEXT NOT NULL, title TEXT,"
    " severity TEXT, status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),"
    " event_count INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL,"
    " last_seen_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " doc TEXT NOT NULL);"
    "CREATE INDEX alerts_created ON alerts (created_ms);"
    "CREATE TABLE windows ("
    " rule_id TEXT NOT NULL, dedup_key TEXT NOT NULL, window_start_ms INTEGER NOT NULL,"
    " window_end_ms INTEGER NOT NULL, count INTEGER NOT NULL,"
    " alert_id TEXT REFERENCES alerts (id), first_event_ms INTEGER NOT NULL, doc TEXT NOT NULL,"
    " PRIMARY KEY (rule_id, dedup_key));"
    "CREATE TABLE seen_events ("
    " event_id TEXT PRIMARY KEY, alert_id TEXT REFERENCES alerts (id),"
    " seen_ms INTEGER NOT NULL);"
    "CREATE INDEX seen_events_seen ON seen_events (seen_ms);"
    "CREATE TABLE accounts ("
    " account_id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL, source TEXT NOT NULL,"
    " added_ms INTEGER NOT NULL);"
    "CREATE TABLE rule_errors ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, rule_id TEXT NOT NULL, event_id TEXT,"
    " error TEXT NOT NULL, event TEXT, created_ms INTEGER NOT NULL);"
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL, kind INTEGER NOT NULL,"
    " ref TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),"
    " attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
    " next_attempt_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX outbox_due ON outbox (destination, state, next_attempt_ms);"
    "CREATE TABLE probe (id INTEGER PRIMARY KEY, checked_ms INTEGER NOT NULL);";

#define OLD_ALERT "00112233445566778899aabbccddeeff"

/* What a version 1 trailhook left behind: one alert of k1 sent to slack (delivered) and
 * pagerduty (dead), its window, a seen event ID and an account. */
static const char v1_data[] =
    "INSERT INTO alerts VALUES ('" OLD_ALERT "', '" RULE "', 'k1', 'AMI made public', 'Medium',"
    " 'open', 2, 1700000000000, 1700000060000, 1700000000000, 1700000060000,"
    " '{\"eventName\":\"ModifyImageAttribute\"}');"
    "INSERT INTO windows VALUES ('" RULE "', 'k1', 1700000000000, 1700003600000, 2,"
    " '" OLD_ALERT "', 1700000000000, '{}');"
    "INSERT INTO seen_events VALUES ('ev-old', '" OLD_ALERT "', 1700000000000);"
    "INSERT INTO accounts VALUES ('111122223333', 1800000000000, 'operator', 1700000000000);"
    "INSERT INTO outbox (destination, kind, ref, state, attempts, created_ms, next_attempt_ms,"
    " updated_ms) VALUES ('slack', 0, '" OLD_ALERT "', 'done', 0, 1700000000000,"
    " 1700000000000, 1700000000000);"
    "INSERT INTO outbox (destination, kind, ref, state, attempts, created_ms, next_attempt_ms,"
    " updated_ms, last_error) VALUES ('pagerduty', 0, '" OLD_ALERT "', 'dead', 3,"
    " 1700000000000, 1700000000000, 1700000000000, '400');"
    "PRAGMA user_version = 1;";

static void make_raw_db(const struct fx *fx, const char *sql)
{
    char db[300];
    sqlite3 *raw = NULL;

    assert_int_equal(mkdir(fx->state_dir, 0700), 0);
    snprintf(db, sizeof(db), "%s/%s", fx->state_dir, TH_STORE_DB_NAME);
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
}

static void test_migration_from_version_1_keeps_data(void **state)
{
    struct fx *fx = *state;
    struct th_store *ro = NULL;
    char err[256];
    char *sql = NULL;
    bool is_new = false;
    json_t *a = NULL;

    SQLITE_ONLY();

    sql = calloc(1, sizeof(schema_v1) + sizeof(v1_data));
    assert_non_null(sql);
    strcpy(sql, schema_v1);
    strcat(sql, v1_data);
    make_raw_db(fx, sql);
    free(sql);

    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READWRITE, &fx->st, err, sizeof(err)),
                     TH_OK);
    assert_int_equal(raw_count(fx, "PRAGMA user_version"), 2);
    assert_int_equal(th_store_alert_get(fx->st, OLD_ALERT, &a), TH_OK);
    assert_json_str(a, "status", "open");
    assert_int_equal(json_integer_value(json_object_get(a, "event_count")), 2);
    assert_json_str(a, "eventName", "ModifyImageAttribute");
    assert_null(json_object_get(a, "resolved_at"));
    json_decref(a);
    assert_int_equal(th_store_account_check(fx->st, "111122223333", T0, &is_new), TH_OK);
    assert_true(is_new);
    assert_true(hit(fx->st, "k1", "ev-old", T0 + MINUTE).duplicate);
    /* The window came through: a new event counts toward the old alert. */
    assert_string_equal(hit(fx->st, "k1", "ev-new", T0 + 2 * MINUTE).alert_id, OLD_ALERT);
    assert_int_equal(alert_count(fx->st, OLD_ALERT), 3);

    /* An alert from before the migration is resolved where it was sent, whatever its rows. */
    resolve(fx->st, "k1", "rev-1", T0 + 3 * MINUTE);
    assert_status(fx->st, OLD_ALERT, "resolved");
    assert_int_equal(rows_of(fx, "slack", TH_OUTBOX_RESOLVE, OLD_ALERT), 1);
    assert_int_equal(rows_of(fx, "pagerduty", TH_OUTBOX_RESOLVE, OLD_ALERT), 1);

    /* Migrating is done once: a second handle and a read-only one open as they are. */
    th_store_free(fx->st);
    fx->st = NULL;
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READWRITE, &fx->st, err, sizeof(err)),
                     TH_OK);
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READONLY, &ro, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_alert_get(ro, OLD_ALERT, &a), TH_OK);
    assert_json_time(a, "resolved_at", T0 + 3 * MINUTE);
    json_decref(a);
    th_store_free(ro);
}

static void test_newer_schema_is_refused(void **state)
{
    struct fx *fx = *state;
    struct th_store *ro = NULL;
    char err[256] = "";

    SQLITE_ONLY();

    make_raw_db(fx, "CREATE TABLE future (x); PRAGMA user_version = 99;");
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READWRITE, &fx->st, err, sizeof(err)),
                     TH_EIO);
    assert_null(fx->st);
    assert_non_null(strstr(err, "schema version 99 is newer"));
    assert_int_equal(th_store_open(fx->state_dir, TH_STORE_READONLY, &ro, err, sizeof(err)),
                     TH_EIO);
    assert_null(ro);
    assert_int_equal(raw_count(fx, "PRAGMA user_version"), 99);
}

/* ---- Redis: several replicas share one store -------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Cuts a handle's connection from the server side, as a Redis restart does, or as a replica's
 * socket dies with it when it is killed. */
static void kill_connection(struct th_store *st)
{
    char needle[160];
    redisContext *c = redis_raw();
    redisReply *list = NULL;
    redisReply *r = NULL;
    const char *at = NULL;

    assert_non_null(c);
    list = redisCommand(c, "CLIENT LIST");
    assert_non_null(list);
    snprintf(needle, sizeof(needle), " name=%s ", st->redis->consumer);
    at = strstr(list->str, needle);
    assert_non_null(at);
    while (at > list->str && at[-1] != '\n') {
        at--;
    }
    assert_int_equal(strncmp(at, "id=", 3), 0);
    r = redisCommand(c, "CLIENT KILL ID %lld", strtoll(at + 3, NULL, 10));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    freeReplyObject(list);
    redisFree(c);
}

/* A handle whose deliveries are taken over after @p claim_after_ms (config says seconds). */
static struct th_store *open_claiming(int64_t claim_after_ms)
{
    struct th_store *st = calloc(1, sizeof(*st));
    char err[256];

    assert_non_null(st);
    assert_int_equal(
        th_store_redis_open(st, redis_url, TH_STORE_READWRITE, claim_after_ms, err, sizeof(err)),
        TH_OK);
    return st;
}

#define RACES 20

struct racer {
    struct th_store *st;
    pthread_barrier_t *start;
    enum th_err rc[RACES];
    struct th_store_match_result res[RACES];
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;

    for (int k = 0; k < RACES; k++) {
        char key[32];
        char event_id[32];
        snprintf(key, sizeof(key), "race-%d", k);
        snprintf(event_id, sizeof(event_id), "ev-race-%d", k);
        struct th_store_match m = match_of(key, event_id, T0, NULL);
        pthread_barrier_wait(r->start);
        r->rc[k] = apply_one(r->st, &m, T0, &r->res[k]);
    }
    return NULL;
}

/* Two replicas get the same CloudTrail record at once (an EventBridge retry, a fan-out). */
static void test_redis_replicas_apply_the_same_event_once(void **state)
{
    struct fx *fx = *state;
    struct racer racers[2];
    pthread_t threads[2];
    pthread_barrier_t start;
    char err[256];

    REDIS_ONLY();
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    for (int i = 0; i < 2; i++) {
        memset(&racers[i], 0, sizeof(racers[i]));
        racers[i].start = &start;
        assert_int_equal(open_store(fx, TH_STORE_READWRITE, &racers[i].st, err, sizeof(err)),
                         TH_OK);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        th_store_free(racers[i].st);
    }
    pthread_barrier_destroy(&start);
    for (int k = 0; k < RACES; k++) {
        const struct th_store_match_result *a = &racers[0].res[k];
        const struct th_store_match_result *b = &racers[1].res[k];
        char key[32];
        char want[33];
        assert_int_equal(racers[0].rc[k], TH_OK);
        assert_int_equal(racers[1].rc[k], TH_OK);
        assert_int_equal(a->new_alert + b->new_alert, 1);
        assert_int_equal(a->duplicate + b->duplicate, 1);
        assert_true(a->new_alert ? b->duplicate : a->duplicate);
        snprintf(key, sizeof(key), "race-%d", k);
        expected_id(key, T0, want);
        assert_string_equal(a->alert_id, want);
        assert_string_equal(b->alert_id, want);
        assert_int_equal(alert_count(fx->st, want), 1);
    }
    assert_int_equal(recent_alerts(fx->st), RACES);
    assert_int_equal(pending(fx->st, "slack"), RACES);
    assert_int_equal(pending(fx->st, "pagerduty"), RACES);
}

#define SHARED_ROWS 30

struct taker {
    struct th_store *st;
    pthread_mutex_t *lock;
    int *seen; /* how often each row id was handed out, indexed by id */
    size_t nseen;
    int taken;
    int failures;
};

static void *taker_main(void *arg)
{
    struct taker *t = arg;
    struct th_outbox_row rows[5];
    size_t n = 0;

    do {
        if (th_store_outbox_due(t->st, "slack", T0, rows, 5, &n) != TH_OK) {
            t->failures++;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(t->lock);
            if (rows[i].id > 0 && (size_t)rows[i].id < t->nseen) {
                t->seen[rows[i].id]++;
            } else {
                t->failures++;
            }
            pthread_mutex_unlock(t->lock);
            t->taken++;
            t->failures += th_store_outbox_done(t->st, rows[i].id, T0) != TH_OK;
        }
    } while (n > 0);
    return NULL;
}

static void hit_many(struct th_store *st, const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char key[32];
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        assert_true(hit(st, key, NULL, T0).new_alert);
    }
}

/* Lanes of several replicas drain one destination: no row is handed to two of them. */
static void test_redis_handles_never_take_the_same_row(void **state)
{
    struct fx *fx = *state;
    struct th_outbox_row a_rows[4];
    struct th_outbox_row b_rows[64];
    struct th_outbox_row again[64];
    struct taker takers[2];
    pthread_t threads[2];
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int seen[4 * SHARED_ROWS + 8] = {0};
    size_t na = 0;
    size_t nb = 0;
    size_t n = 0;
    char err[256];

    REDIS_ONLY();
    hit_many(fx->st, "first", SHARED_ROWS);
    for (int i = 0; i < 2; i++) {
        memset(&takers[i], 0, sizeof(takers[i]));
        assert_int_equal(open_store(fx, TH_STORE_READWRITE, &takers[i].st, err, sizeof(err)),
                         TH_OK);
    }
    /* What one handle took, the other does not see; each sees its own again, oldest first. */
    assert_int_equal(th_store_outbox_due(takers[0].st, "slack", T0, a_rows, 4, &na), TH_OK);
    assert_int_equal(na, 4);
    assert_int_equal(th_store_outbox_due(takers[1].st, "slack", T0, b_rows, 64, &nb), TH_OK);
    assert_int_equal(nb, SHARED_ROWS - 4);
    for (size_t i = 0; i < nb; i++) {
        for (size_t j = 0; j < na; j++) {
            assert_true(b_rows[i].id != a_rows[j].id);
        }
        assert_true(i == 0 || b_rows[i - 1].id < b_rows[i].id);
    }
    assert_int_equal(th_store_outbox_due(takers[0].st, "slack", T0, again, 64, &n), TH_OK);
    assert_int_equal(n, na);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(again[i].id, a_rows[i].id);
    }
    assert_int_equal(pending(fx->st, "slack"), SHARED_ROWS);

    /* Both drain at once while more rows arrive: every row is handed out exactly once. */
    hit_many(fx->st, "second", SHARED_ROWS);
    for (int i = 0; i < 2; i++) {
        takers[i].lock = &lock;
        takers[i].seen = seen;
        takers[i].nseen = sizeof(seen) / sizeof(seen[0]);
        assert_int_equal(pthread_create(&threads[i], NULL, taker_main, &takers[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(takers[i].failures, 0);
    }
    assert_int_equal(takers[0].taken + takers[1].taken, 2 * SHARED_ROWS);
    for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
        assert_true(seen[i] <= 1);
    }
    assert_int_equal(pending(fx->st, "slack"), 0);
    assert_int_equal(pending(fx->st, "pagerduty"), 2 * SHARED_ROWS);
    for (int i = 0; i < 2; i++) {
        th_store_free(takers[i].st);
    }
}

/* kill -9 of a replica mid-delivery: what it took is taken over once idle for claim_after. */
static void test_redis_killed_replica_rows_are_taken_over(void **state)
{
    struct fx *fx = *state;
    struct th_store *killed = NULL;
    struct th_store *patient = NULL;
    struct th_store *quick = NULL;
    struct th_outbox_row rows[8];
    struct th_outbox_row got[8];
    size_t n = 0;
    size_t m = 0;
    char err[256];

    REDIS_ONLY();
    hit_many(fx->st, "k", 3);
    assert_int_equal(open_store(fx, TH_STORE_READWRITE, &killed, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_outbox_due(killed, "slack", T0, rows, 8, &n), TH_OK);
    assert_int_equal(n, 3);
    /* Its socket dies with it: closing the handle can hand nothing back. */
    kill_connection(killed);
    sleep_ms(50);
    th_store_free(killed);

    /* Taken, not delivered: still pending, but nobody else's before claim_after. */
    assert_int_equal(open_store(fx, TH_STORE_READWRITE, &patient, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_outbox_due(patient, "slack", T0, got, 8, &m), TH_OK);
    assert_int_equal(m, 0);
    assert_int_equal(pending(fx->st, "slack"), 3);

    quick = open_claiming(200);
    sleep_ms(300);
    assert_int_equal(th_store_outbox_due(quick, "slack", T0, got, 8, &m), TH_OK);
    assert_int_equal(m, 3);
    for (size_t i = 0; i < m; i++) {
        assert_int_equal(got[i].id, rows[i].id);
    }
    /* Now the taker's own: not handed to anyone else. */
    assert_int_equal(th_store_outbox_due(patient, "slack", T0, rows, 8, &n), TH_OK);
    assert_int_equal(n, 0);
    for (size_t i = 0; i < m; i++) {
        assert_int_equal(th_store_outbox_done(quick, got[i].id, T0), TH_OK);
    }
    assert_int_equal(pending(fx->st, "slack"), 0);
    th_store_free(quick);
    th_store_free(patient);
}

/* A replica that stops cleanly hands back what it took: no wait for claim_after. */
static void test_redis_closed_handle_hands_back_its_rows(void **state)
{
    struct fx *fx = *state;
    struct th_store *leaving = NULL;
    struct th_store *staying = NULL;
    struct th_outbox_row rows[4];
    size_t n = 0;
    char err[256];

    REDIS_ONLY();
    hit(fx->st, "k1", "ev-1", T0);
    assert_int_equal(open_store(fx, TH_STORE_READWRITE, &leaving, err, sizeof(err)), TH_OK);
    assert_int_equal(open_store(fx, TH_STORE_READWRITE, &staying, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_outbox_due(leaving, "slack", T0, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(th_store_outbox_due(staying, "slack", T0, rows, 4, &n), TH_OK);
    assert_int_equal(n, 0);
    th_store_free(leaving);
    assert_int_equal(th_store_outbox_due(staying, "slack", T0, rows, 4, &n), TH_OK);
    assert_int_equal(n, 1);
    assert_int_equal(th_store_outbox_done(staying, rows[0].id, T0), TH_OK);
    th_store_free(staying);
}

/* A loopback port nothing listens on. */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* The service starts while Redis is down, reports unready, and never shows the password. */
static void test_redis_unreachable_opens_and_fails_calls(void **state)
{
    struct th_config cfg;
    struct th_store *st = NULL;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;
    struct th_outbox_row row;
    char url[128];
    char err[256] = "";
    size_t n = 0;
    bool is_new = true;

    REDIS_ONLY();
    (void)state;
    snprintf(url, sizeof(url), "redis://trailhook:s3cret-pw@127.0.0.1:%d/0", closed_port());
    th_config_defaults(&cfg);
    free(cfg.state_backend);
    cfg.state_backend = strdup("redis");
    cfg.state_redis_url = strdup(url);
    assert_int_equal(th_store_open_config(&cfg, TH_STORE_READWRITE, &st, err, sizeof(err)), TH_OK);
    assert_non_null(st);

    memset(&res, 0x5a, sizeof(res));
    assert_int_equal(apply_one(st, &m, T0, &res), TH_EIO);
    assert_string_equal(res.alert_id, "");
    assert_non_null(strstr(th_store_last_error(st), "redis unreachable"));
    assert_null(strstr(th_store_last_error(st), "s3cret-pw"));
    assert_int_equal(th_store_check_writable(st), TH_EIO);
    assert_int_equal(th_store_account_check(st, "111122223333", T0, &is_new), TH_EIO);
    assert_false(is_new);
    assert_int_equal(th_store_outbox_due(st, "slack", T0, &row, 1, &n), TH_EIO);
    assert_int_equal(n, 0);
    /* Tried again after the backoff: still down, still failing the same way. */
    sleep_ms(250);
    assert_int_equal(th_store_check_writable(st), TH_EIO);
    assert_non_null(strstr(th_store_last_error(st), "redis unreachable"));
    assert_null(strstr(th_store_last_error(st), "s3cret-pw"));
    th_store_free(st);
    th_config_cleanup(&cfg);
}

static void test_redis_urls_refused_without_showing_the_password(void **state)
{
    char host[64] = "";
    char url[256];
    char err[512] = "";
    int port = 0;
    struct th_store *st = NULL;
    const char *const bad[] = {
        "redis://:s3cret-pw@127.0.0.1:99999/0",   "redis://:s3cret-pw@/0",
        "redis://:s3cret-pw@127.0.0.1:6379/zero", "redis://:s3cret-pw@127.0.0.1:6379/0?ssl=1",
        "redis://:s3cret%zz@127.0.0.1:6379/0",    "http://:s3cret-pw@127.0.0.1:6379/0",
    };

    REDIS_ONLY();
    (void)state;
    st = calloc(1, sizeof(*st));
    assert_int_equal(th_store_redis_open(st, "rediss://:s3cret-pw@127.0.0.1:6380/0",
                                         TH_STORE_READWRITE, 1000, err, sizeof(err)),
                     TH_EUNSUPPORTED);
    assert_non_null(strstr(err, "TLS"));
    assert_non_null(strstr(err, "stunnel"));
    assert_null(strstr(err, "s3cret"));
    th_store_free(st);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        st = calloc(1, sizeof(*st));
        assert_int_equal(
            th_store_redis_open(st, bad[i], TH_STORE_READWRITE, 1000, err, sizeof(err)), TH_EINVAL);
        assert_string_not_equal(err, "");
        assert_null(strstr(err, "s3cret"));
        th_store_free(st);
    }
    /* A reachable server that refuses the login: a setting to fix, so opening fails. */
    assert_true(sscanf(redis_url, "redis://%63[^:/]:%d", host, &port) == 2);
    snprintf(url, sizeof(url), "redis://someone:s3cret-pw@%s:%d/0", host, port);
    st = calloc(1, sizeof(*st));
    assert_int_equal(th_store_redis_open(st, url, TH_STORE_READWRITE, 1000, err, sizeof(err)),
                     TH_EIO);
    assert_non_null(strstr(err, "login refused"));
    assert_null(strstr(err, "s3cret"));
    th_store_free(st);
}

/* A connection the server closed while idle (a restart, a killed client) is replaced before
 * the next command; one that breaks during a command fails that call, and the next connects
 * again. */
static void test_redis_reconnects_after_losing_the_connection(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k3", "ev-3", T0, NULL);
    struct th_store_match_result res;

    REDIS_ONLY();
    assert_true(hit(fx->st, "k1", "ev-1", T0).new_alert);
    kill_connection(fx->st);
    sleep_ms(50);
    assert_true(hit(fx->st, "k2", "ev-2", T0).new_alert);

    /* Writes held past the command timeout: the call fails, nothing is applied. */
    assert_true(redis_run("CLIENT PAUSE 20000 WRITE"));
    assert_int_equal(apply_one(fx->st, &m, T0, &res), TH_EIO);
    assert_non_null(strstr(th_store_last_error(fx->st), "redis unreachable"));
    assert_true(redis_run("CLIENT UNPAUSE"));
    assert_int_equal(recent_alerts(fx->st), 2);
    assert_true(hit(fx->st, "k3", "ev-3", T0).new_alert);

    /* A server that forgot the scripts (a restart, SCRIPT FLUSH) is given them again. */
    assert_true(redis_run("SCRIPT FLUSH"));
    assert_true(hit(fx->st, "k4", "ev-4", T0).new_alert);
    assert_int_equal(recent_alerts(fx->st), 4);
}

/* A Redis that refuses writes (here: no replica to acknowledge them) fails the probe. */
static void test_redis_refused_writes_fail_the_probe(void **state)
{
    struct fx *fx = *state;
    struct th_store_match m = match_of("k1", "ev-1", T0, NULL);
    struct th_store_match_result res;

    REDIS_ONLY();
    assert_int_equal(th_store_check_writable(fx->st), TH_OK);
    assert_true(redis_run("CONFIG SET min-replicas-to-write 1"));
    assert_int_equal(th_store_check_writable(fx->st), TH_EIO);
    assert_non_null(strstr(th_store_last_error(fx->st), "NOREPLICAS"));
    assert_int_not_equal(apply_one(fx->st, &m, T0, &res), TH_OK);
    assert_true(redis_run("CONFIG SET min-replicas-to-write 0"));
    assert_int_equal(th_store_check_writable(fx->st), TH_OK);
    assert_int_equal(recent_alerts(fx->st), 0);
    assert_true(hit(fx->st, "k1", "ev-1", T0).new_alert);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_state_dir_and_wal_db, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_readonly_missing_creates_nothing, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_accounts_add_check_expiry_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts_later_expiry_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts_remove_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accounts_learned_through_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_one_match_creates_alert_and_outbox, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_event_id_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_event_in_window_updates_count_not_pager, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_event_after_window_end_opens_new_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threshold_waits_then_carries_first_doc, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_different_keys_different_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_key_twice_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_event_ids_all_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_recent_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_batch_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rule_error_kept_and_outboxed_to_its_destinations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_due_retry_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_dead_letters_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_survives_close_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_concurrently_lose_no_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_apply_on_read_only_handle_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_forgets_old_event_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_drops_week_old_deliveries_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_resolves_alert_and_tells_its_destinations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_goes_only_where_the_alert_went, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolution_without_open_alert_does_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_event_after_resolution_opens_new_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolve_waits_for_a_trigger_in_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_revocation_older_than_the_exposure_resolves_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_alert_in_the_resolving_millisecond_gets_new_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_resolution_event_id_does_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_match_and_resolution_ids_do_not_collide, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolution_in_same_batch_resolves_the_new_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolution_takes_newest_open_alert_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resolution_after_prune_still_reaches_destinations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_resolution_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_next_due_per_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_list_for_operators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox_requeue_and_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_version_1_keeps_data, setup_dir,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup_dir, teardown),
        cmocka_unit_test_setup_teardown(test_redis_replicas_apply_the_same_event_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_handles_never_take_the_same_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_replica_rows_are_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_closed_handle_hands_back_its_rows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_unreachable_opens_and_fails_calls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_urls_refused_without_showing_the_password, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_reconnects_after_losing_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_redis_refused_writes_fail_the_probe, setup, teardown),
    };
    int failed;

    redis_url = getenv("TH_TEST_REDIS_URL");
    if (redis_url != NULL && redis_url[0] == '\0') {
        redis_url = NULL;
    }
    if (redis_url == NULL) {
        return cmocka_run_group_tests_name("store (sqlite)", tests, NULL, NULL);
    }
    th_config_defaults(&redis_cfg);
    free(redis_cfg.state_backend);
    redis_cfg.state_backend = strdup("redis");
    redis_cfg.state_redis_url = strdup(redis_url);
    failed = cmocka_run_group_tests_name("store (redis)", tests, NULL, NULL);
    th_config_cleanup(&redis_cfg);
    return failed;
}
