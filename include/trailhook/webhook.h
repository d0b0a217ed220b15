/* SPDX-License-Identifier: MIT */
/*
 * webhook.h -- the generic webhook destination's body (the alert document as the console prints
 * it, with "type": alert | resolve | rule_error) and its HMAC-SHA256 signature. Pure; any thread.
 */
#ifndef TRAILHOOK_WEBHOOK_H
#define TRAILHOOK_WEBHOOK_H

#include <stddef.h>
#include <jansson.h>

#include "trailhook/store.h"

/** The header carrying "sha256=<hex HMAC-SHA256 of the body>". */
#define TH_WEBHOOK_SIGNATURE_HEADER "X-Trailhook-Signature"

/** @return new string (compact JSON), free with free(); *len set to its length. */
char *th_webhook_body(enum th_outbox_kind kind, const json_t *alert, size_t *len);

/**
 * "sha256=" + lower-case hex HMAC-SHA256 of @p body under @p key.
 * @param[out] out at least 72 bytes
 */
void th_webhook_signature(const char *key, const char *body, size_t len, char out[72]);

#endif
