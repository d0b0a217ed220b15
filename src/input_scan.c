/* SPDX-License-Identifier: MIT */
/*
 * input_scan.c -- the fast path of th_input_parse(): one validating pass with jscan finds the
 * records of every input form and reads the eventName and eventID of each, and jansson builds a
 * tree only for the records limits->wants_event wants (and for any record the scan cannot judge
 * exactly). Most CloudTrail records are events no rule looks at, so most need no tree.
 *
 * It must give what the jansson path gives, or give up: a text it is not sure of (bad JSON, and
 * shapes whose meaning depends on jansson's handling of duplicate or escaped keys) returns
 * false, and input.c parses it the slow way, which also words the error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "input_int.h"
#include "trailhook/event.h"
#include "trailhook/jscan.h"
#include "trailhook/mem.h"

/* What the scan learned of one object's members: the keys input forms and rules look at. */
struct facts {
    size_t start, end;
    bool escaped_key; /* a key with escapes: it could decode to any of the names below */
    unsigned names, ids, records, details, detail_types;
    struct th_jscan_str name, id; /* eventName / eventID (any case), the last of each */
    bool records_array;           /* "Records" is an array (its items were scanned) */
    bool detail_object;           /* "detail" is an object */
};

/* Which keys matter in an object: a record's, an envelope's too, a log file's too. */
enum role { ROLE_RECORD, ROLE_LEAF, ROLE_CONTAINER };

/* A record found by the scan: a span for jansson, or no tree and its eventID. */
struct found {
    size_t start, end;
    bool tree;
    struct th_jscan_str id;
};

struct scan {
    struct th_jscan cur;
    const struct th_input_limits *lim;
    struct found *found;
    size_t nfound, cap;
    bool give_up; /* a shape the scan cannot judge exactly */
    enum th_input_form form;
};

static bool give_up(struct scan *sc)
{
    sc->give_up = true;
    return false;
}

/* A record needs no tree when its one eventName is known exactly and no rule wants it. */
static bool needs_tree(struct scan *sc, const struct facts *r)
{
    const struct th_jscan_str *name = &r->name;
    if (sc->lim->wants_event == NULL || r->escaped_key || r->names != 1 ||
        name->kind != TH_JSCAN_PLAIN_STRING) {
        return true;
    }
    if (r->ids > 1 || (r->ids == 1 && r->id.kind == TH_JSCAN_ESCAPED_STRING)) {
        return true; /* which eventID a tree would give is jansson's business */
    }
    return sc->lim->wants_event(sc->lim->wants_ctx, sc->cur.base + name->off, name->len);
}

static bool add_record(struct scan *sc, const struct facts *r)
{
    if (sc->nfound >= sc->lim->max_events) {
        return give_up(sc); /* the slow path words the error */
    }
    if (sc->nfound == sc->cap) {
        sc->cap = sc->cap == 0 ? 16 : sc->cap * 2;
        sc->found = th_xrealloc(sc->found, sc->cap * sizeof(*sc->found));
    }
    struct found *f = &sc->found[sc->nfound++];
    f->start = r->start;
    f->end = r->end;
    f->tree = needs_tree(sc, r);
    f->id = r->ids == 1 ? r->id : (struct th_jscan_str){.kind = TH_JSCAN_ABSENT};
    return true;
}

/* As input.c's push_leaf: an EventBridge envelope stands for its detail. */
static bool add_leaf(struct scan *sc, const struct facts *o, const struct facts *detail,
                     bool *envelope)
{
    if (o->escaped_key || o->details > 1) {
        return give_up(sc);
    }
    *envelope = o->details == 1 && o->detail_object && o->detail_types > 0;
    return add_record(sc, *envelope ? detail : o);
}

static bool scan_object(struct scan *sc, struct facts *o, enum role role, struct facts *detail);

static bool scan_detail(struct scan *sc, struct facts *o, struct facts *detail)
{
    o->details++;
    o->detail_object = th_jscan_peek(&sc->cur) == '{';
    if (o->detail_object) {
        return scan_object(sc, detail, ROLE_RECORD, NULL);
    }
    return th_jscan_skip_value(&sc->cur);
}

/* A log file's Records: every item must be an object (a record or an envelope). */
static bool scan_records(struct scan *sc, struct facts *o)
{
    bool first = true;
    bool envelope;
    if (++o->records > 1) {
        return give_up(sc); /* jansson keeps the last of duplicate keys */
    }
    o->records_array = th_jscan_peek(&sc->cur) == '[';
    if (!o->records_array) {
        return th_jscan_skip_value(&sc->cur);
    }
    th_jscan_enter(&sc->cur, '[');
    while (th_jscan_next_item(&sc->cur, &first)) {
        struct facts item;
        struct facts item_detail;
        if (th_jscan_peek(&sc->cur) != '{') {
            return give_up(sc);
        }
        if (!scan_object(sc, &item, ROLE_LEAF, &item_detail) ||
            !add_leaf(sc, &item, &item_detail, &envelope)) {
            return false;
        }
    }
    return sc->cur.status == TH_JSCAN_OK;
}

static bool scan_member(struct scan *sc, const struct th_jscan_str *key, struct facts *o,
                        enum role role, struct facts *detail)
{
    struct th_jscan *cur = &sc->cur;
    if (key->kind == TH_JSCAN_ESCAPED_STRING) {
        o->escaped_key = true;
    } else if (th_jscan_str_is_ci(cur, key, "eventName")) {
        o->names++;
        return th_jscan_value(cur, &o->name);
    } else if (th_jscan_str_is_ci(cur, key, "eventID")) {
        o->ids++;
        return th_jscan_value(cur, &o->id);
    } else if (role != ROLE_RECORD && th_jscan_str_is(cur, key, "detail")) {
        return scan_detail(sc, o, detail);
    } else if (role != ROLE_RECORD && th_jscan_str_is(cur, key, "detail-type")) {
        o->detail_types++;
    } else if (role == ROLE_CONTAINER && th_jscan_str_is(cur, key, "Records")) {
        return scan_records(sc, o);
    }
    return th_jscan_skip_value(cur);
}

static bool scan_object(struct scan *sc, struct facts *o, enum role role, struct facts *detail)
{
    struct th_jscan_str key;
    bool first = true;

    memset(o, 0, sizeof(*o));
    th_jscan_peek(&sc->cur);
    o->start = th_jscan_offset(&sc->cur);
    if (!th_jscan_enter(&sc->cur, '{')) {
        return false;
    }
    while (th_jscan_next_member(&sc->cur, &first, &key)) {
        if (!scan_member(sc, &key, o, role, detail)) {
            return false;
        }
    }
    o->end = th_jscan_offset(&sc->cur);
    return sc->cur.status == TH_JSCAN_OK;
}

/* An object document or an item of an array document: a log file, an envelope or a record. */
static bool scan_container(struct scan *sc, enum th_input_form *form)
{
    struct facts o;
    struct facts detail;
    bool envelope = false;
    if (!scan_object(sc, &o, ROLE_CONTAINER, &detail)) {
        return false;
    }
    if (o.escaped_key) {
        return give_up(sc); /* the key might be "Records", which jansson would see */
    }
    if (o.records_array) {
        *form = TH_FORM_RECORDS;
        return true;
    }
    if (!add_leaf(sc, &o, &detail, &envelope)) {
        return false;
    }
    *form = envelope ? TH_FORM_ENVELOPE : TH_FORM_RECORD;
    return true;
}

/* An array document holding objects; other items (arrays, scalars) are left to jansson. */
static bool scan_array_doc(struct scan *sc)
{
    bool first = true;
    enum th_input_form ignored;
    th_jscan_enter(&sc->cur, '[');
    while (th_jscan_next_item(&sc->cur, &first)) {
        if (th_jscan_peek(&sc->cur) != '{') {
            return give_up(sc);
        }
        if (!scan_container(sc, &ignored)) {
            return false;
        }
    }
    return sc->cur.status == TH_JSCAN_OK;
}

static bool scan_docs(struct scan *sc)
{
    size_t ndocs = 0;
    for (;;) {
        char c = th_jscan_peek(&sc->cur);
        bool ok;
        if (sc->cur.p == sc->cur.end) {
            break;
        }
        if (c == '{') {
            ok = scan_container(sc, &sc->form);
        } else if (c == '[') {
            sc->form = TH_FORM_ARRAY;
            ok = scan_array_doc(sc);
        } else {
            ok = false; /* jansson takes only objects and arrays as documents */
        }
        if (!ok) {
            return false;
        }
        ndocs++;
    }
    sc->form = ndocs == 0 ? TH_FORM_EMPTY : ndocs > 1 ? TH_FORM_NDJSON : sc->form;
    return sc->cur.status == TH_JSCAN_OK;
}

static void keep_id(struct th_input *in, const char *text, const struct th_jscan_str *id,
                    size_t *off)
{
    if (id->kind != TH_JSCAN_PLAIN_STRING) {
        *off = SIZE_MAX;
        return;
    }
    if (in->ids_len + id->len + 1 > in->ids_cap) {
        in->ids_cap = (in->ids_cap + id->len + 1) * 2;
        in->ids = th_xrealloc(in->ids, in->ids_cap);
    }
    memcpy(in->ids + in->ids_len, text + id->off, id->len);
    in->ids[in->ids_len + id->len] = '\0';
    *off = in->ids_len;
    in->ids_len += id->len + 1;
}

/* Builds the records: a tree where one is needed, else the kept eventID. */
static bool build_records(const struct scan *sc, const char *text, struct th_input *in)
{
    size_t *id_offs = th_xcalloc(sc->nfound + 1, sizeof(*id_offs));
    bool ok = true;

    in->records = th_xrealloc(in->records, (sc->nfound + 1) * sizeof(*in->records));
    in->cap_records = sc->nfound + 1;
    in->nrecords = 0;
    memset(in->records, 0, in->cap_records * sizeof(*in->records));
    for (size_t i = 0; i < sc->nfound && ok; i++) {
        const struct found *f = &sc->found[i];
        struct th_input_record *rec = &in->records[in->nrecords++];
        id_offs[i] = SIZE_MAX;
        if (f->tree) {
            json_t *doc = json_loadb(text + f->start, f->end - f->start, JSON_ALLOW_NUL, NULL);
            ok = doc != NULL; /* cannot happen after the scan; the slow path would say why */
            if (ok) {
                th_input_push_doc(in, doc);
                rec->event = doc;
                rec->cloudtrail = th_event_is_cloudtrail(doc);
            }
        } else {
            rec->cloudtrail = true;
            keep_id(in, text, &f->id, &id_offs[i]);
        }
    }
    for (size_t i = 0; i < in->nrecords && ok; i++) {
        in->records[i].event_id = id_offs[i] != SIZE_MAX ? in->ids + id_offs[i] : NULL;
    }
    free(id_offs);
    return ok;
}

bool th_input_scan(const char *text, size_t len, const struct th_input_limits *lim,
                   struct th_input *out)
{
    struct scan sc;
    size_t start = 0;
    bool ok;

    memset(&sc, 0, sizeof(sc));
    sc.lim = lim;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        start = 3; /* a UTF-8 byte order mark, as the slow path allows */
    }
    th_jscan_init(&sc.cur, text, len, 0, lim->max_depth, lim->max_string_bytes);
    sc.cur.p += start;
    ok = scan_docs(&sc) && !sc.give_up;
    if (ok) {
        out->form = sc.form;
        ok = build_records(&sc, text, out);
    }
    free(sc.found);
    return ok;
}

enum th_jscan_status th_input_scan_item(const char *text, size_t len, size_t depth,
                                        const struct th_input_limits *lim, struct th_input *out,
                                        size_t *used)
{
    struct scan sc;
    struct facts item;
    struct facts detail;
    bool envelope;
    enum th_jscan_status status = TH_JSCAN_UNSURE;

    memset(&sc, 0, sizeof(sc));
    sc.lim = lim;
    th_jscan_init(&sc.cur, text, len, depth, lim->max_depth, lim->max_string_bytes);
    if (th_jscan_peek(&sc.cur) == '{' && scan_object(&sc, &item, ROLE_LEAF, &detail) &&
        add_leaf(&sc, &item, &detail, &envelope) && build_records(&sc, text, out)) {
        *used = th_jscan_offset(&sc.cur);
        status = TH_JSCAN_OK;
    } else if (sc.cur.status == TH_JSCAN_MORE || (sc.cur.p == sc.cur.end && !sc.give_up)) {
        status = TH_JSCAN_MORE;
    }
    free(sc.found);
    return status;
}
