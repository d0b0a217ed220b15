/* SPDX-License-Identifier: MIT */
/* test_ingest.c -- one request body to committed alerts, against a real SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "trailhook/ingest.h"

struct fixture {
    char dir[64];
    struct th_config cfg;
    struct th_spec_set specs;
    struct th_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *const env[] = {NULL};
    char err[256];
    snprintf(f->dir, sizeof(f->dir), "/tmp/th-ingest-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(th_config_load(NULL, env, &f->cfg, err, sizeof(err)), TH_OK);
    assert_int_equal(th_spec_set_load(NULL, &f->specs, err, sizeof(err)), TH_OK);
    assert_int_equal(th_store_open(f->dir, TH_STORE_READWRITE, &f->st, err, sizeof(err)), TH_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    th_store_free(f->st);
    th_spec_set_cleanup(&f->specs);
    th_config_cleanup(&f->cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

#define PUBLIC(id, image)                                                                          \
    "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"" id "\",\"eventTime\":"                \
    "\"2026-01-01T00:00:00Z\",\"recipientAccountId\":\"123456789012\",\"awsRegion\":"              \
    "\"us-east-1\",\"requestParameters\":{\"imageId\":\"" image "\",\"launchPermission\":"         \
    "{\"add\":{\"items\":[{\"group\":\"all\"}]}}}}"

static void process(struct fixture *f, const char *body, struct th_ingest_result *r)
{
    th_ingest_process(&f->cfg, &f->specs, f->st, body, strlen(body), r);
    /* The per-rule counts are for metrics; the body is what these tests read. */
    free(r->rules);
    r->rules = NULL;
}

static size_t alert_count(struct fixture *f)
{
    json_t *list = NULL;
    assert_int_equal(th_store_alerts_recent(f->st, 100, &list), TH_OK);
    size_t n = json_array_size(list);
    json_decref(list);
    return n;
}

static void rule_counts_say_what_each_rule_did(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result r;
    const char *body = "[" PUBLIC("e1", "ami-1") "," PUBLIC(
        "e2", "ami-1") ","
                       "{\"eventName\":\"DescribeImages\"},"
                       "{\"eventName\":\"ModifyImageAttribute\",\"requestParameters\":"
                       "{\"launchPermission\":{\"add\":{\"items\":[7]}}}}]";
    th_ingest_process(&f->cfg, &f->specs, f->st, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_non_null(r.rules);
    assert_int_equal(r.rules[0].match, 2);
    assert_int_equal(r.rules[0].nomatch, 1);
    assert_int_equal(r.rules[0].error, 1);
    assert_int_equal(r.rules[0].new_alerts, 1);
    assert_int_equal(r.rules[0].deduplicated, 1);
    free(r.rules);
    json_decref(r.body);
}

static void each_rule_error_keeps_its_own_message(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result r;
    json_t *a = NULL;
    json_t *b = NULL;
    process(f,
            "[{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"x1\",\"requestParameters\":"
            "{\"launchPermission\":{\"add\":{\"items\":[7]}}}},"
            "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"x2\",\"requestParameters\":"
            "{\"launchPermission\":{\"add\":{\"items\":[{\"userId\":5}]}}}}]",
            &r);
    assert_int_equal(r.status, 202);
    json_decref(r.body);
    assert_int_equal(th_store_rule_error_get(f->st, 1, &a), TH_OK);
    assert_int_equal(th_store_rule_error_get(f->st, 2, &b), TH_OK);
    assert_string_equal(json_string_value(json_object_get(a, "event_id")), "x1");
    assert_non_null(strstr(json_string_value(json_object_get(a, "error")), "items[0] is"));
    assert_non_null(strstr(json_string_value(json_object_get(b, "error")), "userId is"));
    json_decref(a);
    json_decref(b);
}

static void a_match_is_committed_with_its_outbox_row(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result r;
    size_t pending = 0, dead = 0;
    process(f, "[" PUBLIC("e1", "ami-1") ",{\"eventName\":\"DescribeImages\"}]", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_integer_value(json_object_get(r.body, "accepted")), 2);
    assert_int_equal(json_integer_value(json_object_get(r.body, "matched")), 1);
    assert_int_equal(json_array_size(json_object_get(r.body, "alerts")), 1);
    assert_true(r.new_alerts);
    json_decref(r.body);
    assert_int_equal(alert_count(f), 1);
    assert_int_equal(th_store_outbox_counts(f->st, "console", &pending, &dead), TH_OK);
    assert_int_equal(pending, 1);
}

static void a_retry_counts_once(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result a, b;
    process(f, PUBLIC("e1", "ami-1"), &a);
    process(f, PUBLIC("e1", "ami-1"), &b);
    assert_int_equal(b.status, 202);
    assert_int_equal(json_integer_value(json_object_get(b.body, "duplicates")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a.body, "alerts"), 0)),
                        json_string_value(json_array_get(json_object_get(b.body, "alerts"), 0)));
    assert_false(b.new_alerts);
    json_decref(a.body);
    json_decref(b.body);
    assert_int_equal(alert_count(f), 1);
}

static void a_bad_record_applies_nothing(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result r;
    process(f, "[" PUBLIC("e1", "ami-1") ",{\"digestStartTime\":\"x\"}]", &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(json_integer_value(json_object_get(r.body, "index")), 1);
    json_decref(r.body);
    assert_int_equal(alert_count(f), 0);
    process(f, "{\"Records\":[\n" PUBLIC("e1", "ami-1") ",\n{bad}]}", &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(json_integer_value(json_object_get(r.body, "line")), 3);
    json_decref(r.body);
    assert_int_equal(alert_count(f), 0);
}

static void an_account_learned_earlier_in_the_request_counts(void **state)
{
    struct fixture *f = *state;
    struct th_ingest_result r;
    process(f,
            "[{\"eventName\":\"CreateAccountResult\",\"eventTime\":\"2026-01-01T00:00:00Z\","
            "\"serviceEventDetails\":{\"createAccountStatus\":{\"state\":\"SUCCEEDED\","
            "\"accountId\":\"111122223333\"}}},"
            "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"s1\",\"eventTime\":"
            "\"2026-01-02T00:00:00Z\",\"requestParameters\":{\"imageId\":\"ami-9\","
            "\"launchPermission\":{\"add\":{\"items\":[{\"userId\":\"111122223333\"}]}}}}]",
            &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_integer_value(json_object_get(r.body, "matched")), 1);
    json_decref(r.body);
    bool is_new = false;
    assert_int_equal(th_store_account_check(f->st, "111122223333", 0, &is_new), TH_OK);
    assert_true(is_new);
}

static void a_store_that_cannot_write_answers_503(void **state)
{
    struct fixture *f = *state;
    struct th_store *ro = NULL;
    struct th_ingest_result r;
    char err[128];
    assert_int_equal(th_store_open(f->dir, TH_STORE_READONLY, &ro, err, sizeof(err)), TH_OK);
    th_ingest_process(&f->cfg, &f->specs, ro, PUBLIC("e1", "ami-1"), strlen(PUBLIC("e1", "ami-1")),
                      &r);
    assert_int_equal(r.status, 503);
    assert_true(r.retry_after > 0);
    json_decref(r.body);
    free(r.rules);
    th_store_free(ro);
    assert_int_equal(alert_count(f), 0);
}

/* Several requests committed together answer as if committed one after the other. */
static void a_group_commit_answers_each_request_as_alone(void **state)
{
    struct fixture *f = *state;
    const char *bodies[] = {
        PUBLIC("g1", "ami-1"),           /* a new alert */
        PUBLIC("g2", "ami-1"),           /* the same image: counts toward g1's alert */
        PUBLIC("g1", "ami-1"),           /* a retry of g1: a duplicate */
        "{\"eventName\":\"GetObject\"}", /* writes nothing */
        "{not json",                     /* answered at parsing */
        PUBLIC("g3", "ami-2"),           /* another alert */
    };
    enum { N = sizeof(bodies) / sizeof(bodies[0]) };
    struct th_ingest_result r[N];
    struct th_ingest_job *jobs[N];
    for (size_t i = 0; i < N; i++) {
        jobs[i] = th_ingest_prepare(&f->cfg, &f->specs, f->st, bodies[i], strlen(bodies[i]), &r[i]);
    }
    th_ingest_commit(f->st, jobs, N);
    const unsigned status[N] = {202, 202, 202, 202, 400, 202};
    const json_int_t duplicates[N] = {0, 0, 1, 0, 0, 0};
    for (size_t i = 0; i < N; i++) {
        th_ingest_job_free(jobs[i]);
        assert_int_equal(r[i].status, status[i]);
        if (status[i] == 202) {
            assert_int_equal(json_integer_value(json_object_get(r[i].body, "duplicates")),
                             duplicates[i]);
        }
    }
    const char *first = json_string_value(json_array_get(json_object_get(r[0].body, "alerts"), 0));
    assert_string_equal(first,
                        json_string_value(json_array_get(json_object_get(r[1].body, "alerts"), 0)));
    assert_true(r[0].new_alerts);
    assert_false(r[1].new_alerts);
    assert_true(r[5].new_alerts);
    assert_int_equal(alert_count(f), 2);
    for (size_t i = 0; i < N; i++) {
        json_decref(r[i].body);
        free(r[i].rules);
    }
}

/* When the store refuses the group's commit, every request that had something to store gets
 * 503 and nothing of any of them is applied; the others keep their own answers. */
static void a_refused_group_commit_fails_every_writer(void **state)
{
    struct fixture *f = *state;
    struct th_store *ro = NULL;
    char err[128];
    const char *bodies[] = {PUBLIC("h1", "ami-1"), "{\"eventName\":\"GetObject\"}",
                            PUBLIC("h2", "ami-2")};
    struct th_ingest_result r[3];
    struct th_ingest_job *jobs[3];
    assert_int_equal(th_store_open(f->dir, TH_STORE_READONLY, &ro, err, sizeof(err)), TH_OK);
    for (size_t i = 0; i < 3; i++) {
        jobs[i] = th_ingest_prepare(&f->cfg, &f->specs, ro, bodies[i], strlen(bodies[i]), &r[i]);
    }
    th_ingest_commit(ro, jobs, 3);
    assert_int_equal(r[0].status, 503);
    assert_int_equal(r[1].status, 202);
    assert_int_equal(r[2].status, 503);
    for (size_t i = 0; i < 3; i++) {
        th_ingest_job_free(jobs[i]);
        json_decref(r[i].body);
        free(r[i].rules);
    }
    th_store_free(ro);
    assert_int_equal(alert_count(f), 0);
}

/* The HTTP thread's answer is the worker's, and it takes only what needs no rule. */
static void a_quick_answer_is_the_full_answer(void **state)
{
    struct fixture *f = *state;
    const char *skipped = "{\"Records\":[{\"eventName\":\"GetObject\",\"eventID\":\"q1\"},"
                          "{\"eventName\":\"PutObject\"}]}";
    struct th_ingest_result quick, full;
    assert_true(th_ingest_quick(&f->cfg, &f->specs, skipped, strlen(skipped), &quick));
    process(f, skipped, &full);
    assert_int_equal(quick.status, 202);
    assert_null(quick.body);
    char *text = th_ingest_skipped_answer(quick.accepted, "r-1");
    json_t *answer = json_loads(text, 0, NULL);
    json_object_set_new(full.body, "request_id", json_string("r-1"));
    assert_true(json_equal(answer, full.body));
    assert_int_equal(quick.accepted, 2);
    assert_non_null(quick.rules);
    assert_int_equal(quick.rules[0].nomatch, 2);
    free(text);
    json_decref(answer);
    json_decref(full.body);
    free(quick.rules);
    /* Bad JSON is answered too, as the worker would. */
    assert_true(th_ingest_quick(&f->cfg, &f->specs, "{bad", 4, &quick));
    assert_int_equal(quick.status, 400);
    json_decref(quick.body);
    /* A record a rule wants, and a gzip body, go to a worker. */
    assert_false(th_ingest_quick(&f->cfg, &f->specs, PUBLIC("q2", "ami-1"),
                                 strlen(PUBLIC("q2", "ami-1")), &quick));
    assert_false(th_ingest_quick(&f->cfg, &f->specs, "\x1f\x8b\x08", 3, &quick));
    assert_int_equal(alert_count(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_match_is_committed_with_its_outbox_row, setup, teardown),
        cmocka_unit_test_setup_teardown(rule_counts_say_what_each_rule_did, setup, teardown),
        cmocka_unit_test_setup_teardown(each_rule_error_keeps_its_own_message, setup, teardown),
        cmocka_unit_test_setup_teardown(a_retry_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_bad_record_applies_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(an_account_learned_earlier_in_the_request_counts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_store_that_cannot_write_answers_503, setup, teardown),
        cmocka_unit_test_setup_teardown(a_group_commit_answers_each_request_as_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_refused_group_commit_fails_every_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(a_quick_answer_is_the_full_answer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
