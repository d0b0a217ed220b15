/* SPDX-License-Identifier: MIT */
/* test_yaml.c -- the YAML reader: typing as PyYAML does, positions, and what it refuses. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/yaml.h"
#include "../src/yaml_int.h"

static struct th_yaml_node *parse_ok(const char *text)
{
    struct th_yaml_node *root = NULL;
    char err[256];
    enum th_err rc = th_yaml_parse(text, strlen(text), 0, &root, err, sizeof(err));

    if (rc != TH_OK) {
        fail_msg("unexpected parse error: %s", err);
    }
    assert_non_null(root);
    return root;
}

static enum th_err parse_err(const char *text, size_t depth, char *err, size_t errlen)
{
    struct th_yaml_node *root = NULL;
    enum th_err rc = th_yaml_parse(text, strlen(text), depth, &root, err, errlen);

    assert_null(root);
    return rc;
}

/* The document, as JSON, must equal @p expected_json. */
static void assert_json(const char *yaml, const char *expected_json)
{
    struct th_yaml_node *root = parse_ok(yaml);
    json_t *got = th_yaml_to_json(root);
    json_t *want = json_loads(expected_json, 0, NULL);
    char *dump = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);

    assert_non_null(want);
    if (!json_equal(got, want)) {
        fail_msg("got %s, want %s", dump, expected_json);
    }
    free(dump);
    json_decref(got);
    json_decref(want);
    th_yaml_free(root);
}

static void test_scalar_typing(void **state)
{
    (void)state;
    assert_json("a: ~\nb: null\nc: NULL\nd:\ne: 'null'\n",
                "{\"a\":null,\"b\":null,\"c\":null,\"d\":null,\"e\":\"null\"}");
    assert_json("a: true\nb: False\nc: yes\nd: OFF\ne: \"yes\"\nf: tRue\n",
                "{\"a\":true,\"b\":false,\"c\":true,\"d\":false,\"e\":\"yes\",\"f\":\"tRue\"}");
    assert_json("a: 42\nb: -7\nc: 0x1F\nd: 0o17\ne: 017\nf: 1_000\ng: 09\nh: '42'\n",
                "{\"a\":42,\"b\":-7,\"c\":31,\"d\":15,\"e\":15,\"f\":1000,\"g\":\"09\","
                "\"h\":\"42\"}");
    assert_json("a: 1.5\nb: -2.\nc: 1e3\nd: .inf\ne: 1.2.3\n",
                "{\"a\":1.5,\"b\":-2.0,\"c\":1000.0,\"d\":\".inf\",\"e\":\"1.2.3\"}");
    /* An AWS account id with an 8 or 9 in it is no octal number: it stays text, as in PyYAML. */
    assert_json("id: 012345678901\nbig: 99999999999999999999\n",
                "{\"id\":\"012345678901\",\"big\":\"99999999999999999999\"}");
    assert_json("s: !!str 12\nn: !!int 12\n", "{\"s\":\"12\",\"n\":12}");
}

static void test_block_scalars_are_strings(void **state)
{
    (void)state;
    assert_json("a: |\n  yes\nb: >\n  12\n  34\n", "{\"a\":\"yes\\n\",\"b\":\"12 34\\n\"}");
}

static void test_flow_mapping_json(void **state)
{
    const char *yaml =
        "Log:\n"
        "  {\n"
        "    \"eventName\": \"ModifyImageAttribute\",\n"
        "    \"requestParameters\": {\n"
        "      \"launchPermission\": {\"add\": {\"items\": [{\"group\": \"all\"}]}}\n"
        "    },\n"
        "    \"responseElements\": {\"_return\": true},\n"
        "    \"webIdFederationData\": {}\n"
        "  }\n";
    (void)state;
    assert_json(yaml, "{\"Log\":{\"eventName\":\"ModifyImageAttribute\","
                      "\"requestParameters\":{\"launchPermission\":{\"add\":{\"items\":"
                      "[{\"group\":\"all\"}]}}},\"responseElements\":{\"_return\":true},"
                      "\"webIdFederationData\":{}}}");
}

static void test_positions(void **state)
{
    struct th_yaml_node *root = parse_ok("# comment\nname: x\nlist:\n  - a\n  - b: 2\n");
    const struct th_yaml_node *list = th_yaml_map_get(root, "list");

    (void)state;
    assert_int_equal(root->type, TH_YAML_MAP);
    assert_int_equal(root->npairs, 2);
    assert_int_equal(root->pairs[0].key->line, 2);
    assert_int_equal(root->pairs[0].key->column, 1);
    assert_int_equal(root->pairs[0].value->column, 7);
    assert_non_null(list);
    assert_int_equal(list->type, TH_YAML_SEQ);
    assert_int_equal(list->nitems, 2);
    assert_int_equal(list->items[1]->line, 5);
    assert_int_equal(list->items[1]->column, 5);
    assert_int_equal(th_yaml_map_get(list->items[1], "b")->line, 5);
    th_yaml_free(root);
}

static void test_map_get_is_exact(void **state)
{
    struct th_yaml_node *root = parse_ok("Severity: Medium\n");

    (void)state;
    assert_string_equal(th_yaml_map_get(root, "Severity")->scalar, "Medium");
    assert_null(th_yaml_map_get(root, "severity"));
    assert_null(th_yaml_map_get(root, "Sever"));
    assert_null(th_yaml_map_get(th_yaml_map_get(root, "Severity"), "x"));
    th_yaml_free(root);
}

static void test_bool(void **state)
{
    struct th_yaml_node *root = parse_ok("a: on\nb: 'true'\nc: No\nd: 1\n");
    bool v = false;

    (void)state;
    assert_true(th_yaml_bool(th_yaml_map_get(root, "a"), &v));
    assert_true(v);
    assert_false(th_yaml_bool(th_yaml_map_get(root, "b"), &v));
    assert_true(th_yaml_bool(th_yaml_map_get(root, "c"), &v));
    assert_false(v);
    assert_false(th_yaml_bool(th_yaml_map_get(root, "d"), &v));
    assert_false(th_yaml_bool(NULL, &v));
    th_yaml_free(root);
}

static void test_empty_document_is_empty_mapping(void **state)
{
    struct th_yaml_node *root = parse_ok("# only a comment\n");

    (void)state;
    assert_int_equal(root->type, TH_YAML_MAP);
    assert_int_equal(root->npairs, 0);
    th_yaml_free(root);
    root = parse_ok("---\n");
    assert_int_equal(root->type, TH_YAML_MAP);
    th_yaml_free(root);
}

static void test_anchor_and_alias_rejected(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(parse_err("a: 1\nb: &x [1]\nc: *x\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_string_equal(err, "line 2, column 4: anchors and aliases are not supported "
                             "(anchor '&x')");
    assert_int_equal(parse_err("a: 1\nb: *x\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_non_null(strstr(err, "line 2"));
}

static void test_second_document_rejected(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(parse_err("a: 1\n---\nb: 2\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_non_null(strstr(err, "line 2, column 1: a second document"));
}

static void test_bad_yaml_names_line(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(parse_err("a: 1\nb: [1, 2\nc: 3\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_true(strncmp(err, "line ", 5) == 0);
    assert_int_equal(parse_err("a: 1\n  b: 2\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_true(strncmp(err, "line 2, column ", 15) == 0);
    assert_int_equal(parse_err("a: \"\xff\"\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_true(strncmp(err, "line 1, column ", 15) == 0);
}

static void test_duplicate_key_rejected(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(parse_err("a: 1\nb: 2\na: 3\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_string_equal(err, "line 3, column 1: duplicate key 'a'");
}

static void test_unsupported_tag_and_complex_key(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(parse_err("a: !python/object x\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_non_null(strstr(err, "not supported"));
    assert_int_equal(parse_err("a: !!int abc\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_int_equal(parse_err("? [a]\n: 1\n", 0, err, sizeof(err)), TH_EPARSE);
    assert_non_null(strstr(err, "mapping key"));
}

static void test_depth_limit(void **state)
{
    char err[256];
    struct th_yaml_node *root = NULL;

    (void)state;
    assert_int_equal(parse_err("a: [[[1]]]\n", 3, err, sizeof(err)), TH_ETOOBIG);
    assert_string_equal(err, "line 1, column 6: nested deeper than 3 levels");
    assert_int_equal(th_yaml_parse("a: [[1]]\n", 9, 3, &root, err, sizeof(err)), TH_OK);
    th_yaml_free(root);
}

static void test_read_file(void **state)
{
    char *data = NULL;
    size_t len = 0;
    int errnum = 0;

    (void)state;
    assert_int_equal(
        th_yaml_read_file(TH_SOURCE_DIR "/no/such/file.yml", 1024, &data, &len, &errnum), TH_EIO);
    assert_int_equal(errnum, ENOENT);
    assert_null(data);
    assert_int_equal(th_yaml_read_file(TH_SOURCE_DIR "/config/rules/"
                                                     "aws_ami_modified_for_public_access.yml",
                                       100, &data, &len, &errnum),
                     TH_ETOOBIG);
    assert_null(data);
    assert_int_equal(th_yaml_read_file(TH_SOURCE_DIR "/config/rules/"
                                                     "aws_ami_modified_for_public_access.yml",
                                       1 << 20, &data, &len, &errnum),
                     TH_OK);
    assert_true(len > 1000);
    assert_int_equal(strlen(data), len);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_typing),
        cmocka_unit_test(test_block_scalars_are_strings),
        cmocka_unit_test(test_flow_mapping_json),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_map_get_is_exact),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_empty_document_is_empty_mapping),
        cmocka_unit_test(test_anchor_and_alias_rejected),
        cmocka_unit_test(test_second_document_rejected),
        cmocka_unit_test(test_bad_yaml_names_line),
        cmocka_unit_test(test_duplicate_key_rejected),
        cmocka_unit_test(test_unsupported_tag_and_complex_key),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_read_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
