/* SPDX-License-Identifier: MIT */
/* input_int.h -- what input.c and its fast path (input_scan.c) share. */
#ifndef TRAILHOOK_INPUT_INT_H
#define TRAILHOOK_INPUT_INT_H

#include "trailhook/input.h"
#include "trailhook/jscan.h"

/** Fills @p err (its message from @p fmt) and returns @p code. */
enum th_err th_input_fail(struct th_input_error *err, enum th_err code, long line, long column,
                          long index, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/** Takes ownership of @p doc (released by th_input_cleanup). */
void th_input_push_doc(struct th_input *in, json_t *doc);

/**
 * The fast path of one text (already inflated): fills @p out as the jansson path would and
 * returns true, or returns false when it cannot be sure (@p out then needs th_input_cleanup).
 */
bool th_input_scan(const char *text, size_t len, const struct th_input_limits *lim,
                   struct th_input *out);

/** The slow path: every document through jansson, every record with its tree. */
enum th_err th_input_parse_jansson(const char *text, size_t len, const struct th_input_limits *lim,
                                   struct th_input *out, struct th_input_error *err);

/**
 * One item of a log file's Records (a record or an envelope, nested @p depth deep) at the start
 * of @p text, by the fast path: TH_JSCAN_OK adds its record to @p out and says how many bytes
 * it took in @p used; TH_JSCAN_MORE: the text ends inside it; TH_JSCAN_UNSURE: ask jansson.
 */
enum th_jscan_status th_input_scan_item(const char *text, size_t len, size_t depth,
                                        const struct th_input_limits *lim, struct th_input *out,
                                        size_t *used);

/** The same by jansson; positions in @p err are from the start of @p text. */
enum th_err th_input_parse_item_jansson(const char *text, size_t len, size_t depth,
                                        const struct th_input_limits *lim, struct th_input *out,
                                        struct th_input_error *err, size_t *used);

#endif
