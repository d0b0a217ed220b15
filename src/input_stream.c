/* SPDX-License-Identifier: MIT */
/*
 * input_stream.c -- records from a file or stdin one at a time, in memory bounded by the largest
 * record rather than the file: what `trailhook eval` reads CloudTrail log files with.
 *
 * zlib's gzread inflates gzip and passes plain text through, so both read the same way. A
 * document that opens as a log file, {"Records":[, is read item by item; any other document
 * (a record, an envelope, an array, each line of NDJSON) is read whole and handed to
 * th_input_parse(). The one difference from reading the whole text at once: a second "Records"
 * key after the first array (which jansson would let replace it) is refused, since the first
 * array's records are already out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "input_int.h"
#include "trailhook/input.h"
#include "trailhook/jscan.h"
#include "trailhook/mem.h"

#define READ_CHUNK (256u * 1024u)
/* A record, or a document that is not a log file, larger than this is refused. */
#define MAX_WINDOW ((size_t)1 << 30)
/* A log file's records sit inside {"Records":[ ... ]}: two levels down. */
#define ITEM_DEPTH 2

enum mode {
    AT_DOCUMENT, /* between documents */
    IN_ITEMS,    /* inside a log file's Records array */
    AFTER_ITEMS, /* after it, before the log file's closing brace */
    IN_RECORDS,  /* handing out the records of `cur` */
    AT_END,
};

struct th_input_stream {
    gzFile gz;
    const struct th_input_limits *lim;
    char *buf;
    size_t cap;
    size_t pos; /* the unread text is buf[pos, len) */
    size_t len;
    bool eof;
    long line; /* where buf[pos] is in the whole text, 1-based */
    long column;
    enum mode mode;
    enum mode after_records; /* where to go once `cur` is handed out */
    bool first_item;
    bool any_document;
    struct th_input cur; /* the records being handed out */
    size_t next;
};

/* Hands out the records of `cur`, then goes on at @p then. */
static void hand_out(struct th_input_stream *st, enum mode then)
{
    st->next = 0;
    st->mode = IN_RECORDS;
    st->after_records = then;
}

enum th_err th_input_stream_open(const char *path, const struct th_input_limits *lim,
                                 struct th_input_stream **out, int *errnum)
{
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? dup(STDIN_FILENO) : -1;
    gzFile gz = is_stdin ? (fd >= 0 ? gzdopen(fd, "rb") : NULL) : gzopen(path, "rb");
    if (gz == NULL) {
        *errnum = errno != 0 ? errno : ENOMEM;
        if (fd >= 0) {
            close(fd);
        }
        return TH_EIO;
    }
    gzbuffer(gz, READ_CHUNK);
    struct th_input_stream *st = th_xcalloc(1, sizeof(*st));
    st->gz = gz;
    st->lim = lim;
    st->cap = 2 * READ_CHUNK;
    st->buf = th_xmalloc(st->cap);
    st->line = 1;
    st->column = 1;
    st->mode = AT_DOCUMENT;
    *out = st;
    return TH_OK;
}

void th_input_stream_close(struct th_input_stream *st)
{
    if (st != NULL) {
        th_input_cleanup(&st->cur);
        gzclose(st->gz);
        free(st->buf);
        free(st);
    }
}

/* Reads more text behind the unread part; false at the end (or on a read error, in *rc). */
static bool refill(struct th_input_stream *st, enum th_err *rc, struct th_input_error *err)
{
    if (st->eof) {
        return false;
    }
    memmove(st->buf, st->buf + st->pos, st->len - st->pos);
    st->len -= st->pos;
    st->pos = 0;
    if (st->cap - st->len < READ_CHUNK) {
        if (st->cap >= MAX_WINDOW) {
            *rc = th_input_fail(err, TH_ETOOBIG, st->line, st->column, -1,
                                "a record or document larger than %zu bytes", MAX_WINDOW);
            return false;
        }
        st->cap *= 2;
        st->buf = th_xrealloc(st->buf, st->cap);
    }
    int n = gzread(st->gz, st->buf + st->len, (unsigned)(st->cap - st->len));
    if (n < 0) {
        int zerr = Z_OK;
        const char *why = gzerror(st->gz, &zerr);
        *rc = zerr == Z_ERRNO
                  ? th_input_fail(err, TH_EIO, 0, 0, -1, "cannot read: %s", strerror(errno))
                  : th_input_fail(err, TH_EPARSE, 0, 0, -1, "corrupt or truncated gzip data (%s)",
                                  why != NULL ? why : "zlib");
        return false;
    }
    st->len += (size_t)n;
    st->eof = n == 0;
    if (st->eof) {
        /* A gzip stream cut short ends like any file; zlib only tells when asked. */
        int zerr = Z_OK;
        gzerror(st->gz, &zerr);
        if (zerr != Z_OK) {
            *rc = th_input_fail(err, TH_EPARSE, 0, 0, -1, "corrupt or truncated gzip data");
            return false;
        }
    }
    return n > 0;
}

/* Where buf[pos + off] is in the whole text: memchr, as log files are one long line. */
static void position_of(const struct th_input_stream *st, size_t off, long *line, long *column)
{
    const char *p = st->buf + st->pos;
    const char *end = p + (off < st->len - st->pos ? off : st->len - st->pos);
    const char *last_newline = NULL;
    *line = st->line;
    for (const char *q = memchr(p, '\n', (size_t)(end - p)); q != NULL;
         q = memchr(q + 1, '\n', (size_t)(end - q - 1))) {
        ++*line;
        last_newline = q;
    }
    *column = last_newline != NULL ? (long)(end - last_newline) : st->column + (long)(end - p);
}

static void consume(struct th_input_stream *st, size_t n)
{
    position_of(st, n, &st->line, &st->column);
    st->pos += n;
}

/* An error whose place @p err gives from buf[pos], moved to its place in the whole text. */
static enum th_err place_error(const struct th_input_stream *st, struct th_input_error *err)
{
    if (err->line > 0) {
        err->column = err->line == 1 ? st->column + err->column - 1 : err->column;
        err->line = st->line + err->line - 1;
    }
    return err->code;
}

/* Skips whitespace, reading on; @return the next byte, or 0 at the end of the text. */
static char peek(struct th_input_stream *st, enum th_err *rc, struct th_input_error *err)
{
    for (;;) {
        size_t n = 0;
        for (char c; st->pos + n < st->len &&
                     ((c = st->buf[st->pos + n]) == ' ' || c == '\n' || c == '\r' || c == '\t');) {
            n++;
        }
        consume(st, n);
        if (st->pos < st->len) {
            return st->buf[st->pos];
        }
        if (!refill(st, rc, err)) {
            return '\0';
        }
    }
}

/* Does the text at pos open a log file, {"Records":[ ? Steps over that when it does. */
static bool opens_log_file(struct th_input_stream *st, enum th_err *rc, struct th_input_error *err)
{
    for (;;) {
        struct th_jscan cur;
        struct th_jscan_str key;
        bool first = true;
        th_jscan_init(&cur, st->buf + st->pos, st->len - st->pos, 0, st->lim->max_depth,
                      st->lim->max_string_bytes);
        bool opens = th_jscan_enter(&cur, '{') && th_jscan_next_member(&cur, &first, &key) &&
                     th_jscan_str_is(&cur, &key, "Records") && th_jscan_enter(&cur, '[');
        if (opens) {
            consume(st, th_jscan_offset(&cur));
            return true;
        }
        if (cur.status != TH_JSCAN_MORE || !refill(st, rc, err)) {
            return false;
        }
    }
}

/* The rest of the input in one piece, for a document the scan cannot find the end of. */
static enum th_err read_rest(struct th_input_stream *st, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    while (refill(st, &rc, err)) {
    }
    return rc;
}

/* A whole document that is not a log file: its end found by the scan, its records by
 * th_input_parse(). */
static enum th_err read_document(struct th_input_stream *st, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    size_t doc_len;
    for (;;) {
        struct th_jscan cur;
        th_jscan_init(&cur, st->buf + st->pos, st->len - st->pos, 0, st->lim->max_depth,
                      st->lim->max_string_bytes);
        if (th_jscan_skip_value(&cur)) {
            doc_len = th_jscan_offset(&cur);
            break;
        }
        if (cur.status == TH_JSCAN_MORE && refill(st, &rc, err)) {
            continue;
        }
        if (rc != TH_OK || (rc = read_rest(st, err)) != TH_OK) {
            return rc;
        }
        doc_len = st->len - st->pos; /* jansson reads all that is left, and words any error */
        break;
    }
    th_input_cleanup(&st->cur);
    rc = th_input_parse(st->buf + st->pos, doc_len, st->lim, &st->cur, err);
    if (rc != TH_OK) {
        return place_error(st, err);
    }
    consume(st, doc_len);
    hand_out(st, AT_DOCUMENT);
    return TH_OK;
}

static enum th_err at_document(struct th_input_stream *st, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    if (!st->any_document && st->pos == 0 && st->len == 0 && refill(st, &rc, err) && st->len >= 3 &&
        memcmp(st->buf, "\xEF\xBB\xBF", 3) == 0) {
        st->pos = 3; /* a UTF-8 byte order mark */
    }
    char c = peek(st, &rc, err);
    if (rc != TH_OK) {
        return rc;
    }
    if (st->pos == st->len) {
        st->mode = AT_END;
        return st->any_document
                   ? TH_OK
                   : th_input_fail(err, TH_EPARSE, 0, 0, -1, "no JSON document in the input");
    }
    st->any_document = true;
    if (c == '{' && opens_log_file(st, &rc, err)) {
        st->mode = IN_ITEMS;
        st->first_item = true;
        return TH_OK;
    }
    return rc != TH_OK ? rc : read_document(st, err);
}

/* One item by jansson, reading on while the text ends inside it. */
static enum th_err item_by_jansson(struct th_input_stream *st, struct th_input_error *err)
{
    for (;;) {
        size_t used = 0;
        enum th_err rc = TH_OK;
        th_input_cleanup(&st->cur);
        enum th_err prc = th_input_parse_item_jansson(st->buf + st->pos, st->len - st->pos,
                                                      ITEM_DEPTH, st->lim, &st->cur, err, &used);
        if (prc == TH_OK) {
            consume(st, used);
            return TH_OK;
        }
        bool cut = used >= st->len - st->pos;
        if (!cut || !refill(st, &rc, err)) {
            return rc != TH_OK ? rc : place_error(st, err);
        }
    }
}

static enum th_err in_items(struct th_input_stream *st, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    char c = peek(st, &rc, err);
    if (rc == TH_OK && st->pos == st->len) {
        return th_input_fail(err, TH_EPARSE, st->line, st->column, -1,
                             "malformed JSON: the log file ends early");
    }
    if (rc == TH_OK && c == ']') {
        consume(st, 1); /* a trailing comma never gets here: the item after it is bad JSON */
        st->mode = AFTER_ITEMS;
        return TH_OK;
    }
    if (rc == TH_OK && !st->first_item) {
        if (c != ',') {
            return th_input_fail(err, TH_EPARSE, st->line, st->column, -1,
                                 "malformed JSON: ',' or ']' expected between records");
        }
        consume(st, 1);
        peek(st, &rc, err);
    }
    if (rc != TH_OK) {
        return rc;
    }
    st->first_item = false;
    for (;;) {
        size_t used = 0;
        th_input_cleanup(&st->cur);
        enum th_jscan_status s = th_input_scan_item(st->buf + st->pos, st->len - st->pos,
                                                    ITEM_DEPTH, st->lim, &st->cur, &used);
        if (s == TH_JSCAN_OK) {
            consume(st, used);
            break;
        }
        if (s == TH_JSCAN_UNSURE || !refill(st, &rc, err)) {
            if (rc != TH_OK || (rc = item_by_jansson(st, err)) != TH_OK) {
                return rc;
            }
            break;
        }
    }
    hand_out(st, IN_ITEMS);
    return TH_OK;
}

/* The log file's other members, then its closing brace. */
static enum th_err after_items(struct th_input_stream *st, struct th_input_error *err)
{
    enum th_err rc = TH_OK;
    long line;
    long column;
    for (;;) {
        struct th_jscan cur;
        struct th_jscan_str key;
        bool first = false;
        th_jscan_init(&cur, st->buf + st->pos, st->len - st->pos, 1, st->lim->max_depth,
                      st->lim->max_string_bytes);
        while (th_jscan_next_member(&cur, &first, &key)) {
            if (th_jscan_str_is(&cur, &key, "Records")) {
                position_of(st, key.off, &line, &column);
                return th_input_fail(err, TH_EPARSE, line, column - 1, -1,
                                     "a second \"Records\" array in one log file");
            }
            th_jscan_skip_value(&cur);
        }
        if (cur.status == TH_JSCAN_OK) {
            consume(st, th_jscan_offset(&cur));
            st->mode = AT_DOCUMENT;
            return TH_OK;
        }
        if (cur.status == TH_JSCAN_MORE && refill(st, &rc, err)) {
            continue;
        }
        if (rc != TH_OK) {
            return rc;
        }
        position_of(st, th_jscan_offset(&cur), &line, &column);
        return th_input_fail(err, TH_EPARSE, line, column, -1,
                             cur.status == TH_JSCAN_MORE
                                 ? "malformed JSON: the log file ends early"
                                 : "malformed JSON after the Records array");
    }
}

enum th_err th_input_stream_next(struct th_input_stream *st, const struct th_input_record **rec,
                                 struct th_input_error *err)
{
    memset(err, 0, sizeof(*err));
    err->index = -1;
    for (;;) {
        enum th_err rc = TH_OK;
        switch (st->mode) {
        case IN_RECORDS:
            if (st->next < st->cur.nrecords) {
                *rec = &st->cur.records[st->next++];
                return TH_OK;
            }
            st->mode = st->after_records;
            break;
        case AT_DOCUMENT:
            rc = at_document(st, err);
            break;
        case IN_ITEMS:
            rc = in_items(st, err);
            break;
        case AFTER_ITEMS:
            rc = after_items(st, err);
            break;
        case AT_END:
            return TH_ENOTFOUND;
        }
        if (rc != TH_OK) {
            st->mode = AT_END;
            return rc;
        }
    }
}
