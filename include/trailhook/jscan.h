/* SPDX-License-Identifier: MIT */
/*
 * jscan.h -- a JSON cursor that validates without building anything: the fast path that lets
 * input.c skip jansson for records no rule cares about. It is sound, not complete: when it says
 * a text is well-formed, jansson (with JSON_ALLOW_NUL) accepts it too; anything it is not sure
 * of -- bad JSON, but also exponents, 19-digit integers, \u0000, surrogate escapes, limits --
 * stops it with TH_JSCAN_UNSURE, and the caller hands the text to jansson, which decides and
 * words the error. Running out of text is TH_JSCAN_MORE, so a streaming reader can refill.
 * Any thread; the cursor is the only state.
 */
#ifndef TRAILHOOK_JSCAN_H
#define TRAILHOOK_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum th_jscan_status {
    TH_JSCAN_OK = 0,
    TH_JSCAN_MORE,   /**< the text ended inside a value */
    TH_JSCAN_UNSURE, /**< not provably acceptable to jansson: let jansson decide */
};

/** What a scanned string was. */
enum th_jscan_kind {
    TH_JSCAN_ABSENT = 0,
    TH_JSCAN_PLAIN_STRING,   /**< a string without escapes: its bytes are its value */
    TH_JSCAN_ESCAPED_STRING, /**< a string with escapes: its value needs decoding */
    TH_JSCAN_NULL,
    TH_JSCAN_OTHER, /**< a number, a boolean, an object or an array */
};

/** A string's raw bytes between the quotes, as offsets from the cursor's base. */
struct th_jscan_str {
    enum th_jscan_kind kind;
    size_t off;
    size_t len;
};

struct th_jscan {
    const char *base; /**< offsets are from here */
    const char *p;    /**< the next byte to read */
    const char *end;
    size_t depth;      /**< open objects and arrays, counting those outside the text */
    size_t max_depth;  /**< deeper nesting is TH_JSCAN_UNSURE */
    size_t max_string; /**< a string this long (quotes included) or longer is TH_JSCAN_UNSURE */
    enum th_jscan_status status; /**< sticky: once not OK, every call returns false */
};

/** Starts a cursor over [text, text + len) with @p depth levels already open outside it. */
void th_jscan_init(struct th_jscan *s, const char *text, size_t len, size_t depth, size_t max_depth,
                   size_t max_string);

/** Skips JSON whitespace. @return the next byte, or 0 at the end of the text. */
char th_jscan_peek(struct th_jscan *s);

/** Validates and steps over one value. @return false when the status is no longer OK. */
bool th_jscan_skip_value(struct th_jscan *s);

/** Steps over one value, saying what it was; a string's bytes are in @p out. */
bool th_jscan_value(struct th_jscan *s, struct th_jscan_str *out);

/** Steps over an opening '{' or '['; @p open says which. */
bool th_jscan_enter(struct th_jscan *s, char open);

/**
 * Object members: call after th_jscan_enter(s, '{') with *first = true. Steps over the comma,
 * the key and the colon, leaving the cursor at the member's value, which the caller must step
 * over. @return false at the closing brace (stepped over) or when the status is not OK.
 */
bool th_jscan_next_member(struct th_jscan *s, bool *first, struct th_jscan_str *key);

/** Array items: as th_jscan_next_member, leaving the cursor at the item. */
bool th_jscan_next_item(struct th_jscan *s, bool *first);

/* Inline, so the literals' lengths are known where the keys of every member are compared. */

/** Does the plain string @p str (from this cursor) equal @p lit exactly? */
static inline bool th_jscan_str_is(const struct th_jscan *s, const struct th_jscan_str *str,
                                   const char *lit)
{
    size_t n = strlen(lit);
    return str->kind == TH_JSCAN_PLAIN_STRING && str->len == n &&
           memcmp(s->base + str->off, lit, n) == 0;
}

/** ... equal @p lit ignoring ASCII case? */
static inline bool th_jscan_str_is_ci(const struct th_jscan *s, const struct th_jscan_str *str,
                                      const char *lit)
{
    size_t n = strlen(lit);
    return str->kind == TH_JSCAN_PLAIN_STRING && str->len == n &&
           strncasecmp(s->base + str->off, lit, n) == 0;
}

/** The cursor's position as an offset from its base. */
size_t th_jscan_offset(const struct th_jscan *s);

#endif
