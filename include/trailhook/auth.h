/* SPDX-License-Identifier: MIT */
/*
 * auth.h -- ingest credentials (DESIGN §2): an API key in a configurable header, HTTP Basic, or
 * a Bearer token; several valid at once for rotation. Every comparison is constant-time and runs
 * over every configured credential, so timing says nothing about which part was wrong.
 * Threads: th_auth_check may be called from any thread once the set is built.
 */
#ifndef TRAILHOOK_AUTH_H
#define TRAILHOOK_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "trailhook/config.h"

/** The credentials a request carried (borrowed header values, NULL when absent). */
struct th_auth_request {
    const char *api_key;       /**< the value of the configured API-key header */
    const char *authorization; /**< the Authorization header */
};

/** @return true when the configuration holds at least one credential. */
bool th_auth_configured(const struct th_config *cfg);

/** @return true when the request carries one of the configured credentials. */
bool th_auth_check(const struct th_config *cfg, const struct th_auth_request *req);

/**
 * Decodes standard base64 (padding optional).
 * @param[out] out at least len*3/4+3 bytes; @param[out] outlen bytes written
 * @return false on a character outside the alphabet.
 */
bool th_auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t *outlen);

#endif
