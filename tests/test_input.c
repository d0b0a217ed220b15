/* SPDX-License-Identifier: MIT */
/* test_input.c -- every body form of DESIGN §2, gzip, limits and error positions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "trailhook/input.h"

#define REC(id) "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"" id "\"}"

static const struct th_input_limits limits = {1 << 20, 1000, 32, 64, NULL, NULL};

static enum th_err parse(const char *text, struct th_input *in, struct th_input_error *err)
{
    return th_input_parse(text, strlen(text), &limits, in, err);
}

static const char *event_id(const struct th_input *in, size_t i)
{
    return json_string_value(json_object_get(in->records[i].event, "eventID"));
}

static void single_record(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse(REC("a"), &in, &err), TH_OK);
    assert_int_equal(in.form, TH_FORM_RECORD);
    assert_int_equal(in.nrecords, 1);
    assert_true(in.records[0].cloudtrail);
    th_input_cleanup(&in);
}

static void eventbridge_envelope_gives_its_detail(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse("{\"version\":\"0\",\"detail-type\":\"AWS API Call via CloudTrail\","
                           "\"source\":\"aws.ec2\",\"detail\":" REC("env") "}",
                           &in, &err),
                     TH_OK);
    assert_int_equal(in.form, TH_FORM_ENVELOPE);
    assert_int_equal(in.nrecords, 1);
    assert_string_equal(event_id(&in, 0), "env");
    th_input_cleanup(&in);
}

static void records_file_and_array(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse("{\"Records\":[" REC("1") "," REC("2") "]}", &in, &err), TH_OK);
    assert_int_equal(in.form, TH_FORM_RECORDS);
    assert_int_equal(in.nrecords, 2);
    assert_string_equal(event_id(&in, 1), "2");
    th_input_cleanup(&in);
    /* An array of any of the forms. */
    assert_int_equal(parse("[" REC("1") ",{\"Records\":[" REC("2") "," REC(
                               "3") "]},"
                                    "{\"detail-type\":\"x\",\"detail\":" REC("4") "}]",
                           &in, &err),
                     TH_OK);
    assert_int_equal(in.form, TH_FORM_ARRAY);
    assert_int_equal(in.nrecords, 4);
    assert_string_equal(event_id(&in, 3), "4");
    th_input_cleanup(&in);
    assert_int_equal(parse("[]", &in, &err), TH_OK);
    assert_int_equal(in.nrecords, 0);
    th_input_cleanup(&in);
}

static void ndjson_lines(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse(REC("1") "\n\n" REC("2") "\r\n" REC("3") "\n", &in, &err), TH_OK);
    assert_int_equal(in.form, TH_FORM_NDJSON);
    assert_int_equal(in.nrecords, 3);
    th_input_cleanup(&in);
}

static void malformed_json_says_line_and_column(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse("{\n  \"a\": 1,\n  \"b\": oops\n}", &in, &err), TH_EPARSE);
    assert_int_equal(err.line, 3);
    assert_true(err.column >= 8 && err.column <= 11);
    th_input_cleanup(&in);
    /* On the third line of an NDJSON body. */
    assert_int_equal(parse(REC("1") "\n" REC("2") "\n{\"x\":}\n", &in, &err), TH_EPARSE);
    assert_int_equal(err.line, 3);
    th_input_cleanup(&in);
    assert_int_equal(parse("   ", &in, &err), TH_OK);
    assert_int_equal(in.form, TH_FORM_EMPTY);
    th_input_cleanup(&in);
}

static void not_cloudtrail_records_are_flagged(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    assert_int_equal(parse("[{\"digestStartTime\":\"x\"}," REC("1") "]", &in, &err), TH_OK);
    assert_false(in.records[0].cloudtrail);
    assert_true(in.records[1].cloudtrail);
    th_input_cleanup(&in);
}

static void limits_are_enforced(void **state)
{
    struct th_input in;
    struct th_input_error err;
    char deep[200];
    struct th_input_limits small = {1 << 20, 2, 32, 64, NULL, NULL};
    (void)state;
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99);
    deep[199] = '\0';
    assert_int_equal(parse(deep, &in, &err), TH_EPARSE);
    assert_non_null(strstr(err.message, "deeper"));
    th_input_cleanup(&in);
    const char *three = "[" REC("1") "," REC("2") "," REC("3") "]";
    assert_int_equal(th_input_parse(three, strlen(three), &small, &in, &err), TH_ETOOBIG);
    th_input_cleanup(&in);
}

/* limits.max_string_bytes is 64: the quotes and escapes of a string count toward it. */
static void long_strings_are_refused_where_they_start(void **state)
{
    struct th_input in;
    struct th_input_error err;
    char text[256];
    (void)state;
    /* 62 characters between the quotes: 64 bytes in all, the most allowed. */
    snprintf(text, sizeof(text), "{\"eventName\":\"%.*s\"}", 62,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(parse(text, &in, &err), TH_OK);
    th_input_cleanup(&in);
    snprintf(text, sizeof(text), "{\"eventName\":\n  \"%.*s\"}", 63,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(parse(text, &in, &err), TH_ETOOBIG);
    assert_non_null(strstr(err.message, "longer than 64 bytes"));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 3);
    th_input_cleanup(&in);
    /* Escaped quotes do not end the string early. */
    snprintf(text, sizeof(text), "{\"eventName\":\"%s\"}",
             "\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\""
             "\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"");
    assert_int_equal(parse(text, &in, &err), TH_ETOOBIG);
    th_input_cleanup(&in);
}

static size_t gzip(const char *text, unsigned char *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (Bytef *)text;
    zs.avail_in = (uInt)strlen(text);
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    return n;
}

static void gzip_bodies_are_inflated_and_bounded(void **state)
{
    struct th_input in;
    struct th_input_error err;
    unsigned char buf[4096];
    (void)state;
    size_t n = gzip("{\"Records\":[" REC("g1") "," REC("g2") "]}", buf, sizeof(buf));
    assert_int_equal(th_input_parse((char *)buf, n, &limits, &in, &err), TH_OK);
    assert_int_equal(in.nrecords, 2);
    th_input_cleanup(&in);
    /* A bomb: 1 MiB of spaces inflating past a 64 KiB limit. */
    char *big = malloc(1 << 20);
    memset(big, ' ', (1 << 20) - 1);
    big[(1 << 20) - 1] = '\0';
    unsigned char *zbuf = malloc(1 << 16);
    n = gzip(big, zbuf, 1 << 16);
    struct th_input_limits tight = {1 << 16, 10, 32, 64, NULL, NULL};
    assert_int_equal(th_input_parse((char *)zbuf, n, &tight, &in, &err), TH_ETOOBIG);
    th_input_cleanup(&in);
    /* Truncated gzip is a clear parse error. */
    assert_int_equal(th_input_parse((char *)buf, 12, &limits, &in, &err), TH_EPARSE);
    th_input_cleanup(&in);
    free(big);
    free(zbuf);
}

static void numbers_python_reads_are_read(void **state)
{
    struct th_input in;
    struct th_input_error err;
    (void)state;
    /* Beyond 64 bits, and a U+0000 inside a string: both legal JSON. */
    assert_int_equal(parse("{\"eventName\":\"X\",\"n\":123456789012345678901234567890,"
                           "\"s\":\"a\\u0000b\"}",
                           &in, &err),
                     TH_OK);
    assert_int_equal(in.nrecords, 1);
    assert_true(json_is_real(json_object_get(in.records[0].event, "n")));
    th_input_cleanup(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_record),
        cmocka_unit_test(eventbridge_envelope_gives_its_detail),
        cmocka_unit_test(records_file_and_array),
        cmocka_unit_test(ndjson_lines),
        cmocka_unit_test(malformed_json_says_line_and_column),
        cmocka_unit_test(not_cloudtrail_records_are_flagged),
        cmocka_unit_test(limits_are_enforced),
        cmocka_unit_test(long_strings_are_refused_where_they_start),
        cmocka_unit_test(gzip_bodies_are_inflated_and_bounded),
        cmocka_unit_test(numbers_python_reads_are_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
