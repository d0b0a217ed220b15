/* SPDX-License-Identifier: MIT */
/*
 * httpc.h -- the outbound HTTP client of the destinations, on libcurl: one POST at a time per
 * handle, TLS verification always on, bounded connect and total time, bounded response capture,
 * and an abort hook so a stopping service can give up a transfer past its grace period.
 * Threads: a handle belongs to one thread (libcurl's rule for easy handles).
 */
#ifndef TRAILHOOK_HTTPC_H
#define TRAILHOOK_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhook/err.h"

struct th_httpc;

/** What went wrong below HTTP, if anything. */
enum th_httpc_failure {
    TH_HTTPC_OK = 0,  /**< an HTTP answer arrived (any status) */
    TH_HTTPC_TIMEOUT, /**< connect or total timeout */
    TH_HTTPC_NETWORK, /**< DNS, refused, reset, TLS, ... */
    TH_HTTPC_ABORTED, /**< the abort hook asked to stop */
};

/** Returns true to abandon the transfer in progress (checked a few times a second). */
typedef bool (*th_httpc_abort_cb)(void *ctx);

struct th_httpc_request {
    const char *url;
    const char *body;
    size_t len;
    const char *const *headers; /**< "Name: value" lines (may hold secrets: never logged) */
    size_t nheaders;
    long connect_timeout_ms;
    long timeout_ms;
};

struct th_httpc_response {
    enum th_httpc_failure failure;
    long status;          /**< HTTP status, 0 without an answer */
    char body[512];       /**< the start of the answer's body, NUL-terminated */
    char retry_after[64]; /**< the Retry-After header, "" when absent */
    char error[256];      /**< libcurl's message for a failure (no URL, no secrets) */
    double seconds;       /**< total time of the transfer */
};

/** @return new handle, free with th_httpc_free(); NULL when libcurl cannot make one. */
struct th_httpc *th_httpc_new(th_httpc_abort_cb abort_cb, void *abort_ctx);

void th_httpc_free(struct th_httpc *c);

/**
 * POSTs @p req. Never follows redirects (a webhook answering 3xx is misconfigured).
 * @param[out] resp filled in every case
 * @return TH_OK when an HTTP answer arrived; TH_ETIMEOUT, TH_ETEMP (network), TH_EINVAL.
 */
enum th_err th_httpc_post(struct th_httpc *c, const struct th_httpc_request *req,
                          struct th_httpc_response *resp);

/**
 * Parses a Retry-After value: delta-seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime)
 * relative to @p now_ms. Past dates give 0.
 * @param[out] delay_ms the delay it asks for, capped at one day
 * @return false when the value is neither.
 */
bool th_httpc_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms);

#endif
