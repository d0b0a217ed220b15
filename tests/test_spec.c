/* SPDX-License-Identifier: MIT */
/* test_spec.c -- loading Panther rule specs: the shipped spec, defaults, and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "trailhook/spec.h"

#define AMI_ID   "AWS.CloudTrail.AMIModifiedForPublicAccess"
#define AMI_SPEC TH_SOURCE_DIR "/config/rules/aws_ami_modified_for_public_access.yml"

static struct th_spec *parse_ok(const char *text)
{
    struct th_spec *spec = NULL;
    char err[512] = "";

    if (th_spec_parse("t.yml", text, strlen(text), &spec, err, sizeof(err)) != TH_OK) {
        fail_msg("unexpected error: %s", err);
    }
    assert_non_null(spec);
    return spec;
}

static enum th_err parse_err(const char *text, char *err, size_t errlen)
{
    struct th_spec *spec = NULL;
    enum th_err rc = th_spec_parse("t.yml", text, strlen(text), &spec, err, errlen);

    assert_null(spec);
    assert_int_not_equal(rc, TH_OK);
    return rc;
}

static int load_ami(void **state)
{
    struct th_spec *spec = NULL;
    char err[512] = "";

    if (th_spec_load(AMI_SPEC, &spec, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = spec;
    return 0;
}

static int free_ami(void **state)
{
    th_spec_free(*state);
    return 0;
}

static void test_shipped_spec_metadata(void **state)
{
    const struct th_spec *spec = *state;
    json_t *mitre = json_object_get(spec->reports, "MITRE ATT&CK");

    assert_string_equal(spec->rule_id, AMI_ID);
    assert_non_null(spec->rule);
    assert_string_equal(spec->rule->id, AMI_ID);
    assert_true(spec->enabled);
    assert_string_equal(spec->display_name,
                        "Amazon Machine Image (AMI) Modified to Allow Public Access");
    assert_int_equal(spec->severity, TH_SEV_MEDIUM);
    assert_string_equal(th_severity_name(spec->severity), "Medium");
    assert_string_equal(spec->description,
                        "An Amazon Machine Image (AMI) was modified to allow it to be launched by "
                        "anyone. Any sensitive configuration or application data stored in the "
                        "AMI's block devices is at risk.");
    assert_non_null(strstr(spec->runbook, "Determine if the AMI is intended to be publicly"));
    assert_int_not_equal(spec->runbook[strlen(spec->runbook) - 1], '\n');
    assert_string_equal(
        spec->reference,
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-intro.html");
    assert_int_equal(spec->ntags, 2);
    assert_string_equal(spec->tags[0], "AWS");
    assert_string_equal(spec->tags[1], "Exfiltration:Transfer Data to Cloud Account");
    assert_int_equal(json_array_size(mitre), 1);
    assert_string_equal(json_string_value(json_array_get(mitre, 0)), "TA0010:T1537");
    assert_int_equal(spec->nsummary_attributes, 4);
    assert_string_equal(spec->summary_attributes[0], "userAgent");
    assert_string_equal(spec->summary_attributes[1], "sourceIpAddress");
    assert_string_equal(spec->summary_attributes[3], "p_any_aws_arns");
    assert_int_equal(spec->dedup_period_minutes, 60);
    assert_int_equal(spec->threshold, 1);
}

static void test_shipped_spec_tests(void **state)
{
    const struct th_spec *spec = *state;
    static const char *const names[] = {
        "AMI Made Public",   "AMI Not Made Public",     "AMI Launch Permissions Not Modified",
        "AMI Added to User", "Error Making AMI Public", "Access Granted To Unknown User"};
    static const bool expected[] = {true, false, false, false, false, true};
    static const size_t nmocks[] = {0, 1, 1, 1, 0, 1};

    assert_int_equal(spec->ntests, 6);
    for (size_t i = 0; i < 6; i++) {
        const struct th_spec_test *t = &spec->tests[i];
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->expected, expected[i]);
        assert_int_equal(t->nmocks, nmocks[i]);
        assert_true(json_is_object(t->log));
        assert_string_equal(json_string_value(json_object_get(t->log, "eventName")),
                            "ModifyImageAttribute");
        assert_true(t->line > 0);
    }
    assert_string_equal(spec->tests[1].mocks[0].object_name, "check_account_age");
    assert_true(json_is_false(spec->tests[1].mocks[0].return_value));
    assert_string_equal(spec->tests[5].mocks[0].object_name, "check_account_age");
    assert_true(json_is_true(spec->tests[5].mocks[0].return_value));
    assert_string_equal(json_string_value(json_object_get(spec->tests[4].log, "errorCode")),
                        "UnauthorizedOperation");
    assert_true(json_is_true(
        json_object_get(json_object_get(spec->tests[0].log, "responseElements"), "_return")));
}

static void test_defaults(void **state)
{
    struct th_spec *spec = parse_ok("RuleID: " AMI_ID "\nSeverity: High\n");

    (void)state;
    assert_string_equal(spec->display_name, AMI_ID);
    assert_true(spec->enabled);
    assert_int_equal(spec->severity, TH_SEV_HIGH);
    assert_string_equal(spec->description, "");
    assert_string_equal(spec->runbook, "");
    assert_string_equal(spec->reference, "");
    assert_int_equal(spec->ntags, 0);
    assert_true(json_is_object(spec->reports));
    assert_int_equal(spec->dedup_period_minutes, 60);
    assert_int_equal(spec->threshold, 1);
    assert_int_equal(spec->ntests, 0);
    assert_string_equal(spec->path, "t.yml");
    th_spec_free(spec);
}

static void test_panther_keys_accepted(void **state)
{
    struct th_spec *spec =
        parse_ok("AnalysisType: rule\nFilename: x.py\nLogTypes: [AWS.CloudTrail]\n"
                 "OutputIds: [a]\nCreateAlert: true\nInlineFilters: {}\n"
                 "RuleID: " AMI_ID "\nSeverity: Low\nEnabled: false\n"
                 "DedupPeriodMinutes: 15\nThreshold: 5\n");

    (void)state;
    assert_false(spec->enabled);
    assert_int_equal(spec->dedup_period_minutes, 15);
    assert_int_equal(spec->threshold, 5);
    th_spec_free(spec);
}

static void test_bad_severity_names_line(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(parse_err("RuleID: " AMI_ID "\n\nSeverity: medium\n", err, sizeof(err)),
                     TH_EINVAL);
    assert_string_equal(err, "t.yml:3: Severity must be one of Info, Low, Medium, High, "
                             "Critical (got 'medium')");
    parse_err("RuleID: " AMI_ID "\nSeverity: [High]\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:2: Severity must be one of Info, Low, Medium, High, "
                             "Critical (got a list)");
    parse_err("RuleID: " AMI_ID "\n", err, sizeof(err));
    assert_non_null(strstr(err, "Severity is required"));
}

static void test_unknown_rule_id(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(parse_err("Severity: Low\nRuleID: AWS.Nope\n", err, sizeof(err)), TH_EINVAL);
    assert_string_equal(err, "t.yml:2: RuleID 'AWS.Nope' names no rule compiled into trailhook");
    parse_err("Severity: Low\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:1: RuleID is required");
}

static void test_unknown_key(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(
        parse_err("RuleID: " AMI_ID "\nSeverity: Low\nSeverty: High\n", err, sizeof(err)),
        TH_EINVAL);
    assert_string_equal(err, "t.yml:3: unknown key 'Severty' (not part of Panther's rule format)");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    ExpectedResult: true\n"
              "    Log: {}\n    Mock: []\n",
              err, sizeof(err));
    assert_string_equal(err, "t.yml:7: test 1: unknown key 'Mock' (not part of a Panther rule "
                             "test)");
}

static void test_wrong_types_name_key_and_line(void **state)
{
    char err[512];

    (void)state;
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTags: AWS\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: Tags must be a list of strings");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTags:\n  - a\n  - [b]\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:5: Tags must be a list of strings (item 2 is not text)");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nDedupPeriodMinutes: 0\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: DedupPeriodMinutes must be a whole number from 1 to 10080");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nDedupPeriodMinutes: '60'\n", err, sizeof(err));
    assert_non_null(strstr(err, "t.yml:3: DedupPeriodMinutes"));
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nThreshold: many\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: Threshold must be a whole number of at least 1");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nEnabled: maybe\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: Enabled must be true or false");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nDisplayName: yes\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: DisplayName must be text");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nReports: {MITRE: x}\n", err, sizeof(err));
    assert_string_equal(err, "t.yml:3: Reports: 'MITRE' must be a list");
}

static void test_test_entries_checked(void **state)
{
    char err[512];

    (void)state;
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    Log: {}\n", err,
              sizeof(err));
    assert_string_equal(err, "t.yml:4: test 1: ExpectedResult is required");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    ExpectedResult: 1\n"
              "    Log: {}\n",
              err, sizeof(err));
    assert_string_equal(err, "t.yml:5: test 1: ExpectedResult must be true or false");
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    ExpectedResult: no\n"
              "    Log: {}\n    Mocks:\n      - objectName: f\n",
              err, sizeof(err));
    assert_string_equal(err, "t.yml:8: test 1: returnValue is required");
}

static void test_log_as_json_string(void **state)
{
    struct th_spec *spec = parse_ok("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n"
                                    "  - Name: literal block\n    ExpectedResult: true\n"
                                    "    Log: |\n      {\"eventName\": \"ModifyImageAttribute\",\n"
                                    "       \"n\": 1}\n"
                                    "  - Name: quoted\n    ExpectedResult: false\n"
                                    "    Log: '{\"eventName\": \"X\"}'\n"
                                    "  - Name: block mapping\n    ExpectedResult: false\n"
                                    "    Log:\n      eventName: Y\n      n: 2\n");

    (void)state;
    assert_int_equal(spec->ntests, 3);
    assert_string_equal(json_string_value(json_object_get(spec->tests[0].log, "eventName")),
                        "ModifyImageAttribute");
    assert_int_equal(json_integer_value(json_object_get(spec->tests[0].log, "n")), 1);
    assert_string_equal(json_string_value(json_object_get(spec->tests[1].log, "eventName")), "X");
    assert_string_equal(json_string_value(json_object_get(spec->tests[2].log, "eventName")), "Y");
    assert_int_equal(json_integer_value(json_object_get(spec->tests[2].log, "n")), 2);
    assert_int_equal(spec->tests[2].line, 12);
    th_spec_free(spec);
}

static void test_log_bad_json_string(void **state)
{
    char err[512];

    (void)state;
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    ExpectedResult: true\n"
              "    Log: '{\"eventName\": }'\n",
              err, sizeof(err));
    assert_true(strncmp(err, "t.yml:6: test 1: Log is not valid JSON: ", 40) == 0);
    parse_err("RuleID: " AMI_ID "\nSeverity: Low\nTests:\n  - Name: a\n    ExpectedResult: true\n"
              "    Log: '[1]'\n",
              err, sizeof(err));
    assert_string_equal(err, "t.yml:6: test 1: Log must hold a JSON object");
}

static void test_yaml_error_names_place(void **state)
{
    char err[512];

    (void)state;
    assert_int_equal(parse_err("RuleID: x\n  Severity: Low\n", err, sizeof(err)), TH_EPARSE);
    assert_true(strncmp(err, "t.yml: line 2, column ", 22) == 0);
    parse_err("- a\n- b\n", err, sizeof(err));
    assert_non_null(strstr(err, "t.yml:1: a rule spec must be a mapping"));
}

static void test_load_missing_file(void **state)
{
    struct th_spec *spec = NULL;
    char err[512];

    (void)state;
    assert_int_equal(th_spec_load("/nonexistent/x.yml", &spec, err, sizeof(err)), TH_EIO);
    assert_null(spec);
    assert_string_equal(err, "cannot read rule spec /nonexistent/x.yml: No such file or directory");
}

static void test_set_load_rules_dir(void **state)
{
    struct th_spec_set set = {0};
    char err[512] = "";

    (void)state;
    assert_int_equal(th_spec_set_load(TH_SOURCE_DIR "/config/rules", &set, err, sizeof(err)),
                     TH_OK);
    assert_true(set.nspecs >= 1);
    assert_string_equal(set.specs[0]->rule_id, AMI_ID);
    th_spec_set_cleanup(&set);
    assert_int_equal(set.nspecs, 0);
    assert_null(set.specs);
}

static void test_set_load_embedded(void **state)
{
    struct th_spec_set set = {0};
    char err[512] = "";
    bool found = false;

    (void)state;
    assert_int_equal(th_spec_set_load(NULL, &set, err, sizeof(err)), TH_OK);
    for (size_t i = 0; i < set.nspecs; i++) {
        found = found || strcmp(set.specs[i]->rule_id, AMI_ID) == 0;
    }
    assert_true(found);
    th_spec_set_cleanup(&set);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *fp = NULL;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static void test_set_load_duplicate_and_empty(void **state)
{
    char dir[] = "/tmp/th_spec_XXXXXX";
    struct th_spec_set set = {0};
    char err[512] = "";

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(th_spec_set_load(dir, &set, err, sizeof(err)), TH_EINVAL);
    assert_non_null(strstr(err, "holds no *.yml or *.yaml rule spec"));
    write_file(dir, "a.yml", "RuleID: " AMI_ID "\nSeverity: Low\n");
    write_file(dir, "b.yaml", "RuleID: " AMI_ID "\nSeverity: High\n");
    write_file(dir, "notes.txt", "not a spec");
    assert_int_equal(th_spec_set_load(dir, &set, err, sizeof(err)), TH_EINVAL);
    assert_int_equal(set.nspecs, 0);
    assert_non_null(strstr(err, "/b.yaml: RuleID '" AMI_ID "' is already defined in "));
    assert_non_null(strstr(err, "/a.yml"));
    remove_file(dir, "a.yml");
    remove_file(dir, "b.yaml");
    remove_file(dir, "notes.txt");
    rmdir(dir);
    assert_int_equal(th_spec_set_load(dir, &set, err, sizeof(err)), TH_EIO);
    assert_non_null(strstr(err, "cannot open rules directory"));
}

static void test_severity_names(void **state)
{
    enum th_severity sev = TH_SEV_INFO;

    (void)state;
    assert_true(th_severity_parse("Critical", &sev));
    assert_int_equal(sev, TH_SEV_CRITICAL);
    assert_false(th_severity_parse("critical", &sev));
    assert_false(th_severity_parse("DEFAULT", &sev));
    assert_string_equal(th_severity_name(TH_SEV_INFO), "Info");
    assert_string_equal(th_severity_name(TH_SEV_LOW), "Low");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shipped_spec_metadata, load_ami, free_ami),
        cmocka_unit_test_setup_teardown(test_shipped_spec_tests, load_ami, free_ami),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_panther_keys_accepted),
        cmocka_unit_test(test_bad_severity_names_line),
        cmocka_unit_test(test_unknown_rule_id),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_types_name_key_and_line),
        cmocka_unit_test(test_test_entries_checked),
        cmocka_unit_test(test_log_as_json_string),
        cmocka_unit_test(test_log_bad_json_string),
        cmocka_unit_test(test_yaml_error_names_place),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_set_load_rules_dir),
        cmocka_unit_test(test_set_load_embedded),
        cmocka_unit_test(test_set_load_duplicate_and_empty),
        cmocka_unit_test(test_severity_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
