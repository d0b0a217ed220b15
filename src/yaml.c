/* SPDX-License-Identifier: MIT */
/*
 * yaml.c -- builds a th_yaml_node tree from libyaml's event stream, remembering where each node
 * starts, and resolves plain scalars to JSON types the way PyYAML's YAML 1.1 resolver does.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/hash.h"
#include "trailhook/yaml.h"
#include "yaml_int.h"

#define DEFAULT_MAX_DEPTH 64
#define CORE_TAG          "tag:yaml.org,2002:"
/* Longest plain scalar tried as a number; anything longer is a string whatever it holds. */
#define NUMBER_MAX 64

/* A sequence or mapping whose children are still arriving. */
struct frame {
    struct th_yaml_node *node; /* already attached to the tree */
    struct th_yaml_node *key;  /* mapping: a key waiting for its value, owned here until then */
    size_t cap;                /* allocated items or pairs */
};

struct builder {
    struct frame *stack;
    size_t depth;
    size_t cap;
    size_t max_depth;
    size_t ndocs;
    struct th_yaml_node *root;
    char *err;
    size_t errlen;
};

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", "yes", "Yes",
                                         "YES",  "on",   "On",   "ON",  NULL};
static const char *const false_words[] = {"false", "False", "FALSE", "no",  "No",
                                          "NO",    "off",   "Off",   "OFF", NULL};

static void set_err(char *err, size_t errlen, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_err(char *err, size_t errlen, int line, int column, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "line %d, column %d: %s", line, column, msg);
}

/* libyaml counts from 0 in size_t; people count from 1. */
static int position(size_t zero_based)
{
    return zero_based < (size_t)INT_MAX ? (int)zero_based + 1 : INT_MAX;
}

static struct th_yaml_node *node_new(enum th_yaml_type type, yaml_mark_t mark)
{
    struct th_yaml_node *n = th_xcalloc(1, sizeof(*n));

    n->type = type;
    n->line = position(mark.line);
    n->column = position(mark.column);
    return n;
}

void th_yaml_free(struct th_yaml_node *root)
{
    if (root == NULL) {
        return;
    }
    free(root->scalar);
    for (size_t i = 0; i < root->nitems; i++) {
        th_yaml_free(root->items[i]);
    }
    free(root->items);
    for (size_t i = 0; i < root->npairs; i++) {
        th_yaml_free(root->pairs[i].key);
        th_yaml_free(root->pairs[i].value);
    }
    free(root->pairs);
    free(root);
}

static void *grow(void *arr, size_t *cap, size_t used, size_t size)
{
    if (used < *cap) {
        return arr;
    }
    *cap = *cap == 0 ? 4 : *cap * 2;
    return th_xrealloc(arr, *cap * size);
}

/* Hands @p n to the innermost open collection, or makes it the root; frees it on error. */
static enum th_err attach(struct builder *b, struct th_yaml_node *n)
{
    struct frame *f = NULL;
    struct th_yaml_node *parent = NULL;

    if (b->depth == 0) {
        b->root = n;
        return TH_OK;
    }
    f = &b->stack[b->depth - 1];
    parent = f->node;
    if (parent->type == TH_YAML_SEQ) {
        parent->items = grow(parent->items, &f->cap, parent->nitems, sizeof(*parent->items));
        parent->items[parent->nitems++] = n;
        return TH_OK;
    }
    if (f->key == NULL) {
        if (n->type != TH_YAML_SCALAR) {
            set_err(b->err, b->errlen, n->line, n->column,
                    "a mapping key must be a plain value, not a list or mapping");
            th_yaml_free(n);
            return TH_EPARSE;
        }
        f->key = n;
        return TH_OK;
    }
    parent->pairs = grow(parent->pairs, &f->cap, parent->npairs, sizeof(*parent->pairs));
    parent->pairs[parent->npairs].key = f->key;
    parent->pairs[parent->npairs].value = n;
    parent->npairs++;
    f->key = NULL;
    return TH_OK;
}

/* Anchors and aliases make a small spec or config harder to read than they are worth. */
static enum th_err check_anchor(struct builder *b, const yaml_char_t *anchor, yaml_mark_t mark)
{
    if (anchor == NULL) {
        return TH_OK;
    }
    set_err(b->err, b->errlen, position(mark.line), position(mark.column),
            "anchors and aliases are not supported (anchor '&%.64s')", (const char *)anchor);
    return TH_EPARSE;
}

/* @return the core-schema name of @p tag ("str", "int", ...), or NULL for any other tag. */
static const char *core_tag(const yaml_char_t *tag)
{
    size_t n = strlen(CORE_TAG);

    if (tag == NULL || strncmp((const char *)tag, CORE_TAG, n) != 0) {
        return NULL;
    }
    return (const char *)tag + n;
}

static enum th_err on_start(struct builder *b, const yaml_event_t *ev, enum th_yaml_type type)
{
    bool seq = type == TH_YAML_SEQ;
    const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
    const char *core = core_tag(tag);
    int line = position(ev->start_mark.line);
    int column = position(ev->start_mark.column);
    struct th_yaml_node *n = NULL;
    enum th_err rc = TH_OK;

    rc = check_anchor(b, seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
                      ev->start_mark);
    if (rc != TH_OK) {
        return rc;
    }
    if (tag != NULL && (core == NULL || strcmp(core, seq ? "seq" : "map") != 0)) {
        set_err(b->err, b->errlen, line, column, "tag '%.64s' is not supported here",
                (const char *)tag);
        return TH_EPARSE;
    }
    if (b->depth >= b->max_depth) {
        set_err(b->err, b->errlen, line, column, "nested deeper than %zu levels", b->max_depth);
        return TH_ETOOBIG;
    }
    n = node_new(type, ev->start_mark);
    rc = attach(b, n);
    if (rc != TH_OK) {
        return rc;
    }
    b->stack = grow(b->stack, &b->cap, b->depth, sizeof(*b->stack));
    b->stack[b->depth] = (struct frame){.node = n};
    b->depth++;
    return TH_OK;
}

static bool text_in(const struct th_yaml_node *n, const char *const *words)
{
    for (size_t i = 0; words[i] != NULL; i++) {
        if (strlen(words[i]) == n->scalar_len && memcmp(words[i], n->scalar, n->scalar_len) == 0) {
            return true;
        }
    }
    return false;
}

bool th_yaml_bool(const struct th_yaml_node *node, bool *out)
{
    if (node == NULL || node->type != TH_YAML_SCALAR || node->quoted) {
        return false;
    }
    if (text_in(node, true_words)) {
        *out = true;
        return true;
    }
    if (text_in(node, false_words)) {
        *out = false;
        return true;
    }
    return false;
}

/*
 * Copies a plain scalar into @p buf without the '_' digit separators YAML 1.1 allows (never
 * first, so "_1" stays text). False when it cannot be a number: too long or holding a NUL.
 */
static bool number_text(const struct th_yaml_node *n, char *buf, size_t buflen)
{
    size_t used = 0;

    if (n->scalar_len == 0 || n->scalar_len >= buflen || memchr(n->scalar, '\0', n->scalar_len)) {
        return false;
    }
    for (size_t i = 0; i < n->scalar_len; i++) {
        char c = n->scalar[i];
        bool first = used == 0 || (used == 1 && (buf[0] == '+' || buf[0] == '-'));
        if (c == '_' && !first) {
            continue;
        }
        buf[used++] = c;
    }
    buf[used] = '\0';
    return true;
}

/*
 * Decimal, 0x hex, 0o and PyYAML's leading-zero octal, 0b binary. Sexagesimal (1:30) is left
 * a string on purpose: in a config it is far more often a time or a port than a number.
 * Values beyond 64 bits stay strings too, since jansson has no big integers.
 */
static bool resolve_int(const char *s, json_int_t *out)
{
    bool neg = *s == '-';
    int base = 10;
    const char *digits = (*s == '+' || *s == '-') ? s + 1 : s;
    unsigned long long mag = 0;
    unsigned long long limit = neg ? (unsigned long long)INT64_MAX + 1 : INT64_MAX;

    if (digits[0] == '0' && digits[1] != '\0') {
        base = 8;
        digits++;
        if (*digits == 'x' || *digits == 'o' || *digits == 'b') {
            base = *digits == 'x' ? 16 : (*digits == 'o' ? 8 : 2);
            digits++;
        }
    }
    if (*digits == '\0') {
        return false;
    }
    for (const char *p = digits; *p != '\0'; p++) {
        int d = th_hex_digit(*p);
        if (d < 0 || d >= base) {
            return false;
        }
    }
    errno = 0;
    mag = strtoull(digits, NULL, base);
    if (errno == ERANGE || mag > limit) {
        return false;
    }
    *out = neg ? (mag == 0 ? 0 : -(json_int_t)(mag - 1) - 1) : (json_int_t)mag;
    return true;
}

/*
 * Digits with a '.' or an exponent. .inf and .nan stay strings: JSON has no such numbers, and
 * neither has jansson (json_real refuses them).
 */
static bool resolve_float(const char *s, double *out)
{
    const char *p = (*s == '+' || *s == '-') ? s + 1 : s;
    size_t mantissa = 0;
    bool point = false;
    bool exponent = false;

    for (; isdigit((unsigned char)*p) || (*p == '.' && !point); p++) {
        point = point || *p == '.';
        mantissa += *p != '.';
    }
    if (mantissa == 0) {
        return false;
    }
    if (*p == 'e' || *p == 'E') {
        exponent = true;
        p += (p[1] == '+' || p[1] == '-') ? 2 : 1;
        if (!isdigit((unsigned char)*p)) {
            return false;
        }
        while (isdigit((unsigned char)*p)) {
            p++;
        }
    }
    if (*p != '\0' || (!point && !exponent)) {
        return false;
    }
    *out = strtod(s, NULL);
    return isfinite(*out);
}

static json_t *scalar_to_json(const struct th_yaml_node *n)
{
    char buf[NUMBER_MAX];
    json_int_t iv = 0;
    double dv = 0;
    bool bv = false;

    if (!n->quoted) {
        if (text_in(n, null_words)) {
            return json_null();
        }
        if (th_yaml_bool(n, &bv)) {
            return json_boolean(bv);
        }
        if (number_text(n, buf, sizeof(buf)) && resolve_int(buf, &iv)) {
            return json_integer(iv);
        }
        if (number_text(n, buf, sizeof(buf)) && resolve_float(buf, &dv)) {
            return json_real(dv);
        }
    }
    return json_stringn(n->scalar, n->scalar_len);
}

/*
 * !!str (and the non-specific "!") force a string; !!null, !!bool, !!int and !!float ask for
 * what the text resolves to anyway, so they are checked rather than obeyed.
 */
static enum th_err apply_scalar_tag(struct builder *b, struct th_yaml_node *n,
                                    const yaml_char_t *tag)
{
    const char *core = core_tag(tag);
    json_t *v = NULL;
    bool ok = false;

    if (tag == NULL) {
        return TH_OK;
    }
    if (strcmp((const char *)tag, "!") == 0 || (core != NULL && strcmp(core, "str") == 0)) {
        n->quoted = true;
        return TH_OK;
    }
    if (core != NULL) {
        n->quoted = false;
        v = scalar_to_json(n);
        ok = (strcmp(core, "null") == 0 && json_is_null(v)) ||
             (strcmp(core, "bool") == 0 && json_is_boolean(v)) ||
             (strcmp(core, "int") == 0 && json_is_integer(v)) ||
             (strcmp(core, "float") == 0 && json_is_number(v));
        json_decref(v);
        if (ok) {
            return TH_OK;
        }
    }
    set_err(b->err, b->errlen, n->line, n->column,
            core != NULL ? "the value does not match its tag '%.64s'"
                         : "tag '%.64s' is not supported here",
            (const char *)tag);
    return TH_EPARSE;
}

static enum th_err on_scalar(struct builder *b, const yaml_event_t *ev)
{
    struct th_yaml_node *n = NULL;
    enum th_err rc = check_anchor(b, ev->data.scalar.anchor, ev->start_mark);

    if (rc != TH_OK) {
        return rc;
    }
    n = node_new(TH_YAML_SCALAR, ev->start_mark);
    n->scalar = th_xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    n->scalar_len = ev->data.scalar.length;
    /* Quoted and block (| >) scalars are strings whatever their text looks like. */
    n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    rc = apply_scalar_tag(b, n, ev->data.scalar.tag);
    if (rc != TH_OK) {
        th_yaml_free(n);
        return rc;
    }
    return attach(b, n);
}

/* Orders keys by text, then by position, so the second of two equal keys sorts after the first. */
static int key_cmp(const void *a, const void *b)
{
    const struct th_yaml_node *x = *(const struct th_yaml_node *const *)a;
    const struct th_yaml_node *y = *(const struct th_yaml_node *const *)b;
    size_t n = x->scalar_len < y->scalar_len ? x->scalar_len : y->scalar_len;
    int c = memcmp(x->scalar, y->scalar, n);

    if (c != 0) {
        return c;
    }
    if (x->scalar_len != y->scalar_len) {
        return x->scalar_len < y->scalar_len ? -1 : 1;
    }
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    return (x->column > y->column) - (x->column < y->column);
}

/*
 * PyYAML lets a repeated key silently win; in a config or spec that hides a mistake, so it is
 * refused. Sorting keeps this O(n log n) for the large mappings a fuzzer feeds in.
 */
static enum th_err check_duplicates(struct builder *b, const struct th_yaml_node *map)
{
    const struct th_yaml_node **keys = NULL;
    const struct th_yaml_node *dup = NULL;

    if (map->npairs < 2) {
        return TH_OK;
    }
    keys = th_xmalloc(map->npairs * sizeof(*keys));
    for (size_t i = 0; i < map->npairs; i++) {
        keys[i] = map->pairs[i].key;
    }
    qsort(keys, map->npairs, sizeof(*keys), key_cmp);
    for (size_t i = 1; i < map->npairs && dup == NULL; i++) {
        if (keys[i]->scalar_len == keys[i - 1]->scalar_len &&
            memcmp(keys[i]->scalar, keys[i - 1]->scalar, keys[i]->scalar_len) == 0) {
            dup = keys[i];
        }
    }
    if (dup != NULL) {
        set_err(b->err, b->errlen, dup->line, dup->column, "duplicate key '%.64s'", dup->scalar);
    }
    free(keys);
    return dup != NULL ? TH_EPARSE : TH_OK;
}

static enum th_err on_end(struct builder *b)
{
    struct th_yaml_node *n = b->stack[b->depth - 1].node;

    b->depth--;
    return n->type == TH_YAML_MAP ? check_duplicates(b, n) : TH_OK;
}

static enum th_err on_event(struct builder *b, const yaml_event_t *ev)
{
    int line = position(ev->start_mark.line);
    int column = position(ev->start_mark.column);

    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->ndocs++ > 0) {
            set_err(b->err, b->errlen, line, column,
                    "a second document ('---') is not allowed: the file holds one");
            return TH_EPARSE;
        }
        return TH_OK;
    case YAML_ALIAS_EVENT:
        set_err(b->err, b->errlen, line, column,
                "anchors and aliases are not supported (alias '*%.64s')",
                (const char *)ev->data.alias.anchor);
        return TH_EPARSE;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, TH_YAML_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, TH_YAML_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(b);
    default:
        return TH_OK;
    }
}

/* As th_xmalloc does: a half-handled OOM is worse than a restart. */
static _Noreturn void out_of_memory(void)
{
    th_log(TH_LOG_ERROR, "yaml", "out of memory in libyaml");
    abort();
}

/* Reader errors (bad encoding) carry a byte offset, not a mark: count the lines up to it. */
static yaml_mark_t offset_mark(const char *data, size_t len, size_t offset)
{
    yaml_mark_t m = {0};

    for (size_t i = 0; i < offset && i < len; i++) {
        if (data[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    return m;
}

static enum th_err parser_error(const yaml_parser_t *p, const char *data, size_t len, char *err,
                                size_t errlen)
{
    yaml_mark_t at = p->problem_mark;
    const char *problem = p->problem != NULL ? p->problem : "not valid YAML";

    if (p->error == YAML_MEMORY_ERROR) {
        out_of_memory();
    }
    if (p->error == YAML_READER_ERROR) {
        at = offset_mark(data, len, p->problem_offset);
    }
    if (p->context != NULL) {
        set_err(err, errlen, position(at.line), position(at.column),
                "%s %s that starts at line %d, column %d", problem, p->context,
                position(p->context_mark.line), position(p->context_mark.column));
    } else {
        set_err(err, errlen, position(at.line), position(at.column), "%s", problem);
    }
    return TH_EPARSE;
}

static void builder_cleanup(struct builder *b)
{
    for (size_t i = 0; i < b->depth; i++) {
        th_yaml_free(b->stack[i].key);
    }
    free(b->stack);
    th_yaml_free(b->root);
}

/* An empty file, or one holding only "---", is an empty mapping: every key takes its default. */
static struct th_yaml_node *take_root(struct builder *b)
{
    struct th_yaml_node *root = b->root;
    yaml_mark_t start = {0};

    b->root = NULL;
    if (root == NULL || (root->type == TH_YAML_SCALAR && !root->quoted && root->scalar_len == 0)) {
        th_yaml_free(root);
        root = node_new(TH_YAML_MAP, start);
    }
    return root;
}

enum th_err th_yaml_parse(const char *data, size_t len, size_t max_depth, struct th_yaml_node **out,
                          char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    struct builder b = {
        .max_depth = max_depth == 0 ? DEFAULT_MAX_DEPTH : max_depth, .err = err, .errlen = errlen};
    bool done = false;
    enum th_err rc = TH_OK;

    *out = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (yaml_parser_initialize(&parser) == 0) {
        out_of_memory();
    }
    data = data != NULL ? data : "";
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (rc == TH_OK && !done) {
        if (yaml_parser_parse(&parser, &ev) == 0) {
            rc = parser_error(&parser, data, len, err, errlen);
        } else {
            rc = on_event(&b, &ev);
            done = ev.type == YAML_STREAM_END_EVENT;
            yaml_event_delete(&ev);
        }
    }
    if (rc == TH_OK) {
        *out = take_root(&b);
    }
    builder_cleanup(&b);
    yaml_parser_delete(&parser);
    return rc;
}

const struct th_yaml_node *th_yaml_map_get(const struct th_yaml_node *map, const char *key)
{
    size_t len = key != NULL ? strlen(key) : 0;

    if (map == NULL || map->type != TH_YAML_MAP || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < map->npairs; i++) {
        const struct th_yaml_node *k = map->pairs[i].key;
        if (k->scalar_len == len && memcmp(k->scalar, key, len) == 0) {
            return map->pairs[i].value;
        }
    }
    return NULL;
}

static json_t *seq_to_json(const struct th_yaml_node *node)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < node->nitems; i++) {
        if (json_array_append_new(arr, th_yaml_to_json(node->items[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* Keys keep their text as written ("yes" stays "yes"): PyYAML's bool keys are a trap anyway. */
static json_t *map_to_json(const struct th_yaml_node *node)
{
    json_t *obj = json_object();

    for (size_t i = 0; obj != NULL && i < node->npairs; i++) {
        const struct th_yaml_node *k = node->pairs[i].key;
        if (json_object_setn_new(obj, k->scalar, k->scalar_len,
                                 th_yaml_to_json(node->pairs[i].value)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}

json_t *th_yaml_to_json(const struct th_yaml_node *node)
{
    if (node == NULL) {
        return NULL;
    }
    switch (node->type) {
    case TH_YAML_SCALAR:
        return scalar_to_json(node);
    case TH_YAML_SEQ:
        return seq_to_json(node);
    case TH_YAML_MAP:
        return map_to_json(node);
    }
    return NULL;
}

enum th_err th_yaml_read_file(const char *path, size_t max, char **data, size_t *len, int *errnum)
{
    FILE *fp = NULL;
    char *buf = NULL;
    size_t cap = 0;
    size_t used = 0;
    size_t got = 1;
    enum th_err rc = TH_OK;

    *data = NULL;
    *len = 0;
    *errnum = 0;
    fp = fopen(path, "rb");
    if (fp == NULL) {
        *errnum = errno;
        rc = TH_EIO;
        goto out;
    }
    while (got > 0) {
        buf = grow(buf, &cap, used + 1, 1);
        got = fread(buf + used, 1, cap - used - 1, fp);
        used += got;
        if (used > max) {
            rc = TH_ETOOBIG;
            goto out;
        }
    }
    if (ferror(fp)) {
        *errnum = errno != 0 ? errno : EIO;
        rc = TH_EIO;
        goto out;
    }
    buf[used] = '\0';
    *data = buf;
    *len = used;
    buf = NULL;
out:
    if (fp != NULL) {
        fclose(fp);
    }
    free(buf);
    return rc;
}
