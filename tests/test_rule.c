/* SPDX-License-Identifier: MIT */
/* test_rule.c -- AWS.CloudTrail.AMIModifiedForPublicAccess against Panther's edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/clock.h"
#include "trailhook/indicators.h"
#include "trailhook/rule.h"

/* A share with a new account: the fake set holds 012345678901 until 2019-01-04T00:00:00Z. */
static bool fake_accounts(void *ctx, const char *account_id, int64_t at_ms)
{
    int64_t until = 0;
    int *calls = ctx;
    if (calls != NULL) {
        (*calls)++;
    }
    th_clock_parse_iso8601("2019-01-04T00:00:00Z", 20, &until);
    return strcmp(account_id, "012345678901") == 0 && at_ms < until;
}

/* Builds the spec's base event with the given requestParameters and extra top-level fields. */
static json_t *event_with(const char *request_parameters, const char *extra)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    fprintf(f,
            "{\"awsRegion\":\"us-west-2\",\"eventID\":\"1111\",\"eventName\":"
            "\"ModifyImageAttribute\",\"eventSource\":\"ec2.amazonaws.com\","
            "\"eventTime\":\"2019-01-01T00:00:00Z\",\"recipientAccountId\":\"123456789012\","
            "\"sourceIPAddress\":\"111.111.111.111\",\"userAgent\":\"Mozilla/2.0\","
            "\"userIdentity\":{\"type\":\"AssumedRole\",\"accountId\":\"123456789012\","
            "\"arn\":\"arn:aws:sts::123456789012:assumed-role/example-role/example-user\","
            "\"sessionContext\":{\"sessionIssuer\":{\"accountId\":\"123456789012\","
            "\"arn\":\"arn:aws:iam::123456789012:role/example-role\"}}},"
            "\"requestParameters\":%s%s%s}",
            request_parameters, extra[0] != '\0' ? "," : "", extra);
    fclose(f);
    json_error_t err;
    json_t *ev = json_loads(text, JSON_ALLOW_NUL, &err);
    if (ev == NULL) {
        fail_msg("bad test JSON: %s: %s", err.text, text);
    }
    free(text);
    return ev;
}

static enum th_rule_verdict judge(const char *params, const char *extra, struct th_rule_result *res)
{
    json_t *ev = event_with(params, extra);
    th_rule_ami_public_eval(ev, fake_accounts, NULL, res);
    json_decref(ev);
    return res->verdict;
}

#define ADD(items) "{\"imageId\":\"ami-1111\",\"launchPermission\":{\"add\":{\"items\":" items "}}}"

static void group_all_matches(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "", &res), TH_RULE_MATCH);
    assert_string_equal(res.reason, "group:all");
}

static void group_value_is_case_sensitive(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"group\":\"ALL\"}]"), "", &res), TH_RULE_NOMATCH);
    assert_int_equal(judge(ADD("[{\"group\":\" all\"}]"), "", &res), TH_RULE_NOMATCH);
}

static void key_names_are_case_insensitive(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"Group\":\"all\"}]"), "", &res), TH_RULE_MATCH);
    /* The whole path, too: Panther's event wrapper lower-cases on a miss. */
    assert_int_equal(
        judge("{\"LaunchPermission\":{\"Add\":{\"Items\":[{\"GROUP\":\"all\"}]}}}", "", &res),
        TH_RULE_MATCH);
}

static void exact_key_wins_over_case_insensitive(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"Group\":\"all\",\"group\":\"none\"}]"), "", &res),
                     TH_RULE_NOMATCH);
}

static void failed_calls_never_match(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"errorCode\":\"AccessDenied\"", &res),
                     TH_RULE_NOMATCH);
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"errorMessage\":\"denied\"", &res),
                     TH_RULE_NOMATCH);
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"ErrorCode\":\"X\"", &res),
                     TH_RULE_NOMATCH);
}

static void empty_or_null_error_fields_count_as_success(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"errorCode\":\"\"", &res),
                     TH_RULE_MATCH);
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"errorCode\":null", &res),
                     TH_RULE_MATCH);
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}]"), "\"errorMessage\":\"\"", &res),
                     TH_RULE_MATCH);
}

static void other_event_names_never_match(void **state)
{
    struct th_rule_result res;
    json_t *ev = event_with(ADD("[{\"group\":\"all\"}]"), "");
    (void)state;
    json_object_set_new(ev, "eventName", json_string("ModifySnapshotAttribute"));
    th_rule_ami_public_eval(ev, fake_accounts, NULL, &res);
    assert_int_equal(res.verdict, TH_RULE_NOMATCH);
    json_object_set_new(ev, "eventName", json_string("modifyimageattribute"));
    th_rule_ami_public_eval(ev, fake_accounts, NULL, &res);
    assert_int_equal(res.verdict, TH_RULE_NOMATCH);
    json_decref(ev);
}

static void missing_items_uses_one_empty_item(void **state)
{
    struct th_rule_result res;
    int calls = 0;
    json_t *ev = event_with("{\"imageId\":\"ami-1\",\"someThing\":{\"add\":{\"items\":"
                            "[{\"group\":\"all\"}]}}}",
                            "");
    (void)state;
    th_rule_ami_public_eval(ev, fake_accounts, &calls, &res);
    assert_int_equal(res.verdict, TH_RULE_NOMATCH);
    /* The empty item has no userId: nothing to look up, no error. */
    assert_int_equal(calls, 0);
    json_decref(ev);
    assert_int_equal(judge(ADD("null"), "", &res), TH_RULE_NOMATCH);
    assert_int_equal(judge("null", "", &res), TH_RULE_NOMATCH);
    assert_int_equal(judge("{\"launchPermission\":\"all\"}", "", &res), TH_RULE_NOMATCH);
}

static void empty_list_adds_nothing(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[]"), "", &res), TH_RULE_NOMATCH);
}

static void new_account_share_matches(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"userId\":\"012345678901\"}]"), "", &res), TH_RULE_MATCH);
    assert_string_equal(res.reason, "userId:012345678901");
    assert_int_equal(judge(ADD("[{\"userId\":\"999999999999\"}]"), "", &res), TH_RULE_NOMATCH);
}

static void new_account_is_judged_at_event_time(void **state)
{
    struct th_rule_result res;
    json_t *ev = event_with(ADD("[{\"userId\":\"012345678901\"}]"), "");
    (void)state;
    json_object_set_new(ev, "eventTime", json_string("2019-01-05T00:00:00Z"));
    th_rule_ami_public_eval(ev, fake_accounts, NULL, &res);
    assert_int_equal(res.verdict, TH_RULE_NOMATCH);
    json_decref(ev);
}

static void items_are_judged_in_order(void **state)
{
    struct th_rule_result res;
    int calls = 0;
    json_t *ev = event_with(ADD("[{\"userId\":\"222222222222\"},{\"group\":\"all\"}]"), "");
    (void)state;
    th_rule_ami_public_eval(ev, fake_accounts, &calls, &res);
    assert_int_equal(res.verdict, TH_RULE_MATCH);
    assert_int_equal(calls, 1);
    json_decref(ev);
    /* A match before a bad item returns before Python would reach it. */
    assert_int_equal(judge(ADD("[{\"group\":\"all\"}, 5]"), "", &res), TH_RULE_MATCH);
}

static void non_object_item_is_a_rule_error(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[\"all\"]"), "", &res), TH_RULE_ERROR);
    assert_non_null(strstr(res.error, "items[0]"));
    assert_int_equal(judge(ADD("[{\"group\":\"x\"}, null]"), "", &res), TH_RULE_ERROR);
    assert_non_null(strstr(res.error, "items[1]"));
    assert_int_equal(judge(ADD("[[{\"group\":\"all\"}]]"), "", &res), TH_RULE_ERROR);
}

static void non_list_items_is_a_rule_error(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("{\"group\":\"all\"}"), "", &res), TH_RULE_ERROR);
    assert_int_equal(judge(ADD("\"all\""), "", &res), TH_RULE_ERROR);
    assert_int_equal(judge(ADD("7"), "", &res), TH_RULE_ERROR);
    assert_int_equal(judge(ADD("true"), "", &res), TH_RULE_ERROR);
    /* Python iterates an empty string or object zero times: no match and no error. */
    assert_int_equal(judge(ADD("\"\""), "", &res), TH_RULE_NOMATCH);
    assert_int_equal(judge(ADD("{}"), "", &res), TH_RULE_NOMATCH);
}

static void non_string_user_id_is_a_rule_error(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"userId\":12345}]"), "", &res), TH_RULE_ERROR);
    assert_non_null(strstr(res.error, "userId"));
    assert_int_equal(judge(ADD("[{\"userId\":[\"a\"]}]"), "", &res), TH_RULE_ERROR);
    /* null counts as absent (DESIGN §1): no lookup, no error. */
    assert_int_equal(judge(ADD("[{\"userId\":null}]"), "", &res), TH_RULE_NOMATCH);
}

static void context_has_placeholders_and_keeps_nulls(void **state)
{
    json_error_t err;
    json_t *ev = json_loads("{\"eventName\":\"ModifyImageAttribute\",\"userAgent\":null}", 0, &err);
    json_t *ctx = th_rule_context(ev);
    (void)state;
    assert_string_equal(json_string_value(json_object_get(ctx, "eventName")),
                        "ModifyImageAttribute");
    assert_string_equal(json_string_value(json_object_get(ctx, "eventSource")),
                        "<MISSING_EVENT_SOURCE>");
    assert_string_equal(json_string_value(json_object_get(ctx, "awsRegion")),
                        "<MISSING_AWS_REGION>");
    assert_string_equal(json_string_value(json_object_get(ctx, "recipientAccountId")),
                        "<MISSING_ACCOUNT_ID>");
    assert_string_equal(json_string_value(json_object_get(ctx, "sourceIPAddress")),
                        "<MISSING_SOURCE_IP>");
    assert_true(json_is_null(json_object_get(ctx, "userAgent")));
    assert_string_equal(json_string_value(json_object_get(ctx, "userIdentity")),
                        "<MISSING_USER_IDENTITY>");
    assert_int_equal(json_object_size(ctx), 7);
    json_decref(ctx);
    json_decref(ev);
}

static void indicators_of_the_spec_event(void **state)
{
    json_t *ev = event_with(ADD("[{\"group\":\"all\",\"userId\":\"333333333333\"}]"), "");
    json_t *ind = th_indicators_extract(ev);
    (void)state;
    json_t *arns = json_object_get(ind, "p_any_aws_arns");
    assert_int_equal(json_array_size(arns), 2);
    assert_string_equal(json_string_value(json_array_get(arns, 0)),
                        "arn:aws:iam::123456789012:role/example-role");
    assert_string_equal(json_string_value(json_array_get(arns, 1)),
                        "arn:aws:sts::123456789012:assumed-role/example-role/example-user");
    json_t *ids = json_object_get(ind, "p_any_aws_account_ids");
    assert_int_equal(json_array_size(ids), 1);
    assert_string_equal(json_string_value(json_array_get(ids, 0)), "123456789012");
    json_t *ips = json_object_get(ind, "p_any_ip_addresses");
    assert_int_equal(json_array_size(ips), 1);
    assert_string_equal(json_string_value(json_array_get(ips, 0)), "111.111.111.111");
    json_decref(ind);
    json_decref(ev);
}

static void summary_attributes_follow_the_spec(void **state)
{
    char attr0[] = "sourceIpAddress";
    char attr1[] = "p_any_aws_arns";
    char attr2[] = "requestParameters.imageId";
    char attr3[] = "missing.path";
    char *const attrs[] = {attr0, attr1, attr2, attr3};
    json_t *ev = event_with(ADD("[{\"group\":\"all\"}]"), "");
    json_t *ind = th_indicators_extract(ev);
    json_t *sum = th_rule_summary(ev, ind, attrs, 4);
    (void)state;
    assert_string_equal(json_string_value(json_object_get(sum, "sourceIpAddress")),
                        "111.111.111.111");
    assert_int_equal(json_array_size(json_object_get(sum, "p_any_aws_arns")), 2);
    assert_string_equal(json_string_value(json_object_get(sum, "requestParameters.imageId")),
                        "ami-1111");
    assert_true(json_is_null(json_object_get(sum, "missing.path")));
    json_decref(sum);
    json_decref(ind);
    json_decref(ev);
}

static void created_account_from_object_or_string(void **state)
{
    char id[64];
    json_error_t err;
    json_t *a = json_loads("{\"eventName\":\"CreateAccountResult\",\"serviceEventDetails\":"
                           "{\"createAccountStatus\":{\"state\":\"SUCCEEDED\","
                           "\"accountId\":\"111122223333\"}}}",
                           0, &err);
    json_t *b = json_loads("{\"eventName\":\"CreateAccountResult\",\"serviceEventDetails\":"
                           "\"{\\\"createAccountStatus\\\":{\\\"state\\\":\\\"SUCCEEDED\\\","
                           "\\\"accountId\\\":\\\"444455556666\\\"}}\"}",
                           0, &err);
    json_t *c = json_loads("{\"eventName\":\"CreateAccountResult\",\"serviceEventDetails\":"
                           "{\"createAccountStatus\":{\"state\":\"FAILED\","
                           "\"accountId\":\"777788889999\"}}}",
                           0, &err);
    (void)state;
    assert_true(th_rule_created_account(a, id));
    assert_string_equal(id, "111122223333");
    assert_true(th_rule_created_account(b, id));
    assert_string_equal(id, "444455556666");
    assert_false(th_rule_created_account(c, id));
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void strings_holding_nul_never_pass_for_their_prefix(void **state)
{
    struct th_rule_result res;
    (void)state;
    assert_int_equal(judge(ADD("[{\"group\":\"all\\u0000x\"}]"), "", &res), TH_RULE_NOMATCH);
    assert_int_equal(judge(ADD("[{\"userId\":\"012345678901\\u0000\"}]"), "", &res),
                     TH_RULE_NOMATCH);
}

static void making_the_image_private_again_resolves(void **state)
{
    json_t *rm = event_with("{\"imageId\":\"ami-1111\",\"launchPermission\":{\"remove\":"
                            "{\"items\":[{\"userId\":\"1\"},{\"Group\":\"all\"}]}}}",
                            "");
    json_t *reset = event_with("{\"imageId\":\"ami-1111\",\"attribute\":\"launchPermission\"}", "");
    json_t *add = event_with(ADD("[{\"group\":\"all\"}]"), "");
    json_t *failed = event_with("{\"launchPermission\":{\"remove\":{\"items\":"
                                "[{\"group\":\"all\"}]}}}",
                                "\"errorCode\":\"AccessDenied\"");
    (void)state;
    json_object_set_new(reset, "eventName", json_string("ResetImageAttribute"));
    assert_true(th_rule_ami_public_resolves(rm));
    assert_true(th_rule_ami_public_resolves(reset));
    assert_false(th_rule_ami_public_resolves(add));
    assert_false(th_rule_ami_public_resolves(failed));
    json_object_set_new(json_object_get(reset, "requestParameters"), "attribute",
                        json_string("description"));
    assert_false(th_rule_ami_public_resolves(reset));
    json_decref(rm);
    json_decref(reset);
    json_decref(add);
    json_decref(failed);
}

static void rule_registry_names_the_compiled_rule(void **state)
{
    (void)state;
    assert_non_null(th_rule_find("AWS.CloudTrail.AMIModifiedForPublicAccess"));
    assert_null(th_rule_find("AWS.CloudTrail.Nope"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_all_matches),
        cmocka_unit_test(group_value_is_case_sensitive),
        cmocka_unit_test(key_names_are_case_insensitive),
        cmocka_unit_test(exact_key_wins_over_case_insensitive),
        cmocka_unit_test(failed_calls_never_match),
        cmocka_unit_test(empty_or_null_error_fields_count_as_success),
        cmocka_unit_test(other_event_names_never_match),
        cmocka_unit_test(missing_items_uses_one_empty_item),
        cmocka_unit_test(empty_list_adds_nothing),
        cmocka_unit_test(new_account_share_matches),
        cmocka_unit_test(new_account_is_judged_at_event_time),
        cmocka_unit_test(items_are_judged_in_order),
        cmocka_unit_test(non_object_item_is_a_rule_error),
        cmocka_unit_test(non_list_items_is_a_rule_error),
        cmocka_unit_test(non_string_user_id_is_a_rule_error),
        cmocka_unit_test(context_has_placeholders_and_keeps_nulls),
        cmocka_unit_test(indicators_of_the_spec_event),
        cmocka_unit_test(summary_attributes_follow_the_spec),
        cmocka_unit_test(created_account_from_object_or_string),
        cmocka_unit_test(strings_holding_nul_never_pass_for_their_prefix),
        cmocka_unit_test(making_the_image_private_again_resolves),
        cmocka_unit_test(rule_registry_names_the_compiled_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
