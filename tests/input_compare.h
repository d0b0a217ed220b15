/* SPDX-License-Identifier: MIT */
/*
 * input_compare.h -- the fast path of th_input_parse() (input_scan.c) held to the jansson path:
 * the same answer, the same records, and a record left without a tree only when its eventName
 * is one the filter does not want. Shared by test_input_scan and fuzz_input.
 */
#ifndef TRAILHOOK_INPUT_COMPARE_H
#define TRAILHOOK_INPUT_COMPARE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/input_int.h"
#include "trailhook/event.h"

/* The filter the comparisons use: names starting with 'M' (ModifyImageAttribute among them). */
static inline bool compare_wants(const void *ctx, const char *name, size_t len)
{
    (void)ctx;
    return len > 0 && name[0] == 'M';
}

static inline bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A record without a tree must be one whose tree would show an unwanted eventName. */
static inline bool same_record(const struct th_input_record *a, const struct th_input_record *b)
{
    if (a->event == NULL && b->event != NULL) {
        return same_record(b, a);
    }
    bool same =
        a->cloudtrail == b->cloudtrail && same_str(th_input_record_id(a), th_input_record_id(b));
    if (b->event == NULL) {
        return same;
    }
    if (a->event != NULL) {
        return same && json_equal(a->event, b->event);
    }
    const char *name = th_event_get_string(b->event, "eventName");
    return same && name != NULL && !compare_wants(NULL, name, strlen(name));
}

static inline const char *compare_records(const struct th_input *fast, const struct th_input *slow,
                                          char *why, size_t whylen)
{
    if (fast->form != slow->form || fast->nrecords != slow->nrecords) {
        snprintf(why, whylen, "form %d/%d, records %zu/%zu", fast->form, slow->form, fast->nrecords,
                 slow->nrecords);
        return why;
    }
    for (size_t i = 0; i < fast->nrecords; i++) {
        const struct th_input_record *f = &fast->records[i];
        if (!same_record(f, &slow->records[i])) {
            snprintf(why, whylen, "record %zu differs (tree: %s)", i, f->event ? "yes" : "no");
            return why;
        }
    }
    return NULL;
}

/*
 * A corpus file's JSON text, inflated when it is gzip that inflates. @p data gets what to free()
 * afterwards (twice when *text differs from it).
 */
static inline void corpus_text(const char *path, size_t size, char **data, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    *data = malloc(size + 1);
    *len = f != NULL ? fread(*data, 1, size, f) : 0;
    if (f != NULL) {
        fclose(f);
    }
    *text = *data;
    if (th_input_is_gzip(*data, *len)) {
        size_t n = *len;
        if (th_input_inflate(*data, n, (size_t)1 << 28, text, len) != TH_OK) {
            *text = *data;
            *len = n;
        }
    }
}

/* NULL when both paths agree on @p text (not gzip), else what differs, written into @p why. */
static inline const char *input_paths_differ(const char *text, size_t len,
                                             struct th_input_limits lim, char *why, size_t whylen)
{
    struct th_input fast, slow;
    struct th_input_error ef, es;
    const char *diff = NULL;

    lim.wants_event = compare_wants;
    enum th_err rf = th_input_parse(text, len, &lim, &fast, &ef);
    memset(&slow, 0, sizeof(slow));
    memset(&es, 0, sizeof(es));
    es.index = -1;
    enum th_err rs = th_input_parse_jansson(text, len, &lim, &slow, &es);
    if (rf != rs) {
        snprintf(why, whylen, "answers %d/%d", rf, rs);
        diff = why;
    } else if (rf != TH_OK) {
        bool same = strcmp(ef.message, es.message) == 0 && ef.line == es.line &&
                    ef.column == es.column && ef.index == es.index;
        if (!same) {
            snprintf(why, whylen, "errors \"%.100s\" %ld:%ld #%ld / \"%.100s\" %ld:%ld #%ld",
                     ef.message, ef.line, ef.column, ef.index, es.message, es.line, es.column,
                     es.index);
            diff = why;
        }
    } else {
        diff = compare_records(&fast, &slow, why, whylen);
    }
    th_input_cleanup(&fast);
    th_input_cleanup(&slow);
    return diff;
}

#endif
