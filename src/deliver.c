/* SPDX-License-Identifier: MIT */
/*
 * deliver.c -- the deliverer thread: drains each destination's outbox rows from the store,
 * records outcomes, and does the store's housekeeping (pruning, the writability probe).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trailhook/clock.h"
#include "trailhook/deliver.h"
#include "trailhook/hash.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

#define BATCH           32
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS  (5 * 60 * 1000)
#define MAX_AGE_MS      (24LL * 3600 * 1000)
#define HOUSEKEEPING_MS 5000
#define PRUNE_EVERY_MS  (10 * 60 * 1000)

struct th_deliverer {
    const struct th_config *cfg;
    struct th_deliver_status *status;
    struct th_dest *dests;
    size_t ndests;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    bool notified;
    int64_t last_prune_ms;
};

/* ---- console ---------------------------------------------------------------------------- */

static void console_send(struct th_dest *dest, enum th_outbox_kind kind, const json_t *doc,
                         struct th_dest_result *res)
{
    json_t *line = json_deep_copy(doc);
    static const char *const kinds[] = {"alert", "rule_error", "resolve"};
    json_object_set_new(line, "type", json_string(kinds[kind]));
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    /* One write per line, flushed now: a reader piping stdout sees each alert at once. */
    int rc = fprintf(dest->out, "%s\n", text);
    free(text);
    if (rc < 0 || fflush(dest->out) != 0) {
        res->outcome = TH_DEST_RETRY;
        snprintf(res->detail, sizeof(res->detail), "cannot write to stdout");
        return;
    }
    res->outcome = TH_DEST_DELIVERED;
}

static void console_cleanup(struct th_dest *dest)
{
    (void)dest;
}

const struct th_dest_ops th_dest_console_ops = {"console", console_send, console_cleanup};

/* ---- the deliverer ---------------------------------------------------------------------- */

int64_t th_deliver_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms, int64_t floor_ms)
{
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempts && ceiling < cap_ms; i++) {
        ceiling *= 2;
    }
    if (ceiling > cap_ms) {
        ceiling = cap_ms;
    }
    uint64_t r = 0;
    if (!th_rand_bytes(&r, sizeof(r))) {
        r = (uint64_t)th_clock_mono_ms();
    }
    int64_t delay = (int64_t)(r % (uint64_t)(ceiling + 1));
    return delay < floor_ms ? floor_ms : delay;
}

enum th_err th_deliverer_new(const struct th_config *cfg, struct th_deliver_status *status,
                             struct th_deliverer **out, char *err, size_t errlen)
{
    struct th_deliverer *d = th_xcalloc(1, sizeof(*d));
    d->cfg = cfg;
    d->status = status;
    d->dests = th_xcalloc(cfg->ndestinations, sizeof(*d->dests));
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        const struct th_config_dest *c = &cfg->destinations[i];
        if (c->type != TH_DEST_CONSOLE) {
            snprintf(err, errlen, "destination '%s': type %s is not available in this build",
                     c->name, th_dest_type_name(c->type));
            th_deliverer_free(d);
            return TH_EUNSUPPORTED;
        }
        d->dests[i].cfg = c;
        d->dests[i].ops = &th_dest_console_ops;
        d->dests[i].out = stdout;
        d->ndests++;
    }
    *out = d;
    return TH_OK;
}

static json_t *load_doc(struct th_store *st, const struct th_outbox_row *row)
{
    json_t *doc = NULL;
    if (row->kind == TH_OUTBOX_RULE_ERROR) {
        th_store_rule_error_get(st, strtoll(row->ref, NULL, 10), &doc);
    } else {
        th_store_alert_get(st, row->ref, &doc);
    }
    return doc;
}

/* Records what a send gave; a store failure leaves the row pending (re-sent: at-least-once). */
static void settle(struct th_store *st, const struct th_dest *dest, const struct th_outbox_row *row,
                   const struct th_dest_result *res, int64_t now)
{
    const char *name = dest->cfg->name;
    if (res->outcome == TH_DEST_DELIVERED) {
        th_store_outbox_done(st, row->id, now);
        th_log(TH_LOG_INFO, "deliver", "%s: delivered %s", name, row->ref);
    } else if (res->outcome == TH_DEST_DEAD || now - row->created_ms > MAX_AGE_MS) {
        th_store_outbox_dead(st, row->id, res->detail, now);
        th_log(TH_LOG_ERROR, "deliver", "%s: %s parked as a dead letter: %s", name, row->ref,
               res->detail);
    } else {
        int64_t delay = th_deliver_backoff_ms(row->attempts + 1, BACKOFF_BASE_MS, BACKOFF_CAP_MS,
                                              res->retry_after_ms);
        th_store_outbox_retry(st, row->id, now + delay, res->detail, now);
        th_log(TH_LOG_WARN, "deliver", "%s: %s failed (%s), retry in %lld ms", name, row->ref,
               res->detail, (long long)delay);
    }
}

static void deliver_row(struct th_store *st, struct th_dest *dest, const struct th_outbox_row *row)
{
    struct th_dest_result res;
    json_t *doc = load_doc(st, row);
    int64_t now;

    memset(&res, 0, sizeof(res));
    if (doc == NULL) {
        res.outcome = TH_DEST_DEAD;
        snprintf(res.detail, sizeof(res.detail), "the %s it refers to is not in the store",
                 row->kind == TH_OUTBOX_RULE_ERROR ? "rule error" : "alert");
    } else {
        dest->ops->send(dest, row->kind, doc, &res);
    }
    json_decref(doc);
    now = th_clock_now_ms();
    settle(st, dest, row, &res, now);
}

static void drain(struct th_deliverer *d, struct th_store *st)
{
    struct th_outbox_row rows[BATCH];
    for (size_t i = 0; i < d->ndests; i++) {
        size_t n = 0;
        if (th_store_outbox_due(st, d->dests[i].cfg->name, th_clock_now_ms(), rows, BATCH, &n) !=
            TH_OK) {
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            deliver_row(st, &d->dests[i], &rows[k]);
        }
    }
}

static void housekeeping(struct th_deliverer *d, struct th_store *st)
{
    int64_t now = th_clock_now_ms();
    bool writable = th_store_check_writable(st) == TH_OK;
    if (writable != atomic_load(&d->status->store_writable)) {
        th_log(writable ? TH_LOG_INFO : TH_LOG_ERROR, "store", "the store is %s",
               writable ? "writable again" : "not writable");
    }
    atomic_store(&d->status->store_writable, writable);
    if (writable && now - d->last_prune_ms > PRUNE_EVERY_MS) {
        th_store_prune(st, now, d->cfg->seen_event_ttl_seconds * 1000);
        d->last_prune_ms = now;
    }
}

/* Sleeps until notified, the next row is due, housekeeping is due, or stop. */
static void wait_for_work(struct th_deliverer *d, struct th_store *st, int64_t until_ms)
{
    int64_t next = INT64_MAX;
    th_store_outbox_next_due(st, &next);
    int64_t now = th_clock_now_ms();
    int64_t wake = next < until_ms ? next : until_ms;
    if (wake <= now) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (wake - now);
    ts.tv_sec = deadline / 1000;
    ts.tv_nsec = (long)(deadline % 1000) * 1000000;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping && !d->notified) {
        if (pthread_cond_timedwait(&d->wake, &d->lock, &ts) != 0) {
            break;
        }
    }
    d->notified = false;
    pthread_mutex_unlock(&d->lock);
}

static bool stopping(struct th_deliverer *d)
{
    pthread_mutex_lock(&d->lock);
    bool s = d->stopping;
    pthread_mutex_unlock(&d->lock);
    return s;
}

static void *run(void *arg)
{
    struct th_deliverer *d = arg;
    struct th_store *st = NULL;
    char err[256] = "";
    int64_t next_housekeeping = 0;

    if (th_store_open(d->cfg->state_dir, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        th_log(TH_LOG_ERROR, "deliver", "cannot open the store: %s", err);
        return NULL;
    }
    while (!stopping(d)) {
        if (th_clock_now_ms() >= next_housekeeping) {
            housekeeping(d, st);
            next_housekeeping = th_clock_now_ms() + HOUSEKEEPING_MS;
        }
        drain(d, st);
        wait_for_work(d, st, next_housekeeping);
    }
    th_store_free(st);
    return NULL;
}

enum th_err th_deliverer_start(struct th_deliverer *d)
{
    if (pthread_create(&d->thread, NULL, run, d) != 0) {
        return TH_ENOMEM;
    }
    d->started = true;
    return TH_OK;
}

void th_deliverer_notify(struct th_deliverer *d)
{
    pthread_mutex_lock(&d->lock);
    d->notified = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

void th_deliverer_stop(struct th_deliverer *d, int64_t grace_ms)
{
    (void)grace_ms; /* console sends never block; network destinations bound their own time */
    if (d == NULL || !d->started) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    d->started = false;
}

void th_deliverer_free(struct th_deliverer *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->ndests; i++) {
        d->dests[i].ops->cleanup(&d->dests[i]);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d->dests);
    free(d);
}
