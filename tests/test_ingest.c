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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
