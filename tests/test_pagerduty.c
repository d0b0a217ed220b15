/* SPDX-License-Identifier: MIT */
/*
 * test_pagerduty.c -- the Events API v2 bodies PagerDuty accepts: severity mapping, the trigger
 * built from a real alert document, resolve, rule errors, and the summary, dedup_key and 512 KB
 * body limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/pagerduty.h"

#include "alert_fixture.h"

#define KEY   "0123456789abcdef0123456789abcdef"
#define TITLE "Amazon Machine Image (AMI) Modified to Allow Public Access"

/* Formats, checks the reported length and parses the body back. */
static json_t *event(enum th_outbox_kind kind, const json_t *alert)
{
    size_t len = 0;
    char *body = th_pagerduty_event(kind, alert, KEY, &len);
    assert_non_null(body);
    assert_int_equal(len, strlen(body));
    assert_true(len <= TH_PAGERDUTY_MAX_BODY);
    json_t *ev = json_loads(body, 0, NULL);
    assert_non_null(ev);
    free(body);
    return ev;
}

static const char *get(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static const json_t *payload(const json_t *ev)
{
    return json_object_get(ev, "payload");
}

/* One of the four values PagerDuty accepts; anything else is a 400. */
static bool valid_severity(const char *s)
{
    static const char *const ok[] = {"info", "warning", "error", "critical"};
    for (size_t i = 0; s != NULL && i < 4; i++) {
        if (strcmp(s, ok[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void severity_maps_as_panther_does(void **state)
{
    (void)state;
    assert_string_equal(th_pagerduty_severity("Info"), "info");
    assert_string_equal(th_pagerduty_severity("Low"), "info");
    assert_string_equal(th_pagerduty_severity("Medium"), "warning");
    assert_string_equal(th_pagerduty_severity("High"), "error");
    assert_string_equal(th_pagerduty_severity("Critical"), "critical");
    /* Panther writes them upper-case in places. */
    assert_string_equal(th_pagerduty_severity("CRITICAL"), "critical");
    assert_null(th_pagerduty_severity("Severe"));
    assert_null(th_pagerduty_severity(""));
    assert_null(th_pagerduty_severity(NULL));
}

static void trigger_carries_the_alert(void **state)
{
    json_t *ev = event(TH_OUTBOX_ALERT, *state);
    const json_t *p = payload(ev);
    const json_t *details = json_object_get(p, "custom_details");
    const json_t *links = json_object_get(ev, "links");

    assert_string_equal(get(ev, "routing_key"), KEY);
    assert_string_equal(get(ev, "event_action"), "trigger");
    assert_string_equal(get(ev, "dedup_key"), "9c5d40cc4a939b8dd57e6054b52b8126");
    assert_string_equal(get(p, "summary"),
                        "[Medium] " TITLE ": ami-1111 made public in 123456789012/us-west-2");
    assert_string_equal(get(p, "source"), "123456789012");
    assert_string_equal(get(p, "severity"), "warning");
    assert_string_equal(get(p, "timestamp"), "2019-01-01T00:00:00Z");
    assert_string_equal(get(p, "component"), "ami-1111");
    assert_string_equal(get(p, "group"), "us-west-2");
    assert_string_equal(get(p, "class"), "AWS.CloudTrail.AMIModifiedForPublicAccess");
    assert_string_equal(get(ev, "client"), "trailhook");
    assert_string_equal(get(json_object_get(details, "context"), "sourceIPAddress"),
                        "111.111.111.111");
    assert_true(json_is_object(json_object_get(details, "summary_attributes")));
    assert_int_equal(json_integer_value(json_object_get(details, "event_count")), 1);
    assert_string_equal(get(details, "matched"), "group:all");
    assert_int_equal(json_array_size(json_object_get(details, "remediation")), 4);
    assert_non_null(get(details, "description"));
    assert_non_null(get(details, "runbook"));
    assert_string_equal(get(details, "alert_id"), "9c5d40cc4a939b8dd57e6054b52b8126");
    assert_int_equal(json_array_size(links), 2);
    assert_string_equal(
        get(json_array_get(links, 0), "href"),
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-intro.html");
    assert_string_equal(get(json_array_get(links, 0), "text"), "Runbook reference");
    assert_string_equal(get(json_array_get(links, 1), "href"),
                        "https://us-west-2.console.aws.amazon.com/ec2/home?region=us-west-2"
                        "#ImageDetails:imageId=ami-1111");
    assert_string_equal(get(json_array_get(links, 1), "text"), "AWS console: ami-1111");
    json_decref(ev);
}

static void missing_account_and_odd_severity_still_page(void **state)
{
    json_t *alert = json_deep_copy(*state);
    json_object_del(alert, "account_id");
    json_object_set_new(alert, "severity", json_string("Severe"));
    json_object_set_new(alert, "reference", json_string("javascript:alert(1)"));
    json_object_set_new(alert, "first_seen", json_string("yesterday"));
    json_t *ev = event(TH_OUTBOX_ALERT, alert);
    const json_t *p = payload(ev);
    const json_t *links = json_object_get(ev, "links");

    assert_string_equal(get(p, "source"), "trailhook");
    assert_string_equal(get(p, "severity"), "error");
    assert_null(json_object_get(p, "timestamp"));
    /* Only http(s) links: the javascript: reference is left out, the console link stays. */
    assert_int_equal(json_array_size(links), 1);
    assert_string_equal(get(json_array_get(links, 0), "text"), "AWS console: ami-1111");
    json_decref(ev);
    json_decref(alert);
}

static void resolve_names_only_the_dedup_key(void **state)
{
    json_t *ev = event(TH_OUTBOX_RESOLVE, *state);

    assert_int_equal(json_object_size(ev), 3);
    assert_string_equal(get(ev, "routing_key"), KEY);
    assert_string_equal(get(ev, "event_action"), "resolve");
    assert_string_equal(get(ev, "dedup_key"), "9c5d40cc4a939b8dd57e6054b52b8126");
    json_decref(ev);
}

static void summary_is_cut_at_1024_characters(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *title = repeat("\xc3\xa9", 2000);
    json_object_set_new(alert, "title", json_string(title));
    json_t *ev = event(TH_OUTBOX_ALERT, alert);
    const char *summary = get(payload(ev), "summary");

    assert_int_equal(code_points(summary), TH_PAGERDUTY_MAX_SUMMARY);
    assert_string_equal(summary + strlen(summary) - 3, "\xe2\x80\xa6");
    assert_memory_equal(summary, "[Medium] \xc3\xa9", 11);
    free(title);
    json_decref(ev);
    json_decref(alert);
}

static void dedup_key_is_cut_at_255_characters(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *id = repeat("x", 400);
    json_object_set_new(alert, "id", json_string(id));
    json_t *ev = event(TH_OUTBOX_ALERT, alert);
    json_t *res = event(TH_OUTBOX_RESOLVE, alert);

    assert_int_equal(code_points(get(ev, "dedup_key")), TH_PAGERDUTY_MAX_DEDUP_KEY);
    /* The resolve must name the same incident the trigger opened. */
    assert_string_equal(get(res, "dedup_key"), get(ev, "dedup_key"));
    free(id);
    json_decref(res);
    json_decref(ev);
    json_decref(alert);
}

static void two_megabyte_context_is_dropped_to_fit(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *big = repeat("A", 2 * 1024 * 1024);
    json_object_set_new(json_object_get(alert, "context"), "userAgent", json_string(big));
    json_t *ev = event(TH_OUTBOX_ALERT, alert);
    const json_t *details = json_object_get(payload(ev), "custom_details");

    assert_string_equal(get(ev, "routing_key"), KEY);
    assert_string_equal(get(ev, "dedup_key"), "9c5d40cc4a939b8dd57e6054b52b8126");
    assert_non_null(get(payload(ev), "summary"));
    assert_null(json_object_get(details, "context"));
    /* Only what had to go went, and the page says so. */
    assert_non_null(get(details, "runbook"));
    assert_non_null(json_object_get(details, "summary_attributes"));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(details, "omitted_for_size"), 0)),
        "context");
    free(big);
    json_decref(ev);
    json_decref(alert);
}

static void largest_details_go_first(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *s300 = repeat("s", 300 * 1024);
    char *s280 = repeat("r", 280 * 1024);
    char *s250 = repeat("c", 250 * 1024);
    json_object_set_new(alert, "description", json_string(s300));
    json_object_set_new(alert, "runbook", json_string(s280));
    json_object_set_new(alert, "context", json_string(s250));
    json_t *ev = event(TH_OUTBOX_ALERT, alert);
    const json_t *details = json_object_get(payload(ev), "custom_details");

    /* 830 KB of details: without the 300 KB one it is still 530 KB; without the 280 KB one too,
     * 250 KB fits. */
    assert_null(json_object_get(details, "description"));
    assert_null(json_object_get(details, "runbook"));
    assert_string_equal(get(details, "context"), s250);
    assert_int_equal(json_array_size(json_object_get(details, "omitted_for_size")), 2);
    free(s300);
    free(s280);
    free(s250);
    json_decref(ev);
    json_decref(alert);
}

static void rule_error_is_a_trigger_of_its_own(void **state)
{
    json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:{}, s:s}", "id", 7, "rule",
                            "AWS.CloudTrail.AMIModifiedForPublicAccess", "event_id", "e-42",
                            "error", "KeyError: 'requestParameters'", "event", "created_at",
                            "2019-01-01T00:00:01.000Z");
    json_t *ev = event(TH_OUTBOX_RULE_ERROR, doc);
    const json_t *p = payload(ev);
    (void)state;

    assert_string_equal(get(ev, "event_action"), "trigger");
    assert_string_equal(get(ev, "dedup_key"), "rule-error-7");
    assert_string_equal(get(p, "severity"), "error");
    assert_string_equal(get(p, "source"), "trailhook");
    assert_string_equal(get(p, "summary"),
                        "Rule error in AWS.CloudTrail.AMIModifiedForPublicAccess on event e-42: "
                        "KeyError: 'requestParameters'");
    assert_string_equal(get(p, "timestamp"), "2019-01-01T00:00:01.000Z");
    assert_string_equal(get(json_object_get(p, "custom_details"), "error"),
                        "KeyError: 'requestParameters'");
    json_decref(ev);
    json_decref(doc);
}

static void wrong_types_still_give_a_valid_event(void **state)
{
    json_t *doc = json_pack("{s:i, s:[], s:{}, s:b, s:i, s:n, s:f}", "title", 3, "severity",
                            "image_id", "region", 1, "account_id", 5, "id", "first_seen", 1.5);
    json_t *not_object = json_string("alert");
    (void)state;

    for (int kind = TH_OUTBOX_ALERT; kind <= TH_OUTBOX_RESOLVE; kind++) {
        const json_t *docs[] = {doc, not_object, NULL};
        for (size_t i = 0; i < 3; i++) {
            json_t *ev = event((enum th_outbox_kind)kind, docs[i]);
            assert_string_equal(get(ev, "routing_key"), KEY);
            if (kind != TH_OUTBOX_RESOLVE) {
                assert_true(strlen(get(payload(ev), "summary")) > 0);
                assert_true(valid_severity(get(payload(ev), "severity")));
                assert_non_null(get(payload(ev), "source"));
            }
            json_decref(ev);
        }
    }
    json_t *ev = event(TH_OUTBOX_ALERT, doc);
    assert_string_equal(get(payload(ev), "summary"), "trailhook alert");
    assert_null(json_object_get(ev, "dedup_key"));
    json_decref(ev);
    json_decref(not_object);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(severity_maps_as_panther_does),
        cmocka_unit_test_setup_teardown(trigger_carries_the_alert, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(missing_account_and_odd_severity_still_page, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(resolve_names_only_the_dedup_key, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(summary_is_cut_at_1024_characters, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(dedup_key_is_cut_at_255_characters, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(two_megabyte_context_is_dropped_to_fit, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(largest_details_go_first, load_alert, free_alert),
        cmocka_unit_test(rule_error_is_a_trigger_of_its_own),
        cmocka_unit_test(wrong_types_still_give_a_valid_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
