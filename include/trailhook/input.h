/* SPDX-License-Identifier: MIT */
/*
 * input.h -- turns a request body or file (DESIGN §2) into CloudTrail records: EventBridge
 * envelopes, single records, {"Records":[...]} log files, JSON arrays of any of these, NDJSON or
 * concatenated documents, optionally gzip-compressed. Errors say where: line and column of bad
 * JSON, or the index of a bad record. Any thread; no shared state.
 */
#ifndef TRAILHOOK_INPUT_H
#define TRAILHOOK_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "trailhook/err.h"

/** The outer shape of an input, for metrics and logs. */
enum th_input_form {
    TH_FORM_EMPTY = 0, /**< no document at all */
    TH_FORM_RECORD,    /**< one CloudTrail record */
    TH_FORM_ENVELOPE,  /**< one EventBridge event */
    TH_FORM_RECORDS,   /**< a CloudTrail log file {"Records":[...]} */
    TH_FORM_ARRAY,     /**< a JSON array */
    TH_FORM_NDJSON,    /**< several documents, one a line */
};

/** "record", "envelope", "records", "array", "ndjson", "empty". */
const char *th_input_form_name(enum th_input_form form);

struct th_input_limits {
    size_t max_inflated_bytes; /**< gzip input after inflation (0: no inflation allowed) */
    size_t max_events;         /**< records after unwrapping */
    size_t max_depth;          /**< JSON nesting */
    size_t max_string_bytes;   /**< longest JSON string (raw, escapes included); 0: no limit */
    /**
     * Which CloudTrail records need a tree: called with a record's eventName when the input scan
     * knows it exactly; false leaves the record without one (event NULL). NULL: every record
     * gets its tree. th_engine_wants_event() with the spec set is the service's choice.
     */
    bool (*wants_event)(const void *ctx, const char *name, size_t len);
    const void *wants_ctx;
};

struct th_input_error {
    enum th_err code; /**< TH_EPARSE, TH_ETOOBIG, TH_EUNSUPPORTED */
    long line;        /**< 1-based, 0 when not about a place in the text */
    long column;      /**< 1-based, 0 when unknown */
    long index;       /**< record index, -1 when not about a record */
    char message[256];
};

/** One record after unwrapping. */
struct th_input_record {
    /**
     * Borrowed from the input's documents; NULL for a CloudTrail record whose eventName
     * limits.wants_event refused (no rule can match it, so no tree was built).
     */
    json_t *event;
    bool cloudtrail;      /**< th_event_is_cloudtrail(event); true when event is NULL */
    const char *event_id; /**< when event is NULL: its eventID string, or NULL when it has none */
};

/** A parsed input; owns its documents. */
struct th_input {
    enum th_input_form form;
    json_t **docs;
    size_t ndocs;
    struct th_input_record *records;
    size_t nrecords;
    size_t cap_docs;
    size_t cap_records;
    char *ids; /**< the event_id strings of records without a tree, back to back */
    size_t ids_len;
    size_t ids_cap;
};

/** @return true when @p data starts with the gzip magic bytes. */
bool th_input_is_gzip(const char *data, size_t len);

/**
 * Inflates a gzip stream (several members allowed).
 * @param[out] out new buffer (free with free()), NUL-terminated; @param[out] outlen its length
 * @return TH_OK, TH_EPARSE (corrupt), TH_ETOOBIG (more than @p max_out bytes).
 */
enum th_err th_input_inflate(const char *data, size_t len, size_t max_out, char **out,
                             size_t *outlen);

/**
 * Parses @p data (inflating it first when it is gzip) into records.
 * Every document that is neither an array, a log file nor an envelope is a record; records that
 * are not CloudTrail are kept with cloudtrail = false, for the caller to reject or report.
 * @param[out] out filled on success; release with th_input_cleanup() in every case
 * @param[out] err where and what on failure
 * @return TH_OK, TH_EPARSE (bad JSON, empty input), TH_ETOOBIG (limits).
 */
enum th_err th_input_parse(const char *data, size_t len, const struct th_input_limits *limits,
                           struct th_input *out, struct th_input_error *err);

/** Records read one at a time from a file or stdin (input_stream.c). */
struct th_input_stream;

/**
 * Opens @p path ("-" is stdin), plain or gzip. Log files ({"Records":[...]}) are read a record
 * at a time, other documents whole, so memory follows the largest record or non-log document.
 * @param[out] errnum errno when the file cannot be opened (TH_EIO)
 */
enum th_err th_input_stream_open(const char *path, const struct th_input_limits *limits,
                                 struct th_input_stream **out, int *errnum);

/**
 * The next record, valid until the next call: TH_OK; TH_ENOTFOUND after the last; or an error
 * (TH_EPARSE, TH_ETOOBIG) placed in the whole text, after which the stream ends. An input with
 * no document at all is TH_EPARSE.
 */
enum th_err th_input_stream_next(struct th_input_stream *st, const struct th_input_record **rec,
                                 struct th_input_error *err);

void th_input_stream_close(struct th_input_stream *st);

/** The eventID of a record (th_event_id() of its tree, or the one kept without a tree). */
const char *th_input_record_id(const struct th_input_record *rec);

/** Releases the documents and records of @p in and zeroes it. */
void th_input_cleanup(struct th_input *in);

#endif
