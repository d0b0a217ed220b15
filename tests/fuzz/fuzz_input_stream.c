/* SPDX-License-Identifier: MIT */
/*
 * fuzz_input_stream.c -- files read a record at a time (what `trailhook eval` uses): no crash,
 * and for plain text the records streamed are those th_input_parse() finds in the whole text.
 */
#include <stdlib.h>
#include <unistd.h>

#include "../input_compare.h"
#include "fuzz.h"
#include "trailhook/input.h"

/* Streams the file at @p path; aborts when a record differs from the whole-text parse. */
static void stream_and_compare(const char *path, const char *text, size_t size,
                               const struct th_input_limits *lim, bool compare)
{
    struct th_input whole;
    struct th_input_error werr, serr;
    struct th_input_stream *st = NULL;
    const struct th_input_record *rec;
    int errnum = 0;
    size_t n = 0;
    enum th_err rc;

    enum th_err wrc = th_input_parse(text, size, lim, &whole, &werr);
    compare = compare && wrc == TH_OK && whole.form != TH_FORM_EMPTY;
    if (th_input_stream_open(path, lim, &st, &errnum) != TH_OK) {
        abort();
    }
    while ((rc = th_input_stream_next(st, &rec, &serr)) == TH_OK) {
        if (compare && (n >= whole.nrecords || !same_record(rec, &whole.records[n]))) {
            abort();
        }
        n++;
    }
    /* A text that parses whole streams whole; a second Records array is the one exception. */
    if (compare && rc != TH_ENOTFOUND && strstr(serr.message, "second \"Records\"") == NULL) {
        abort();
    }
    if (compare && rc == TH_ENOTFOUND && n != whole.nrecords) {
        abort();
    }
    th_input_stream_close(st);
    th_input_cleanup(&whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct th_input_limits lim = {1 << 20, SIZE_MAX, 64, 0, compare_wants, NULL};
    char path[] = "/tmp/th-fuzz-stream-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    close(fd);
    stream_and_compare(path, (const char *)data, size, &lim,
                       !th_input_is_gzip((const char *)data, size));
    unlink(path);
    return 0;
}
