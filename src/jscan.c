/* SPDX-License-Identifier: MIT */
/*
 * jscan.c -- a validating JSON cursor that builds nothing (see jscan.h). It accepts a subset of
 * what jansson accepts: every rejection is TH_JSCAN_UNSURE, never an error message, because
 * jansson words those.
 */
#include <stdint.h>
#include <string.h>

#include "trailhook/jscan.h"

/* jansson's own nesting limit (JSON_PARSER_MAX_DEPTH): deeper is never provably fine. */
#define JANSSON_MAX_DEPTH 2048
/* More digits than this may overflow a 64-bit integer, which jansson handles its own way. */
#define MAX_INT_DIGITS 18
/* A longer number might overflow a double; CloudTrail numbers are short. */
#define MAX_NUMBER_BYTES 300

/* Bytes that stand for themselves inside a string: printable ASCII but '"' and '\\'. */
static const unsigned char string_plain[256] = {
#define R8(v) v, v, v, v, v, v, v, v
    R8(0), R8(0), R8(0), R8(0),                             /* 0x00-0x1f: control characters */
    1,     1,     0,     1,     1,     1,     1,     1,     /* 0x20-0x27: '"' */
    R8(1), R8(1), R8(1), R8(1), R8(1), R8(1),               /* 0x28-0x57 */
    1,     1,     1,     1,     0,     1,     1,     1,     /* 0x58-0x5f: '\\' at 0x5c */
    R8(1), R8(1), R8(1), R8(1),                             /* 0x60-0x7f */
    R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), /* 0x80-0xbf */
    R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), R8(0), /* 0xc0-0xff */
#undef R8
};

static bool stop(struct th_jscan *s, enum th_jscan_status status)
{
    if (s->status == TH_JSCAN_OK) {
        s->status = status;
    }
    return false;
}

void th_jscan_init(struct th_jscan *s, const char *text, size_t len, size_t depth, size_t max_depth,
                   size_t max_string)
{
    s->base = text;
    s->p = text;
    s->end = text + len;
    s->depth = depth;
    s->max_depth = max_depth < JANSSON_MAX_DEPTH ? max_depth : JANSSON_MAX_DEPTH;
    s->max_string = max_string > 0 ? max_string : (size_t)-1;
    s->status = TH_JSCAN_OK;
}

size_t th_jscan_offset(const struct th_jscan *s)
{
    return (size_t)(s->p - s->base);
}

char th_jscan_peek(struct th_jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) {
        s->p++;
    }
    return s->p < s->end ? *s->p : '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* \uXXXX at p (after the backslash's 'u'): U+0000 and surrogate halves are left to jansson. */
static bool unicode_escape(struct th_jscan *s, const char *p)
{
    unsigned cp = 0;
    if (s->end - p < 4) {
        return stop(s, TH_JSCAN_MORE);
    }
    for (int i = 0; i < 4; i++) {
        int v = hex_value(p[i]);
        if (v < 0) {
            return stop(s, TH_JSCAN_UNSURE);
        }
        cp = cp << 4 | (unsigned)v;
    }
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    return true;
}

/* One escape at s->p (the backslash). */
static bool escape(struct th_jscan *s)
{
    if (s->end - s->p < 2) {
        return stop(s, TH_JSCAN_MORE);
    }
    switch (s->p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        s->p += 2;
        return true;
    case 'u':
        if (!unicode_escape(s, s->p + 2)) {
            return false;
        }
        s->p += 6;
        return true;
    default:
        return stop(s, TH_JSCAN_UNSURE);
    }
}

/* One UTF-8 sequence of two to four bytes at s->p, as jansson checks it: shortest form, no
 * surrogates, nothing above U+10FFFF. */
static bool utf8_sequence(struct th_jscan *s)
{
    const unsigned char *u = (const unsigned char *)s->p;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t n;

    if (u[0] >= 0xC2 && u[0] <= 0xDF) {
        n = 2;
    } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
        n = 3;
        lo = u[0] == 0xE0 ? 0xA0 : 0x80;
        hi = u[0] == 0xED ? 0x9F : 0xBF;
    } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
        n = 4;
        lo = u[0] == 0xF0 ? 0x90 : 0x80;
        hi = u[0] == 0xF4 ? 0x8F : 0xBF;
    } else {
        return stop(s, TH_JSCAN_UNSURE);
    }
    if ((size_t)(s->end - s->p) < n) {
        return stop(s, TH_JSCAN_MORE);
    }
    if (u[1] < lo || u[1] > hi) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    for (size_t i = 2; i < n; i++) {
        if (u[i] < 0x80 || u[i] > 0xBF) {
            return stop(s, TH_JSCAN_UNSURE);
        }
    }
    s->p += n;
    return true;
}

#define BYTES(b) (0x0101010101010101ULL * (b))

/* Does any of the 8 bytes in @p v need a look: a control character, '"', '\\' or non-ASCII?
 * (The usual word-at-a-time tests; exact as a yes/no.) */
static bool word_needs_look(uint64_t v)
{
    uint64_t below_space = (v - BYTES(0x20)) & ~v;
    uint64_t quote = v ^ BYTES('"');
    uint64_t backslash = v ^ BYTES('\\');
    quote = (quote - BYTES(1)) & ~quote;
    backslash = (backslash - BYTES(1)) & ~backslash;
    return ((below_space | quote | backslash | v) & BYTES(0x80)) != 0;
}

/* Steps over bytes that stand for themselves, eight at a time while it can. */
static void skip_plain(struct th_jscan *s)
{
    while (s->end - s->p >= 8) {
        uint64_t v;
        memcpy(&v, s->p, sizeof(v));
        if (word_needs_look(v)) {
            break;
        }
        s->p += 8;
    }
    while (s->p < s->end && string_plain[(unsigned char)*s->p]) {
        s->p++;
    }
}

/* A string at s->p (the opening quote); its raw bytes go to @p out. */
static bool scan_string(struct th_jscan *s, struct th_jscan_str *out)
{
    const char *open = s->p++;
    bool escaped = false;

    for (;;) {
        skip_plain(s);
        if (s->p == s->end) {
            return stop(s, TH_JSCAN_MORE);
        }
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            break;
        }
        if (c == '\\') {
            escaped = true;
            if (!escape(s)) {
                return false;
            }
        } else if (c < 0x20 || !utf8_sequence(s)) {
            return stop(s, TH_JSCAN_UNSURE);
        }
    }
    s->p++;
    if ((size_t)(s->p - open) >= s->max_string) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    out->kind = escaped ? TH_JSCAN_ESCAPED_STRING : TH_JSCAN_PLAIN_STRING;
    out->off = (size_t)(open + 1 - s->base);
    out->len = (size_t)(s->p - open - 2);
    return true;
}

static const char *digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
    }
    return p;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)? -- exponents and long integers are left to jansson. */
static bool scan_number(struct th_jscan *s)
{
    const char *start = s->p;
    const char *p = s->p + (*s->p == '-');
    const char *int_end = digits(p, s->end);
    bool fraction = false;

    if (int_end == p || (*p == '0' && int_end - p > 1)) {
        return stop(s, int_end == s->end ? TH_JSCAN_MORE : TH_JSCAN_UNSURE);
    }
    p = int_end;
    if (p < s->end && *p == '.') {
        const char *frac_end = digits(p + 1, s->end);
        if (frac_end == p + 1) {
            return stop(s, frac_end == s->end ? TH_JSCAN_MORE : TH_JSCAN_UNSURE);
        }
        fraction = true;
        p = frac_end;
    }
    if (p == s->end) {
        return stop(s, TH_JSCAN_MORE);
    }
    if (*p == 'e' || *p == 'E' || p - start > MAX_NUMBER_BYTES ||
        (!fraction && int_end - start - (*start == '-') > MAX_INT_DIGITS)) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    s->p = p;
    return true;
}

static bool scan_literal(struct th_jscan *s, const char *word, size_t n)
{
    size_t have = (size_t)(s->end - s->p);
    if (memcmp(s->p, word, have < n ? have : n) != 0) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    if (have < n) {
        return stop(s, TH_JSCAN_MORE);
    }
    s->p += n;
    return true;
}

bool th_jscan_enter(struct th_jscan *s, char open)
{
    if (th_jscan_peek(s) != open) {
        return stop(s, s->p == s->end ? TH_JSCAN_MORE : TH_JSCAN_UNSURE);
    }
    if (++s->depth > s->max_depth) {
        return stop(s, TH_JSCAN_UNSURE);
    }
    s->p++;
    return true;
}

/* Before a member or an item: the closing bracket ends the list, a comma separates. */
static bool next_in_list(struct th_jscan *s, bool *first, char close)
{
    char c = th_jscan_peek(s);
    if (s->status != TH_JSCAN_OK) {
        return false;
    }
    if (c == close) {
        s->p++;
        s->depth--;
        return false;
    }
    if (!*first) {
        if (c != ',') {
            return stop(s, s->p == s->end ? TH_JSCAN_MORE : TH_JSCAN_UNSURE);
        }
        s->p++;
        th_jscan_peek(s);
    }
    *first = false;
    return true;
}

bool th_jscan_next_member(struct th_jscan *s, bool *first, struct th_jscan_str *key)
{
    if (!next_in_list(s, first, '}')) {
        return false;
    }
    if (s->p == s->end) {
        return stop(s, TH_JSCAN_MORE);
    }
    if (*s->p != '"') {
        return stop(s, TH_JSCAN_UNSURE); /* also a trailing comma */
    }
    if (!scan_string(s, key)) {
        return false;
    }
    if (th_jscan_peek(s) != ':') {
        return stop(s, s->p == s->end ? TH_JSCAN_MORE : TH_JSCAN_UNSURE);
    }
    s->p++;
    return true;
}

bool th_jscan_next_item(struct th_jscan *s, bool *first)
{
    bool was_first = *first;
    if (!next_in_list(s, first, ']')) {
        return false;
    }
    if (!was_first && th_jscan_peek(s) == ']') {
        return stop(s, TH_JSCAN_UNSURE); /* a trailing comma */
    }
    return true;
}

static bool skip_object(struct th_jscan *s)
{
    bool first = true;
    struct th_jscan_str key;
    if (!th_jscan_enter(s, '{')) {
        return false;
    }
    while (th_jscan_next_member(s, &first, &key)) {
        if (!th_jscan_skip_value(s)) {
            return false;
        }
    }
    return s->status == TH_JSCAN_OK;
}

static bool skip_array(struct th_jscan *s)
{
    bool first = true;
    if (!th_jscan_enter(s, '[')) {
        return false;
    }
    while (th_jscan_next_item(s, &first)) {
        if (!th_jscan_skip_value(s)) {
            return false;
        }
    }
    return s->status == TH_JSCAN_OK;
}

bool th_jscan_value(struct th_jscan *s, struct th_jscan_str *out)
{
    char c = th_jscan_peek(s);
    out->kind = TH_JSCAN_OTHER;
    if (s->status != TH_JSCAN_OK) {
        return false;
    }
    switch (c) {
    case '"':
        return scan_string(s, out);
    case '{':
        return skip_object(s);
    case '[':
        return skip_array(s);
    case 't':
        return scan_literal(s, "true", 4);
    case 'f':
        return scan_literal(s, "false", 5);
    case 'n':
        out->kind = TH_JSCAN_NULL;
        return scan_literal(s, "null", 4);
    case '\0':
        if (s->p == s->end) {
            return stop(s, TH_JSCAN_MORE);
        }
        return stop(s, TH_JSCAN_UNSURE);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            return scan_number(s);
        }
        return stop(s, TH_JSCAN_UNSURE);
    }
}

bool th_jscan_skip_value(struct th_jscan *s)
{
    struct th_jscan_str ignored;
    return th_jscan_value(s, &ignored);
}
