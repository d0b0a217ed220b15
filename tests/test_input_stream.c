/* SPDX-License-Identifier: MIT */
/*
 * test_input_stream.c -- records read a piece at a time (input_stream.c, what `trailhook eval`
 * uses) are the records th_input_parse() finds in the whole text: for every corpus file, plain
 * and gzip, for a log file many read buffers long, and for the shapes that are not log files.
 * Errors are placed in the whole text.
 */
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "corpus_walk.h"
#include "input_compare.h"
#include "trailhook/input.h"

static const struct th_input_limits limits = {0, SIZE_MAX, 64, 0, compare_wants, NULL};

static void write_file(const char *path, const char *text, size_t len, bool gzip)
{
    if (gzip) {
        gzFile gz = gzopen(path, "wb");
        assert_non_null(gz);
        assert_int_equal(gzwrite(gz, text, (unsigned)len), (int)len);
        gzclose(gz);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        fclose(f);
    }
}

/* NULL when streaming @p text gives what parsing it whole gives, else what differs. */
static const char *stream_differs(const char *text, size_t len, bool gzip, char *why, size_t whylen)
{
    char path[] = "/tmp/th-stream-XXXXXX";
    int fd = mkstemp(path);
    struct th_input whole;
    struct th_input_error werr, serr;
    struct th_input_stream *st = NULL;
    const struct th_input_record *rec;
    const char *diff = NULL;
    int errnum = 0;
    size_t n = 0;
    enum th_err rc;

    assert_true(fd >= 0);
    close(fd);
    write_file(path, text, len, gzip);
    enum th_err wrc = th_input_parse(text, len, &limits, &whole, &werr);
    if (wrc == TH_OK && whole.form == TH_FORM_EMPTY) {
        wrc = TH_EPARSE;
    }
    assert_int_equal(th_input_stream_open(path, &limits, &st, &errnum), TH_OK);
    while (diff == NULL && (rc = th_input_stream_next(st, &rec, &serr)) == TH_OK) {
        const struct th_input_record *w = n < whole.nrecords ? &whole.records[n] : NULL;
        /* Before an error, the stream hands out the records it has read; whole, there are none. */
        if (wrc == TH_OK && (w == NULL || !same_record(rec, w))) {
            snprintf(why, whylen, "record %zu differs", n);
            diff = why;
        }
        n++;
    }
    if (diff == NULL && (wrc == TH_OK) != (rc == TH_ENOTFOUND)) {
        snprintf(why, whylen, "whole: %d (%.100s), streamed: %d (%.100s)", wrc, werr.message, rc,
                 serr.message);
        diff = why;
    } else if (diff == NULL && wrc == TH_OK && n != whole.nrecords) {
        snprintf(why, whylen, "%zu records streamed, %zu whole", n, whole.nrecords);
        diff = why;
    } else if (diff == NULL && wrc != TH_OK && werr.line != serr.line) {
        snprintf(why, whylen, "error on line %ld whole, %ld streamed", werr.line, serr.line);
        diff = why;
    }
    th_input_stream_close(st);
    th_input_cleanup(&whole);
    unlink(path);
    return diff;
}

static void assert_streams_as_whole(const char *text, size_t len)
{
    char why[512];
    for (int gzip = 0; gzip <= 1; gzip++) {
        const char *diff = stream_differs(text, len, gzip, why, sizeof(why));
        if (diff != NULL) {
            fail_msg("%s%s\n  for: %.300s", diff, gzip ? " (gzip)" : "", text);
        }
    }
}

static const char *const shapes[] = {
    "{\"Records\":[]}",
    "{\"Records\":[{\"eventName\":\"GetObject\",\"eventID\":\"a\"},"
    "{\"eventName\":\"ModifyImageAttribute\",\"eventID\":\"b\"}]}",
    "\xef\xbb\xbf { \"Records\" : [ {\"eventName\":\"GetObject\"} , {\"eventName\":\"X\"} ] } ",
    "{\"Records\":[{\"eventName\":\"GetObject\"}],\"digest\":{\"a\":[1,2]}}",
    "{\"Records\":[{\"detail-type\":\"x\",\"detail\":{\"eventName\":\"GetObject\"}},[1],2,\"s\"]}",
    "{\"Records\":[{\"eventName\":\"GetObject\",\"n\":1e5},{\"eventName\":\"Put\\u004fbject\"}]}",
    "{\"Records\":[{\"eventName\":\"GetObject\"}]}\n{\"Records\":[{\"eventName\":\"PutObject\"}]}",
    "{\"eventName\":\"GetObject\"}\n{\"eventName\":\"ModifyImageAttribute\"}\n",
    "[{\"eventName\":\"GetObject\"},{\"Records\":[{\"eventName\":\"PutObject\"}]}]",
    "{\"version\":\"0\",\"detail-type\":\"d\",\"detail\":{\"eventName\":\"GetObject\"}}",
    "{\"other\":1,\"Records\":[{\"eventName\":\"GetObject\"}]}",
    "",
    "  \n ",
    "{\"Records\":[{\"eventName\":\"GetObject\"},\n{\"eventName\":tru}]}",
    "{\"Records\":[{\"eventName\":\"GetObject\"}\n{\"eventName\":\"PutObject\"}]}",
    "{\"Records\":[{\"eventName\":\"GetObject\"},]}",
    "{\"Records\":[{\"eventName\":\"GetObject\"}",
    "{\"Records\":[{\"eventName\":\"GetObject\"}]",
    "not json",
};

static void shapes_stream_as_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        assert_streams_as_whole(shapes[i], strlen(shapes[i]));
    }
}

static void a_second_records_array_is_refused(void **state)
{
    const char *text = "{\"Records\":[{\"eventName\":\"GetObject\"}],\n \"Records\":[]}";
    char path[] = "/tmp/th-stream-XXXXXX";
    int fd = mkstemp(path);
    struct th_input_stream *st = NULL;
    const struct th_input_record *rec;
    struct th_input_error err;
    int errnum = 0;
    (void)state;
    close(fd);
    write_file(path, text, strlen(text), false);
    assert_int_equal(th_input_stream_open(path, &limits, &st, &errnum), TH_OK);
    assert_int_equal(th_input_stream_next(st, &rec, &err), TH_OK);
    assert_int_equal(th_input_stream_next(st, &rec, &err), TH_EPARSE);
    assert_non_null(strstr(err.message, "second \"Records\""));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 2);
    th_input_stream_close(st);
    unlink(path);
}

/* Many read buffers long, with records cut at every buffer edge. */
static void a_large_log_file_streams_as_whole(void **state)
{
    const char *rec = "{\"eventVersion\":\"1.08\",\"eventName\":\"GetObject\",\"eventID\":\"id\","
                      "\"requestParameters\":{\"bucketName\":\"b\",\"key\":\"k\\n\"}},"
                      "{\"eventName\":\"ModifyImageAttribute\",\"n\":[1.5,-2]},";
    size_t reclen = strlen(rec);
    size_t count = (3u << 20) / reclen;
    char *text = malloc(count * reclen + 32);
    size_t len = 0;
    (void)state;
    len += (size_t)sprintf(text, "{\"Records\":[");
    for (size_t i = 0; i < count; i++) {
        memcpy(text + len, rec, reclen);
        len += reclen;
    }
    len += (size_t)sprintf(text + len - 1, "]}") - 1;
    assert_streams_as_whole(text, len);
    free(text);
}

static const char *streams_as_whole(const char *text, size_t len, char *why, size_t whylen)
{
    const char *diff = stream_differs(text, len, false, why, whylen);
    return diff != NULL ? diff : stream_differs(text, len, true, why, whylen);
}

static void every_corpus_file_streams_as_whole(void **state)
{
    (void)state;
    assert_every_corpus_file(streams_as_whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shapes_stream_as_whole),
        cmocka_unit_test(a_second_records_array_is_refused),
        cmocka_unit_test(a_large_log_file_streams_as_whole),
        cmocka_unit_test(every_corpus_file_streams_as_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
