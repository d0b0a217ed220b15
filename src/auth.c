/* SPDX-License-Identifier: MIT */
/* auth.c -- API key, Basic and Bearer checks against every configured credential. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trailhook/auth.h"
#include "trailhook/hash.h"
#include "trailhook/mem.h"

bool th_auth_configured(const struct th_config *cfg)
{
    return cfg->napi_keys > 0 || cfg->nbasic_auth > 0;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

bool th_auth_base64_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    while (len > 0 && in[len - 1] == '=') {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = n;
    return true;
}

/* Compares against every entry, never stopping early. */
static bool any_equal(char *const *list, size_t n, const void *value, size_t len)
{
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found |= th_ct_equal(list[i], strlen(list[i]), value, len);
    }
    return found;
}

static bool check_basic(const struct th_config *cfg, const char *b64)
{
    size_t len = strlen(b64);
    if (len > 4096) {
        return false;
    }
    unsigned char *buf = th_xmalloc(len + 3);
    size_t n = 0;
    bool ok = th_auth_base64_decode(b64, len, buf, &n) &&
              any_equal(cfg->basic_auth, cfg->nbasic_auth, buf, n);
    free(buf);
    return ok;
}

static const char *after_scheme(const char *header, const char *scheme)
{
    size_t n = strlen(scheme);
    if (strncasecmp(header, scheme, n) != 0 || header[n] != ' ') {
        return NULL;
    }
    header += n;
    while (*header == ' ') {
        header++;
    }
    return header;
}

bool th_auth_check(const struct th_config *cfg, const struct th_auth_request *req)
{
    bool ok = false;
    if (req->api_key != NULL) {
        ok |= any_equal(cfg->api_keys, cfg->napi_keys, req->api_key, strlen(req->api_key));
    }
    if (req->authorization != NULL) {
        const char *bearer = after_scheme(req->authorization, "Bearer");
        const char *basic = after_scheme(req->authorization, "Basic");
        if (bearer != NULL) {
            ok |= any_equal(cfg->api_keys, cfg->napi_keys, bearer, strlen(bearer));
        }
        if (basic != NULL) {
            ok |= check_basic(cfg, basic);
        }
    }
    return ok;
}
