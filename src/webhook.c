/* SPDX-License-Identifier: MIT */
/*
 * webhook.c -- the generic webhook body (the alert document with its "type") and the
 * HMAC-SHA256 signature receivers check it with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/hash.h"
#include "trailhook/webhook.h"

/* The same names the console destination prints, so one consumer can read both. */
static const char *kind_name(enum th_outbox_kind kind)
{
    switch (kind) {
    case TH_OUTBOX_ALERT:
        return "alert";
    case TH_OUTBOX_RULE_ERROR:
        return "rule_error";
    case TH_OUTBOX_RESOLVE:
        return "resolve";
    }
    return "alert";
}

char *th_webhook_body(enum th_outbox_kind kind, const json_t *alert, size_t *len)
{
    /* A document that is not an object (only a corrupt store gives one) still yields a body a
     * receiver can route on its type, rather than no delivery at all. */
    json_t *doc = json_is_object(alert) ? json_deep_copy(alert) : json_object();
    char *body = NULL;

    json_object_set_new(doc, "type", json_string(kind_name(kind)));
    body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL) {
        /* Every string in @doc is valid UTF-8, so only allocation can fail: abort as th_xmalloc
         * does (STYLE 12), rather than hand the deliverer a NULL body. */
        fprintf(stderr, "trailhook: out of memory serialising a webhook body\n");
        abort();
    }
    if (len != NULL) {
        *len = strlen(body);
    }
    return body;
}

void th_webhook_signature(const char *key, const char *body, size_t len, char out[72])
{
    unsigned char mac[TH_SHA256_LEN];
    const char *k = key != NULL ? key : "";

    th_hmac_sha256(k, strlen(k), body != NULL ? body : "", body != NULL ? len : 0, mac);
    memcpy(out, "sha256=", 7);
    th_hex(mac, sizeof(mac), out + 7);
}
