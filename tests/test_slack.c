/* SPDX-License-Identifier: MIT */
/*
 * test_slack.c -- the Slack message an on-call engineer reads: its header, fields and fallback
 * from a real alert document, Slack's limits under hostile sizes, UTF-8 cuts, and escaping of
 * attacker-controlled event values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/slack.h"

#include "alert_fixture.h"

#define TITLE         "Amazon Machine Image (AMI) Modified to Allow Public Access"
#define UTF8_ELLIPSIS "\xe2\x80\xa6"

static void set_string(json_t *obj, const char *key, const char *value)
{
    json_object_set_new(obj, key, json_string(value));
}

static const char *text_of(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "text"), "text"));
}

/* The first block of @p type whose text starts with @p prefix ("" for any). */
static const json_t *find_block(const json_t *msg, const char *type, const char *prefix)
{
    const json_t *blocks = json_object_get(msg, "blocks");
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        const char *t = text_of(b);
        if (strcmp(json_string_value(json_object_get(b, "type")), type) == 0 &&
            (prefix[0] == '\0' || (t != NULL && strncmp(t, prefix, strlen(prefix)) == 0))) {
            return b;
        }
    }
    return NULL;
}

/* The text of the field whose label is @p label ("*Label*\n..."), or NULL. */
static const char *field(const json_t *msg, const char *label)
{
    const json_t *blocks = json_object_get(msg, "blocks");
    size_t n = strlen(label);
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *fields = json_object_get(json_array_get(blocks, i), "fields");
        for (size_t j = 0; j < json_array_size(fields); j++) {
            const char *t = json_string_value(json_object_get(json_array_get(fields, j), "text"));
            if (t[0] == '*' && strncmp(t + 1, label, n) == 0 && strncmp(t + 1 + n, "*\n", 2) == 0) {
                return t;
            }
        }
    }
    return NULL;
}

/* Every limit Slack enforces, and the message survives a JSON round trip. */
static void assert_within_limits(const json_t *msg)
{
    const json_t *blocks = json_object_get(msg, "blocks");
    char *dumped = json_dumps(msg, JSON_COMPACT);
    json_t *back = json_loads(dumped, 0, NULL);

    assert_non_null(back);
    assert_true(code_points(json_string_value(json_object_get(msg, "text"))) <= TH_SLACK_MAX_TEXT);
    assert_true(json_array_size(blocks) <= TH_SLACK_MAX_BLOCKS);
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        const json_t *b = json_array_get(blocks, i);
        const char *type = json_string_value(json_object_get(b, "type"));
        const json_t *fields = json_object_get(b, "fields");
        if (strcmp(type, "header") == 0) {
            assert_true(code_points(text_of(b)) <= TH_SLACK_MAX_HEADER);
        } else if (text_of(b) != NULL) {
            assert_true(code_points(text_of(b)) <= TH_SLACK_MAX_SECTION);
        }
        assert_true(json_array_size(fields) <= TH_SLACK_MAX_FIELDS);
        for (size_t j = 0; j < json_array_size(fields); j++) {
            const json_t *f = json_array_get(fields, j);
            assert_true(code_points(json_string_value(json_object_get(f, "text"))) <=
                        TH_SLACK_MAX_FIELD);
        }
    }
    json_decref(back);
    free(dumped);
}

static void real_alert_reads_as_expected(void **state)
{
    const json_t *alert = *state;
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const json_t *header = find_block(msg, "header", "");
    const char *runbook = json_string_value(json_object_get(alert, "runbook"));
    char *want_runbook = NULL;

    assert_string_equal(json_string_value(json_object_get(msg, "text")),
                        "[Medium] " TITLE ": ami-1111 in 123456789012/us-west-2");
    assert_non_null(header);
    assert_string_equal(text_of(header), ":large_orange_circle: [Medium] " TITLE);
    assert_non_null(
        find_block(msg, "section", "An Amazon Machine Image (AMI) was modified to allow it"));
    want_runbook = malloc(strlen(runbook) + 16);
    strcpy(want_runbook, "*Runbook*\n");
    strcat(want_runbook, runbook);
    assert_string_equal(text_of(find_block(msg, "section", "*Runbook*")), want_runbook);
    assert_string_equal(field(msg, "Account"), "*Account*\n123456789012");
    assert_string_equal(field(msg, "Region"), "*Region*\nus-west-2");
    assert_string_equal(field(msg, "Image"), "*Image*\nami-1111");
    assert_string_equal(
        field(msg, "Actor"),
        "*Actor*\narn:aws:sts::123456789012:assumed-role/example-role/example-user");
    assert_string_equal(field(msg, "Source IP"), "*Source IP*\n111.111.111.111");
    assert_string_equal(field(msg, "User agent"),
                        "*User agent*\nMozilla/2.0 (compatible; NEWT ActiveX; Win32)");
    assert_string_equal(field(msg, "Event time"), "*Event time*\n2019-01-01T00:00:00Z");
    assert_string_equal(field(msg, "Event count"), "*Event count*\n1");
    assert_within_limits(msg);
    free(want_runbook);
    json_decref(msg);
}

static void links_and_context_name_the_image_and_rule(void **state)
{
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, *state);
    const json_t *links = find_block(msg, "section", "<https://");
    const json_t *context = find_block(msg, "context", "");
    char *dumped = json_dumps(json_object_get(context, "elements"), JSON_COMPACT);

    assert_non_null(links);
    assert_non_null(strstr(text_of(links), "<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/"
                                           "sharingamis-intro.html|Runbook reference>"));
    assert_non_null(strstr(text_of(links), "<https://us-west-2.console.aws.amazon.com/ec2/home?"
                                           "region=us-west-2#ImageDetails:imageId=ami-1111|"
                                           "AWS console: ami-1111>"));
    assert_non_null(strstr(dumped, "AWS.CloudTrail.AMIModifiedForPublicAccess"));
    /* The report name's '&' is escaped like any other text. */
    assert_non_null(strstr(dumped, "MITRE ATT&amp;CK: TA0010:T1537"));
    assert_non_null(strstr(dumped, "Tags: AWS, Exfiltration:Transfer Data to Cloud Account"));
    free(dumped);
    json_decref(msg);
}

static void severity_comes_from_the_document(void **state)
{
    json_t *alert = json_deep_copy(*state);
    set_string(alert, "severity", "Critical");
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);

    assert_string_equal(text_of(find_block(msg, "header", "")),
                        ":rotating_light: [Critical] " TITLE);
    assert_string_equal(json_string_value(json_object_get(msg, "text")),
                        "[Critical] " TITLE ": ami-1111 in 123456789012/us-west-2");
    json_decref(msg);
    json_decref(alert);
}

static void oversized_values_are_cut_to_slack_limits(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *runbook = repeat("r", 10000);
    char *title = repeat("T", 500);
    char *agent = repeat("a", 5000);
    set_string(alert, "runbook", runbook);
    set_string(alert, "title", title);
    set_string(json_object_get(alert, "context"), "userAgent", agent);
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const char *header = text_of(find_block(msg, "header", ""));
    const char *rb = text_of(find_block(msg, "section", "*Runbook*"));

    assert_int_equal(code_points(header), TH_SLACK_MAX_HEADER);
    assert_string_equal(header + strlen(header) - 3, UTF8_ELLIPSIS);
    assert_int_equal(code_points(rb), TH_SLACK_MAX_SECTION);
    assert_string_equal(rb + strlen(rb) - 3, UTF8_ELLIPSIS);
    assert_int_equal(code_points(field(msg, "User agent")), TH_SLACK_MAX_FIELD);
    /* "[Medium] " + title + ": ami-1111 in 123456789012/us-west-2": well within 4000. */
    assert_int_equal(code_points(json_string_value(json_object_get(msg, "text"))), 9 + 500 + 36);
    assert_within_limits(msg);
    free(runbook);
    free(title);
    free(agent);
    json_decref(msg);
    json_decref(alert);
}

static void fallback_text_is_cut_at_4000(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *title = repeat("T", 5000);
    set_string(alert, "title", title);
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const char *text = json_string_value(json_object_get(msg, "text"));

    assert_int_equal(code_points(text), TH_SLACK_MAX_TEXT);
    assert_string_equal(text + strlen(text) - 3, UTF8_ELLIPSIS);
    free(title);
    json_decref(msg);
    json_decref(alert);
}

static void truncate_never_splits_a_character(void **state)
{
    char *s = NULL;
    (void)state;
    /* "ab" + U+1F600 (4 bytes) + "cd": 5 code points. */
    s = th_slack_truncate("ab\xf0\x9f\x98\x80"
                          "cd",
                          5);
    assert_string_equal(s, "ab\xf0\x9f\x98\x80"
                           "cd");
    free(s);
    s = th_slack_truncate("ab\xf0\x9f\x98\x80"
                          "cd",
                          4);
    assert_string_equal(s, "ab\xf0\x9f\x98\x80" UTF8_ELLIPSIS);
    free(s);
    s = th_slack_truncate("ab\xf0\x9f\x98\x80"
                          "cd",
                          3);
    assert_string_equal(s, "ab" UTF8_ELLIPSIS);
    free(s);
    /* Six bytes but three characters: nothing to cut. */
    s = th_slack_truncate("\xc3\xa9\xc3\xa9\xc3\xa9", 3);
    assert_string_equal(s, "\xc3\xa9\xc3\xa9\xc3\xa9");
    free(s);
    s = th_slack_truncate("abc", 0);
    assert_string_equal(s, "");
    free(s);
}

static void truncate_repairs_bytes_that_are_not_utf8(void **state)
{
    (void)state;
    /* A lone continuation byte and a cut-off sequence become U+FFFD, so jansson takes it. */
    char *s = th_slack_truncate("a\x80"
                                "b\xe2\x82",
                                10);
    assert_string_equal(s, "a\xef\xbf\xbd"
                           "b\xef\xbf\xbd\xef\xbf\xbd");
    json_t *j = json_string(s);
    assert_non_null(j);
    json_decref(j);
    free(s);
}

static void multibyte_title_is_cut_between_characters(void **state)
{
    json_t *alert = json_deep_copy(*state);
    /* Two-, three- and four-byte characters, so any byte cut would land inside one. */
    char *title = repeat("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 200);
    set_string(alert, "title", title);
    set_string(alert, "runbook", title);
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const char *header = text_of(find_block(msg, "header", ""));
    const char *prefix = ":large_orange_circle: [Medium] ";
    size_t body = strlen(header) - strlen(prefix) - 3;

    assert_int_equal(code_points(header), TH_SLACK_MAX_HEADER);
    /* What is kept of the title is whole characters: a prefix of the original, cut at a unit. */
    assert_memory_equal(header + strlen(prefix), title, body);
    assert_true((header[strlen(prefix) + body] & 0xff) == 0xe2);
    assert_int_equal((body % 9) == 0 || (body % 9) == 2 || (body % 9) == 5, 1);
    assert_within_limits(msg);
    free(title);
    json_decref(msg);
    json_decref(alert);
}

static void event_data_cannot_mention_or_link(void **state)
{
    json_t *alert = json_deep_copy(*state);
    json_t *ctx = json_object_get(alert, "context");
    set_string(ctx, "userAgent", "<!channel>");
    set_string(ctx, "sourceIPAddress", "<http://evil|click>");
    set_string(alert, "image_id", "<@U123>");
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    char *dumped = json_dumps(msg, JSON_COMPACT);

    assert_string_equal(field(msg, "User agent"), "*User agent*\n&lt;!channel&gt;");
    assert_string_equal(field(msg, "Source IP"), "*Source IP*\n&lt;http://evil|click&gt;");
    assert_string_equal(json_string_value(json_object_get(msg, "text")),
                        "[Medium] " TITLE ": &lt;@U123&gt; in 123456789012/us-west-2");
    assert_null(strstr(dumped, "<!"));
    assert_null(strstr(dumped, "<@"));
    assert_null(strstr(dumped, "<http://evil"));
    /* An image id that is not an AMI id gets no console link: it would be attacker-chosen. */
    assert_null(strstr(dumped, "console.aws.amazon.com"));
    free(dumped);
    json_decref(msg);
    json_decref(alert);
}

static void hostile_region_gets_no_console_link(void **state)
{
    json_t *alert = json_deep_copy(*state);
    set_string(alert, "region", "evil.example.com/x?");
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    char *dumped = json_dumps(msg, JSON_COMPACT);

    assert_null(strstr(dumped, "console.aws.amazon.com"));
    assert_null(strstr(dumped, "<https://evil"));
    /* The reference link is still there. */
    assert_non_null(strstr(dumped, "|Runbook reference>"));
    free(dumped);
    json_decref(msg);
    json_decref(alert);
}

static void reference_links_are_checked_before_use(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *amps = repeat("&", 900);
    char *long_ref = malloc(strlen(amps) + 32);
    json_t *msg = NULL;

    set_string(alert, "reference", "https://example.com/a?x=1&y=2");
    msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    assert_non_null(strstr(text_of(find_block(msg, "section", "<https://example.com/")),
                           "<https://example.com/a?x=1&amp;y=2|Runbook reference>"));
    json_decref(msg);

    /* A '|' would let the document choose the link text. */
    set_string(alert, "reference", "https://example.com/|Click me");
    msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    assert_null(find_block(msg, "section", "<https://example.com/"));
    json_decref(msg);

    /* 900 '&' are 4500 characters as sent: left out rather than cut into a broken link. */
    strcpy(long_ref, "https://example.com/?");
    strcat(long_ref, amps);
    set_string(alert, "reference", long_ref);
    msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const char *links = text_of(find_block(msg, "section", "<https://"));
    assert_string_equal(links, "<https://us-west-2.console.aws.amazon.com/ec2/home?region=us-west-2"
                               "#ImageDetails:imageId=ami-1111|AWS console: ami-1111>");
    json_decref(msg);
    free(long_ref);
    free(amps);
    json_decref(alert);
}

static void escaping_is_never_cut_mid_entity(void **state)
{
    json_t *alert = json_deep_copy(*state);
    char *amps = repeat("&", 5000);
    set_string(alert, "description", amps);
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, alert);
    const char *text = text_of(find_block(msg, "section", "&amp;"));
    size_t kept = strlen(text) - 3;

    assert_true(code_points(text) <= TH_SLACK_MAX_SECTION);
    assert_string_equal(text + kept, UTF8_ELLIPSIS);
    assert_int_equal(kept % 5, 0);
    for (size_t i = 0; i < kept; i += 5) {
        assert_memory_equal(text + i, "&amp;", 5);
    }
    free(amps);
    json_decref(msg);
    json_decref(alert);
}

static void resolve_says_the_image_is_private_again(void **state)
{
    json_t *alert = json_deep_copy(*state);
    set_string(alert, "resolved_at", "2019-01-01T01:00:00Z");
    json_t *msg = th_slack_message(TH_OUTBOX_RESOLVE, alert);
    const char *want = "Resolved: " TITLE " \xe2\x80\x94 ami-1111 in 123456789012/us-west-2 was "
                       "made private again";

    assert_string_equal(json_string_value(json_object_get(msg, "text")), want);
    assert_int_equal(json_array_size(json_object_get(msg, "blocks")), 2);
    assert_string_equal(text_of(find_block(msg, "header", "")),
                        ":white_check_mark: Resolved: " TITLE);
    assert_non_null(find_block(msg, "section", want));
    assert_non_null(strstr(text_of(find_block(msg, "section", "")), "2019-01-01T01:00:00Z"));
    assert_within_limits(msg);
    json_decref(msg);
    json_decref(alert);
}

static void rule_error_names_rule_event_and_error(void **state)
{
    json_t *doc =
        json_pack("{s:i, s:s, s:s, s:s, s:{}, s:s}", "id", 7, "rule",
                  "AWS.CloudTrail.AMIModifiedForPublicAccess", "event_id", "e-42", "error",
                  "KeyError: <requestParameters>", "event", "created_at", "2019-01-01T00:00:00Z");
    json_t *msg = th_slack_message(TH_OUTBOX_RULE_ERROR, doc);
    (void)state;

    assert_string_equal(json_string_value(json_object_get(msg, "text")),
                        "Rule error in AWS.CloudTrail.AMIModifiedForPublicAccess on event e-42: "
                        "KeyError: &lt;requestParameters&gt;");
    assert_string_equal(field(msg, "Rule"), "*Rule*\nAWS.CloudTrail.AMIModifiedForPublicAccess");
    assert_string_equal(field(msg, "Event ID"), "*Event ID*\ne-42");
    assert_string_equal(field(msg, "Error"), "*Error*\nKeyError: &lt;requestParameters&gt;");
    assert_within_limits(msg);
    json_decref(msg);
    json_decref(doc);
}

static void wrong_types_read_as_absent(void **state)
{
    json_t *doc =
        json_pack("{s:i, s:[], s:{}, s:b, s:i, s:n, s:s, s:i}", "title", 3, "severity", "image_id",
                  "region", 1, "account_id", 5, "context", "event_count", "many", "tags", 9);
    json_t *not_object = json_array();
    (void)state;

    for (int kind = TH_OUTBOX_ALERT; kind <= TH_OUTBOX_RESOLVE; kind++) {
        json_t *msg = th_slack_message((enum th_outbox_kind)kind, doc);
        json_t *msg2 = th_slack_message((enum th_outbox_kind)kind, not_object);
        json_t *msg3 = th_slack_message((enum th_outbox_kind)kind, NULL);
        assert_within_limits(msg);
        assert_within_limits(msg2);
        assert_within_limits(msg3);
        json_decref(msg);
        json_decref(msg2);
        json_decref(msg3);
    }
    json_t *msg = th_slack_message(TH_OUTBOX_ALERT, doc);
    assert_string_equal(json_string_value(json_object_get(msg, "text")), "trailhook alert");
    assert_string_equal(field(msg, "Event count"), "*Event count*\nmany");
    assert_null(field(msg, "Account"));
    json_decref(msg);
    json_decref(not_object);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(real_alert_reads_as_expected, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(links_and_context_name_the_image_and_rule, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(severity_comes_from_the_document, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(oversized_values_are_cut_to_slack_limits, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(fallback_text_is_cut_at_4000, load_alert, free_alert),
        cmocka_unit_test(truncate_never_splits_a_character),
        cmocka_unit_test(truncate_repairs_bytes_that_are_not_utf8),
        cmocka_unit_test_setup_teardown(multibyte_title_is_cut_between_characters, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(event_data_cannot_mention_or_link, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(hostile_region_gets_no_console_link, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(reference_links_are_checked_before_use, load_alert,
                                        free_alert),
        cmocka_unit_test_setup_teardown(escaping_is_never_cut_mid_entity, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(resolve_says_the_image_is_private_again, load_alert,
                                        free_alert),
        cmocka_unit_test(rule_error_names_rule_event_and_error),
        cmocka_unit_test(wrong_types_read_as_absent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
