/* SPDX-License-Identifier: MIT */
/* corpus_walk.h -- a check run over the JSON text of every file of the real-event corpus (for
 * cmocka tests: include after cmocka.h). */
#ifndef TRAILHOOK_CORPUS_WALK_H
#define TRAILHOOK_CORPUS_WALK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "input_compare.h"

/* NULL when @p text passes, else what is wrong, written into @p why. */
typedef const char *(*corpus_check)(const char *text, size_t len, char *why, size_t whylen);

static corpus_check corpus_walk_check;
static size_t corpus_walk_files;
static char corpus_walk_failure[1024];

static int corpus_walk_visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    char why[512];
    char *data;
    char *text;
    size_t len;
    (void)ftw;
    if (type != FTW_F) {
        return 0;
    }
    corpus_text(path, (size_t)sb->st_size, &data, &text, &len);
    const char *diff = corpus_walk_check(text, len, why, sizeof(why));
    if (diff != NULL) {
        snprintf(corpus_walk_failure, sizeof(corpus_walk_failure), "%s: %s", path, diff);
    }
    if (text != data) {
        free(text);
    }
    free(data);
    corpus_walk_files++;
    return diff != NULL;
}

/* Runs @p check over every corpus file; fails the cmocka test at the first failure. */
static void assert_every_corpus_file(corpus_check check)
{
    corpus_walk_check = check;
    corpus_walk_files = 0;
    corpus_walk_failure[0] = '\0';
    if (nftw(TH_FIXTURES "/corpus/events", corpus_walk_visit, 16, FTW_PHYS) != 0) {
        fail_msg("%s",
                 corpus_walk_failure[0] != '\0' ? corpus_walk_failure : "cannot walk the corpus");
    }
    assert_true(corpus_walk_files > 100);
}

#endif
