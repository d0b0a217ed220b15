/* SPDX-License-Identifier: MIT */
/*
 * test_input_scan.c -- the fast path of the input normaliser (jscan + input_scan.c): it leaves
 * out the trees of records no rule wants, and otherwise answers exactly as jansson alone does,
 * on tricky texts and on every file of the real-event corpus.
 */
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "corpus_walk.h"
#include "input_compare.h"
#include "trailhook/input.h"
#include "trailhook/jscan.h"

static const struct th_input_limits limits = {1 << 26, 100000, 64, 1 << 20, NULL, NULL};

static void assert_same_as_jansson(const char *text)
{
    char why[512];
    const char *diff = input_paths_differ(text, strlen(text), limits, why, sizeof(why));
    if (diff != NULL) {
        fail_msg("%s\n  for: %s", diff, text);
    }
}

/* Parses @p text as the service does, wanting the names compare_wants wants. */
static void parse_wanting(const char *text, struct th_input *in)
{
    struct th_input_limits lim = limits;
    struct th_input_error err;
    lim.wants_event = compare_wants;
    assert_int_equal(th_input_parse(text, strlen(text), &lim, in, &err), TH_OK);
}

static void unwanted_records_get_no_tree(void **state)
{
    const char *text = "{\"Records\":[{\"eventName\":\"GetObject\",\"eventID\":\"a\"},"
                       "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"b\"},"
                       "{\"eventName\":\"PutObject\"}]}";
    struct th_input in;
    (void)state;
    parse_wanting(text, &in);
    assert_int_equal(in.form, TH_FORM_RECORDS);
    assert_int_equal(in.nrecords, 3);
    assert_null(in.records[0].event);
    assert_true(in.records[0].cloudtrail);
    assert_string_equal(th_input_record_id(&in.records[0]), "a");
    assert_non_null(in.records[1].event);
    assert_string_equal(th_input_record_id(&in.records[1]), "b");
    assert_null(in.records[2].event);
    assert_null(th_input_record_id(&in.records[2]));
    th_input_cleanup(&in);
}

static void envelopes_are_skipped_by_their_detail(void **state)
{
    const char *text = "{\"version\":\"0\",\"detail-type\":\"AWS API Call via CloudTrail\","
                       "\"eventName\":\"ModifyImageAttribute\","
                       "\"detail\":{\"eventName\":\"DescribeImages\",\"eventID\":\"e1\"}}";
    struct th_input in;
    (void)state;
    parse_wanting(text, &in);
    assert_int_equal(in.form, TH_FORM_ENVELOPE);
    assert_int_equal(in.nrecords, 1);
    assert_null(in.records[0].event);
    assert_string_equal(th_input_record_id(&in.records[0]), "e1");
    th_input_cleanup(&in);
}

/* Shapes whose meaning rests on jansson's details: duplicate keys (the last wins), escaped keys,
 * case, numbers, escapes, bad UTF-8, nesting, every input form. */
static const char *const tricky[] = {
    "{\"eventName\":\"GetObject\",\"eventName\":\"ModifyImageAttribute\"}",
    "{\"eventName\":\"ModifyImageAttribute\",\"eventName\":\"GetObject\"}",
    "{\"EventName\":\"GetObject\",\"eventName\":\"ModifyImageAttribute\"}",
    "{\"eventname\":\"GetObject\"}",
    "{\"eventName\":\"ModifyImageAttribute\",\"EventName\":\"GetObject\"}",
    "{\"event\\u004eame\":\"GetObject\",\"eventName\":\"ModifyImageAttribute\"}",
    "{\"eventName\":\"Get\\u004fbject\",\"eventID\":\"x\"}",
    "{\"eventName\":\"Modify\\u0049mageAttribute\"}",
    "{\"eventName\":\"\\u004dodify\"}",
    "{\"eventName\":\"GetObject\",\"eventID\":\"a\\\"b\"}",
    "{\"eventName\":\"GetObject\",\"eventID\":\"a\",\"eventid\":\"b\"}",
    "{\"eventName\":\"GetObject\",\"eventID\":null}",
    "{\"eventName\":\"GetObject\",\"eventID\":7}",
    "{\"eventName\":\"GetObject\",\"eventID\":\"a\\u0000b\"}",
    "{\"eventName\":null}",
    "{\"eventName\":5}",
    "{\"eventName\":\"GetObject\",\"n\":1e400}",
    "{\"eventName\":\"GetObject\",\"n\":1.5e3}",
    "{\"eventName\":\"GetObject\",\"n\":123456789012345678901234}",
    "{\"eventName\":\"GetObject\",\"n\":-0.25,\"m\":-0,\"k\":[true,false,null]}",
    "{\"eventName\":\"GetObject\",\"n\":01}",
    "{\"eventName\":\"GetObject\",\"s\":\"\\ud83d\\ude00\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\\ud83d\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\xc0\xaf\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\xed\xa0\x80\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\xf4\x90\x80\x80\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"\xe2\x82\"}",
    "{\"eventName\":\"GetObject\",\"s\":\"tab\there\"}",
    "{\"eventName\":\"GetObject\",}",
    "{\"eventName\":\"GetObject\" \"x\":1}",
    "{\"eventName\":\"GetObject\",\"a\":[1,]}",
    "{\"eventName\":\"GetObject\"}}",
    "{\"eventName\":\"GetObject\"",
    "{\"eventName\":\"GetObject\"} x",
    "\xef\xbb\xbf{\"eventName\":\"GetObject\"}",
    "  \n{\"eventName\":\"GetObject\"}\n{\"eventName\":\"ModifyImageAttribute\"}\n",
    "{\"eventName\":\"GetObject\"}{\"eventName\":\"PutObject\"}",
    "[]",
    "",
    "   ",
    "\"text\"",
    "42",
    "[{\"eventName\":\"GetObject\"},[{\"eventName\":\"PutObject\"}],3]",
    "[{\"eventName\":\"GetObject\"},{\"Records\":[{\"eventName\":\"PutObject\"}]}]",
    "{\"Records\":[{\"eventName\":\"GetObject\"}],\"Records\":[{\"eventName\":\"PutObject\"}]}",
    "{\"Records\":[{\"eventName\":\"GetObject\"}],\"Rec\\u006frds\":[]}",
    "{\"Records\":{\"eventName\":\"GetObject\"},\"eventName\":\"PutObject\"}",
    "{\"Records\":[1,\"x\",{\"eventName\":\"GetObject\"}]}",
    "{\"Records\":[{\"detail-type\":\"x\",\"detail\":{\"eventName\":\"GetObject\"}}]}",
    "{\"Records\":[{\"Records\":[{\"eventName\":\"GetObject\"}],\"eventName\":\"PutObject\"}]}",
    "{\"detail-type\":\"x\",\"detail\":{\"eventName\":\"GetObject\"},\"detail\":{}}",
    "{\"detail-type\":\"x\",\"detail\":[],\"eventName\":\"GetObject\"}",
    "{\"detail\":{\"eventName\":\"GetObject\"},\"eventName\":\"PutObject\"}",
    "{\"detail-type\":null,\"detail\":{\"eventName\":\"GetObject\"}}",
    "{\"detail-typ\\u0065\":1,\"detail\":{\"eventName\":\"GetObject\"}}",
    "{\"eventName\":\"GetObject\",\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
    "}",
    "{\"eventName\":\"GetObject\"}\n{\"eventName\":\"PutObject\",\"x\":tru}\n",
    "{\"eventName\":\"GetObject\",\"x\":nul",
};

static void tricky_texts_answer_as_jansson_does(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        assert_same_as_jansson(tricky[i]);
    }
}

/* A byte at a time: every prefix of a real record, valid or cut, answers the same way. */
static void every_prefix_answers_as_jansson_does(void **state)
{
    const char *text = "{\"Records\":[{\"eventVersion\":\"1.08\",\"eventName\":\"GetObject\","
                       "\"eventID\":\"id-1\",\"n\":-12.5,\"ok\":true,\"s\":\"caf\xc3\xa9 \\n\","
                       "\"a\":[1,{\"b\":null}]},{\"eventName\":\"PutObject\"}]}";
    char buf[512];
    char why[512];
    (void)state;
    for (size_t n = 0; n <= strlen(text); n++) {
        memcpy(buf, text, n);
        buf[n] = '\0';
        const char *diff = input_paths_differ(buf, n, limits, why, sizeof(why));
        if (diff != NULL) {
            fail_msg("%s\n  for prefix %zu: %s", diff, n, buf);
        }
    }
}

static void limits_answer_as_jansson_does(void **state)
{
    struct th_input_limits tight = {1 << 20, 2, 3, 16, NULL, NULL};
    const char *const texts[] = {
        "[{\"eventName\":\"A\"},{\"eventName\":\"B\"},{\"eventName\":\"C\"}]",
        "{\"eventName\":\"A\",\"x\":[[[1]]]}",
        "{\"eventName\":\"A\",\"x\":\"a string of more than sixteen bytes\"}",
        "{\"eventName\":\"A\",\"x\":\"fifteen bytes!\"}",
    };
    char why[512];
    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *diff = input_paths_differ(texts[i], strlen(texts[i]), tight, why, sizeof(why));
        if (diff != NULL) {
            fail_msg("%s\n  for: %s", diff, texts[i]);
        }
    }
}

static const char *both_paths_agree(const char *text, size_t len, char *why, size_t whylen)
{
    return input_paths_differ(text, len, limits, why, whylen);
}

static void every_corpus_file_answers_as_jansson_does(void **state)
{
    (void)state;
    assert_every_corpus_file(both_paths_agree);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unwanted_records_get_no_tree),
        cmocka_unit_test(envelopes_are_skipped_by_their_detail),
        cmocka_unit_test(tricky_texts_answer_as_jansson_does),
        cmocka_unit_test(every_prefix_answers_as_jansson_does),
        cmocka_unit_test(limits_answer_as_jansson_does),
        cmocka_unit_test(every_corpus_file_answers_as_jansson_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
