/* SPDX-License-Identifier: MIT */
/*
 * dest.h -- the destination types (DESIGN §5): console, slack, pagerduty, webhook. Each sends one
 * outbox document and says how it went: delivered, retry later (with a Retry-After floor), or a
 * dead letter with the status and body. Called from delivery lanes; a call uses only the lane's
 * own HTTP handle and stream, so lanes never share state here.
 */
#ifndef TRAILHOOK_DEST_H
#define TRAILHOOK_DEST_H

#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "trailhook/config.h"
#include "trailhook/httpc.h"
#include "trailhook/store.h"

enum th_dest_outcome {
    TH_DEST_DELIVERED = 0,
    TH_DEST_RETRY, /**< temporary: try again later (retry_after_ms is a floor when > 0) */
    TH_DEST_DEAD,  /**< permanent: park as a dead letter */
};

/** Why a send failed (client, server, rate limited, timeout, network): for logs and metrics. */
enum th_dest_reason {
    TH_DEST_REASON_NONE = 0,
    TH_DEST_REASON_CLIENT,      /**< 4xx other than 429 */
    TH_DEST_REASON_SERVER,      /**< 5xx */
    TH_DEST_REASON_RATELIMITED, /**< 429 */
    TH_DEST_REASON_TIMEOUT,
    TH_DEST_REASON_NETWORK,
};

struct th_dest_result {
    enum th_dest_outcome outcome;
    enum th_dest_reason reason;
    int64_t retry_after_ms;
    long status;      /**< HTTP status, 0 when none */
    char detail[256]; /**< for logs and dead letters; never a secret */
};

/** Where a destination's send may write or connect. */
struct th_dest_io {
    struct th_httpc *http; /**< the lane's client (network destinations) */
    FILE *console;         /**< the console destination's stream */
    int64_t now_ms;        /**< for Retry-After dates */
};

/** One destination type. */
struct th_dest_ops {
    const char *type;
    void (*send)(const struct th_config_dest *cfg, const struct th_dest_io *io,
                 enum th_outbox_kind kind, const json_t *doc, struct th_dest_result *res);
};

/** @return the operations of @p type. */
const struct th_dest_ops *th_dest_ops_for(enum th_dest_type type);

/**
 * Turns an HTTP exchange into an outcome: 2xx delivered; 429, 5xx, timeouts and network errors
 * retried (Retry-After honoured as a floor); other answers (4xx, 3xx) dead with status and body.
 * @param[in] rc what th_httpc_post returned
 */
void th_dest_classify(enum th_err rc, const struct th_httpc_response *resp, int64_t now_ms,
                      struct th_dest_result *res);

#endif
