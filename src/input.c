/* SPDX-License-Identifier: MIT */
/*
 * input.c -- the body normaliser: gzip, then one or more JSON documents, then the records inside
 * envelopes, log files and arrays. Shared by POST /events and `trailhook eval`.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <zlib.h>

#include "input_int.h"
#include "trailhook/event.h"
#include "trailhook/input.h"
#include "trailhook/mem.h"

const char *th_input_form_name(enum th_input_form form)
{
    switch (form) {
    case TH_FORM_EMPTY:
        return "empty";
    case TH_FORM_RECORD:
        return "record";
    case TH_FORM_ENVELOPE:
        return "envelope";
    case TH_FORM_RECORDS:
        return "records";
    case TH_FORM_ARRAY:
        return "array";
    case TH_FORM_NDJSON:
        return "ndjson";
    }
    return "unknown";
}

enum th_err th_input_fail(struct th_input_error *err, enum th_err code, long line, long column,
                          long index, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    err->line = line;
    err->column = column;
    err->index = index;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

bool th_input_is_gzip(const char *data, size_t len)
{
    return len >= 2 && (unsigned char)data[0] == 0x1f && (unsigned char)data[1] == 0x8b;
}

/* Runs inflate over all of the input, growing *buf up to max_out; handles concatenated members. */
static enum th_err inflate_all(z_stream *zs, size_t max_out, char **buf, size_t *cap, size_t *n)
{
    for (;;) {
        if (*n == *cap) {
            if (*cap >= max_out) {
                return TH_ETOOBIG;
            }
            *cap = *cap * 2 > max_out ? max_out : *cap * 2;
            *buf = th_xrealloc(*buf, *cap + 1);
        }
        zs->next_out = (Bytef *)*buf + *n;
        zs->avail_out = (uInt)(*cap - *n);
        int rc = inflate(zs, Z_NO_FLUSH);
        *n = *cap - zs->avail_out;
        if (rc == Z_STREAM_END) {
            if (zs->avail_in == 0) {
                return TH_OK;
            }
            if (inflateReset(zs) != Z_OK) {
                return TH_EPARSE;
            }
        } else if (rc == Z_BUF_ERROR && zs->avail_in == 0) {
            return TH_EPARSE; /* truncated stream */
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
            return TH_EPARSE;
        }
    }
}

enum th_err th_input_inflate(const char *data, size_t len, size_t max_out, char **out,
                             size_t *outlen)
{
    z_stream zs;
    size_t cap = len * 4 < 65536 ? 65536 : len * 4;
    size_t n = 0;
    char *buf = NULL;
    enum th_err rc;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK) {
        return TH_ENOMEM;
    }
    if (cap > max_out) {
        cap = max_out;
    }
    buf = th_xmalloc(cap + 1);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    rc = len > UINT32_MAX ? TH_ETOOBIG : inflate_all(&zs, max_out, &buf, &cap, &n);
    inflateEnd(&zs);
    if (rc != TH_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return TH_OK;
}

/*
 * One pass over the text before jansson sees it: nesting deeper than max_depth would make
 * jansson recurse that deep, and a string longer than max_string_bytes would be copied whole.
 */
static enum th_err check_shape(const char *d, size_t len, size_t depth,
                               const struct th_input_limits *lim, struct th_input_error *err)
{
    size_t string_start = 0;
    long string_line = 1;
    long string_column = 1;
    long line = 1;
    size_t line_start = 0;
    bool in_string = false;
    size_t max_string = lim->max_string_bytes > 0 ? lim->max_string_bytes : SIZE_MAX;

    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (in_string) {
            if (i - string_start >= max_string) { /* the quotes count too */
                return th_input_fail(err, TH_ETOOBIG, string_line, string_column, -1,
                                     "JSON string longer than %zu bytes", max_string);
            }
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
            string_start = i;
            string_line = line;
            string_column = (long)(i - line_start) + 1;
        } else if (c == '{' || c == '[') {
            if (++depth > lim->max_depth) {
                return th_input_fail(err, TH_EPARSE, line, (long)(i - line_start) + 1, -1,
                                     "JSON nested deeper than %zu levels", lim->max_depth);
            }
        } else if (c == '}' || c == ']') {
            depth -= depth > 0;
        }
        if (c == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    return TH_OK;
}

void th_input_push_doc(struct th_input *in, json_t *doc)
{
    if (in->ndocs == in->cap_docs) {
        in->cap_docs = in->cap_docs == 0 ? 4 : in->cap_docs * 2;
        in->docs = th_xrealloc(in->docs, in->cap_docs * sizeof(*in->docs));
    }
    in->docs[in->ndocs++] = doc;
}

/*
 * One document. U+0000 is legal JSON, so it is allowed; an integer beyond 64 bits (which Python
 * reads fine) makes jansson fail, so such a document is read again with integers as reals.
 */
static json_t *load_one(const char *d, size_t len, size_t flags, json_error_t *je)
{
    flags |= JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL;
    json_t *doc = json_loadb(d, len, flags, je);
    if (doc == NULL && json_error_code(je) == json_error_numeric_overflow) {
        doc = json_loadb(d, len, flags | JSON_DECODE_INT_AS_REAL, je);
    }
    return doc;
}

/* Parses every whitespace-separated document; positions are reported for the whole text. */
static enum th_err parse_docs(struct th_input *in, const char *d, size_t len,
                              struct th_input_error *err)
{
    size_t pos = 0;
    long line = 1;
    size_t line_start = 0;

    if (len >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) {
        pos = 3; /* a UTF-8 byte order mark, as some editors save files */
    }
    for (;;) {
        while (pos < len && (d[pos] == ' ' || d[pos] == '\t' || d[pos] == '\r' || d[pos] == '\n')) {
            if (d[pos] == '\n') {
                line++;
                line_start = pos + 1;
            }
            pos++;
        }
        if (pos == len) {
            return TH_OK;
        }
        json_error_t je;
        json_t *doc = load_one(d + pos, len - pos, 0, &je);
        if (doc == NULL) {
            long col = je.line == 1 ? (long)(pos - line_start) + je.column : je.column;
            col = col < 1 ? 1 : col; /* at the end of the input jansson says column 0 */
            return th_input_fail(err, TH_EPARSE, line + je.line - 1, col, -1, "malformed JSON: %s",
                                 je.text);
        }
        th_input_push_doc(in, doc);
        for (size_t i = pos; i < pos + (size_t)je.position; i++) {
            if (d[i] == '\n') {
                line++;
                line_start = i + 1;
            }
        }
        pos += (size_t)je.position;
    }
}

static enum th_err push_record(struct th_input *in, json_t *event,
                               const struct th_input_limits *lim, struct th_input_error *err)
{
    if (in->nrecords >= lim->max_events) {
        return th_input_fail(err, TH_ETOOBIG, 0, 0, (long)in->nrecords, "more than %zu events",
                             lim->max_events);
    }
    if (in->nrecords == in->cap_records) {
        in->cap_records = in->cap_records == 0 ? 16 : in->cap_records * 2;
        in->records = th_xrealloc(in->records, in->cap_records * sizeof(*in->records));
    }
    in->records[in->nrecords].event = event;
    in->records[in->nrecords].cloudtrail = th_event_is_cloudtrail(event);
    in->records[in->nrecords].event_id = NULL;
    in->nrecords++;
    return TH_OK;
}

/* An EventBridge event: its CloudTrail record is `detail`. */
static json_t *envelope_detail(const json_t *v)
{
    json_t *detail = json_object_get(v, "detail");
    if (json_is_object(detail) && json_object_get(v, "detail-type") != NULL) {
        return detail;
    }
    return NULL;
}

static enum th_err push_leaf(struct th_input *in, json_t *v, const struct th_input_limits *lim,
                             struct th_input_error *err)
{
    json_t *detail = envelope_detail(v);
    return push_record(in, detail != NULL ? detail : v, lim, err);
}

/* Arrays may hold any other form; deeper arrays are kept as (non-CloudTrail) records. */
static enum th_err unwrap(struct th_input *in, json_t *v, int depth,
                          const struct th_input_limits *lim, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    json_t *item;
    size_t i;

    if (json_is_array(v) && depth < 2) {
        json_array_foreach(v, i, item)
        {
            rc = unwrap(in, item, depth + 1, lim, err);
            if (rc != TH_OK) {
                break;
            }
        }
        return rc;
    }
    json_t *records = json_object_get(v, "Records");
    if (json_is_array(records)) {
        json_array_foreach(records, i, item)
        {
            rc = push_leaf(in, item, lim, err);
            if (rc != TH_OK) {
                break;
            }
        }
        return rc;
    }
    return push_leaf(in, v, lim, err);
}

static enum th_input_form form_of(const struct th_input *in)
{
    if (in->ndocs == 0) {
        return TH_FORM_EMPTY;
    }
    if (in->ndocs > 1) {
        return TH_FORM_NDJSON;
    }
    const json_t *d = in->docs[0];
    if (json_is_array(d)) {
        return TH_FORM_ARRAY;
    }
    if (json_is_array(json_object_get(d, "Records"))) {
        return TH_FORM_RECORDS;
    }
    return envelope_detail(d) != NULL ? TH_FORM_ENVELOPE : TH_FORM_RECORD;
}

enum th_err th_input_parse_jansson(const char *d, size_t len, const struct th_input_limits *lim,
                                   struct th_input *out, struct th_input_error *err)
{
    enum th_err rc = check_shape(d, len, 0, lim, err);
    if (rc == TH_OK) {
        rc = parse_docs(out, d, len, err);
    }
    for (size_t i = 0; rc == TH_OK && i < out->ndocs; i++) {
        rc = unwrap(out, out->docs[i], 0, lim, err);
    }
    out->form = form_of(out);
    return rc;
}

enum th_err th_input_parse_item_jansson(const char *text, size_t len, size_t depth,
                                        const struct th_input_limits *lim, struct th_input *out,
                                        struct th_input_error *err, size_t *used)
{
    json_error_t je;
    json_t *item = load_one(text, len, JSON_DECODE_ANY, &je);
    if (item == NULL) {
        *used = (size_t)je.position;
        return th_input_fail(err, TH_EPARSE, je.line, je.column < 1 ? 1 : je.column, -1,
                             "malformed JSON: %s", je.text);
    }
    th_input_push_doc(out, item);
    *used = (size_t)je.position;
    enum th_err rc = check_shape(text, *used, depth, lim, err);
    return rc == TH_OK ? push_leaf(out, item, lim, err) : rc;
}

static enum th_err parse_text(const char *d, size_t len, const struct th_input_limits *lim,
                              struct th_input *out, struct th_input_error *err)
{
    if (th_input_scan(d, len, lim, out)) {
        return TH_OK;
    }
    th_input_cleanup(out); /* the scan was not sure: jansson decides, and words any error */
    return th_input_parse_jansson(d, len, lim, out, err);
}

enum th_err th_input_parse(const char *data, size_t len, const struct th_input_limits *limits,
                           struct th_input *out, struct th_input_error *err)
{
    char *inflated = NULL;
    size_t inflated_len = 0;
    enum th_err rc;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    err->index = -1;
    if (th_input_is_gzip(data, len)) {
        rc = th_input_inflate(data, len, limits->max_inflated_bytes, &inflated, &inflated_len);
        if (rc == TH_ETOOBIG) {
            return th_input_fail(err, rc, 0, 0, -1, "gzip body inflates to more than %zu bytes",
                                 limits->max_inflated_bytes);
        }
        if (rc != TH_OK) {
            return th_input_fail(err, TH_EPARSE, 0, 0, -1, "corrupt or truncated gzip data");
        }
        data = inflated;
        len = inflated_len;
    }
    rc = parse_text(data, len, limits, out, err);
    free(inflated);
    return rc;
}

const char *th_input_record_id(const struct th_input_record *rec)
{
    return rec->event != NULL ? th_event_id(rec->event) : rec->event_id;
}

void th_input_cleanup(struct th_input *in)
{
    for (size_t i = 0; i < in->ndocs; i++) {
        json_decref(in->docs[i]);
    }
    free(in->docs);
    free(in->records);
    free(in->ids);
    memset(in, 0, sizeof(*in));
}
