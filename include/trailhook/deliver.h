/* SPDX-License-Identifier: MIT */
/*
 * deliver.h -- destinations and the deliverer that drains the outbox (DESIGN §5): each pending
 * row is sent to its destination, marked done only after success, retried with exponential
 * backoff and full jitter after a temporary failure, parked as a dead letter after a permanent
 * one. Each destination keeps its own rows: one failing never blocks another.
 */
#ifndef TRAILHOOK_DELIVER_H
#define TRAILHOOK_DELIVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "trailhook/config.h"
#include "trailhook/err.h"
#include "trailhook/store.h"

enum th_dest_outcome {
    TH_DEST_DELIVERED = 0,
    TH_DEST_RETRY, /**< temporary: try again later (retry_after_ms is a floor when > 0) */
    TH_DEST_DEAD,  /**< permanent: park as a dead letter */
};

struct th_dest_result {
    enum th_dest_outcome outcome;
    int64_t retry_after_ms;
    char detail[256]; /**< for logs and dead letters; never a secret */
};

struct th_dest;

/** What a destination type does. Called only from the deliverer thread. */
struct th_dest_ops {
    const char *type;
    /** Sends one alert / rule-error / resolve document (the store's JSON). */
    void (*send)(struct th_dest *dest, enum th_outbox_kind kind, const json_t *doc,
                 struct th_dest_result *res);
    /** Releases what the destination holds (not the struct itself). */
    void (*cleanup)(struct th_dest *dest);
};

/** A configured destination: its settings and its type's state. */
struct th_dest {
    const struct th_config_dest *cfg; /**< borrowed from the configuration */
    const struct th_dest_ops *ops;
    void *impl;
    FILE *out; /**< console: where lines go (stdout) */
};

/** The console destination: one JSON line per alert on its stream. */
extern const struct th_dest_ops th_dest_console_ops;

struct th_deliverer;

/** Shared flags the deliverer keeps up to date for /readyz. */
struct th_deliver_status {
    _Atomic bool store_writable;
};

/**
 * Builds destinations for every configured one.
 * @param[out] out new deliverer, free with th_deliverer_free() after th_deliverer_stop()
 * @return TH_OK; TH_EUNSUPPORTED for a destination type this build cannot deliver to.
 */
enum th_err th_deliverer_new(const struct th_config *cfg, struct th_deliver_status *status,
                             struct th_deliverer **out, char *err, size_t errlen);

/** Starts the delivery thread (it opens its own store handle). */
enum th_err th_deliverer_start(struct th_deliverer *d);

/** Wakes the thread: new outbox rows were committed. Any thread. */
void th_deliverer_notify(struct th_deliverer *d);

/**
 * Stops the thread, letting deliveries in progress end within @p grace_ms; rows not delivered
 * stay in the outbox for the next start.
 */
void th_deliverer_stop(struct th_deliverer *d, int64_t grace_ms);

void th_deliverer_free(struct th_deliverer *d);

/**
 * The delay before retry number @p attempts (1-based): a random value in [0, min(cap,
 * base * 2^(attempts-1))] ("full jitter"), never below @p floor_ms.
 */
int64_t th_deliver_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms, int64_t floor_ms);

#endif
