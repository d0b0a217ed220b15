/* SPDX-License-Identifier: MIT */
/*
 * server_metrics.c -- the service's metric families and the series the request path updates.
 * Families are registered at start so a scrape shows every one from the first second; series
 * of the request path are created on first use and then only added to (atomics, no lock).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_int.h"
#include "trailhook/clock.h"
#include "trailhook/input.h"
#include "trailhook/mem.h"

static const char *const handler_names[TH_HANDLER_COUNT] = {"/events", "/healthz", "/readyz",
                                                            "/alerts", "/metrics", "other"};
static const unsigned codes[TH_HTTP_CODES - 1] = {200, 202, 400, 401, 404, 405,
                                                  413, 415, 429, 500, 503};

/* Why a request was refused, as the label trailhook_events_rejected_total{reason} shows it. */
static const char *const reject_reasons[] = {"malformed",   "unauthorized", "too_large",
                                             "unsupported", "saturated",    "store_unavailable",
                                             "not_found",   "other"};

static const double duration_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5};

#define REQUESTS_HELP "HTTP requests answered, by handler and status code."

static size_t code_index(unsigned status)
{
    for (size_t i = 0; i < TH_HTTP_CODES - 1; i++) {
        if (codes[i] == status) {
            return i;
        }
    }
    return TH_HTTP_CODES - 1;
}

static size_t reject_index(unsigned status)
{
    switch (status) {
    case 400:
        return 0;
    case 401:
        return 1;
    case 413:
        return 2;
    case 415:
    case 405:
        return 3;
    case 429:
        return 4;
    case 404:
        return 6;
    default:
        return 7;
    }
}

static struct th_counter *labeled_counter(struct th_metrics *m, const char *name, const char *help,
                                          const char *key, const char *value)
{
    char esc[256];
    char labels[320];
    snprintf(labels, sizeof(labels), "%s=\"%s\"", key, th_metrics_escape(value, esc, sizeof(esc)));
    return th_metrics_counter(m, name, help, labels);
}

static void init_ingest_series(struct th_server *srv)
{
    struct th_metrics *m = srv->metrics;
    static const char *const forms[] = {"empty",   "record", "envelope",
                                        "records", "array",  "ndjson"};
    for (size_t i = 0; i < 6; i++) {
        srv->sm.received[i] =
            labeled_counter(m, "trailhook_events_received_total",
                            "CloudTrail records received in accepted requests, by the body's form.",
                            "format", forms[i]);
    }
    for (size_t i = 0; i < 8; i++) {
        srv->sm.rejected[i] = labeled_counter(
            m, "trailhook_events_rejected_total",
            "Requests refused (nothing of them applied), by reason.", "reason", reject_reasons[i]);
    }
}

void th_server_metrics_rules(struct th_server *srv)
{
    free(srv->sm.evaluations);
    free(srv->sm.alerts);
    free(srv->sm.deduplicated);
    struct th_metrics *m = srv->metrics;
    static const char *const results[] = {"match", "nomatch", "error"};
    size_t n = srv->specs->nspecs;
    srv->sm.evaluations = th_xcalloc(n * 3 + 1, sizeof(*srv->sm.evaluations));
    srv->sm.alerts = th_xcalloc(n + 1, sizeof(*srv->sm.alerts));
    srv->sm.deduplicated = th_xcalloc(n + 1, sizeof(*srv->sm.deduplicated));
    for (size_t k = 0; k < n; k++) {
        const struct th_spec *spec = srv->specs->specs[k];
        char esc[256];
        char labels[512];
        th_metrics_escape(spec->rule_id, esc, sizeof(esc));
        for (size_t r = 0; r < 3; r++) {
            snprintf(labels, sizeof(labels), "rule=\"%s\",result=\"%s\"", esc, results[r]);
            srv->sm.evaluations[k * 3 + r] = th_metrics_counter(
                m, "trailhook_rule_evaluations_total",
                "Records evaluated by each rule, by result (match, nomatch, error).", labels);
        }
        snprintf(labels, sizeof(labels), "rule=\"%s\",severity=\"%s\"", esc,
                 th_severity_name(spec->severity));
        srv->sm.alerts[k] = th_metrics_counter(m, "trailhook_alerts_total",
                                               "Alerts opened, by rule and severity.", labels);
        snprintf(labels, sizeof(labels), "rule=\"%s\"", esc);
        srv->sm.deduplicated[k] = th_metrics_counter(
            m, "trailhook_alerts_deduplicated_total",
            "Matching events folded into an open alert (or repeated eventIDs): no new page.",
            labels);
    }
}

/* Gauges read at scrape time rather than counted. */
static void collect(void *ctx, struct th_metrics *m)
{
    struct th_server *srv = ctx;
    th_gauge_set(th_metrics_gauge(m, "trailhook_queue_depth",
                                  "Requests waiting for an evaluation worker.", ""),
                 (double)th_queue_depth(srv->queue));
    th_gauge_set(th_metrics_gauge(m, "trailhook_queue_capacity",
                                  "Requests the evaluation queue holds before answering 503.", ""),
                 (double)th_queue_capacity(srv->queue));
    for (size_t i = 0; i < srv->cfg->ndestinations; i++) {
        size_t pending = 0;
        size_t dead = 0;
        char esc[160];
        char labels[200];
        pthread_mutex_lock(&srv->read_lock);
        enum th_err rc = th_store_outbox_counts(srv->read_store, srv->cfg->destinations[i].name,
                                                &pending, &dead);
        pthread_mutex_unlock(&srv->read_lock);
        if (rc != TH_OK) {
            continue; /* a scrape during a store outage shows the last values */
        }
        snprintf(labels, sizeof(labels), "destination=\"%s\"",
                 th_metrics_escape(srv->cfg->destinations[i].name, esc, sizeof(esc)));
        th_gauge_set(th_metrics_gauge(m, "trailhook_outbox_pending",
                                      "Deliveries waiting in the outbox, by destination.", labels),
                     (double)pending);
        th_gauge_set(th_metrics_gauge(m, "trailhook_outbox_dead_letters",
                                      "Deliveries parked as dead letters, by destination.", labels),
                     (double)dead);
    }
}

static void init_static(struct th_server *srv)
{
    struct th_metrics *m = srv->metrics;
    th_gauge_set(th_metrics_gauge(m, "trailhook_build_info",
                                  "Always 1; the version of the running binary as a label.",
                                  "version=\"" TH_VERSION "\""),
                 1);
    th_gauge_set(th_metrics_gauge(m, "trailhook_config_last_reload_successful",
                                  "1 when the last configuration load succeeded.", ""),
                 1);
    th_gauge_set(th_metrics_gauge(m, "trailhook_config_last_reload_success_timestamp_seconds",
                                  "When the configuration was last loaded successfully.", ""),
                 (double)th_clock_now_ms() / 1000.0);
}

void th_server_metrics_init(struct th_server *srv)
{
    struct th_metrics *m = srv->metrics;
    init_static(srv);
    /* The family shows from the start with its most telling series (at 0), not empty. */
    atomic_store(&srv->sm.requests[TH_HANDLER_EVENTS][code_index(202)],
                 th_metrics_counter(m, "trailhook_http_requests_total", REQUESTS_HELP,
                                    "handler=\"/events\",code=\"202\""));
    for (size_t h = 0; h < TH_HANDLER_COUNT; h++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "handler=\"%s\"", handler_names[h]);
        srv->sm.duration[h] = th_metrics_histogram(
            m, "trailhook_http_request_duration_seconds",
            "Time from a request's headers to its answer, by handler.", labels, duration_buckets,
            sizeof(duration_buckets) / sizeof(duration_buckets[0]));
    }
    init_ingest_series(srv);
    th_server_metrics_rules(srv);
    th_metrics_on_collect(m, collect, srv);
}

void th_server_metrics_cleanup(struct th_server *srv)
{
    free(srv->sm.evaluations);
    free(srv->sm.alerts);
    free(srv->sm.deduplicated);
}

void th_server_metrics_request(struct th_server *srv, enum th_handler handler, unsigned status,
                               double seconds)
{
    size_t c = code_index(status);
    struct th_counter *counter = atomic_load(&srv->sm.requests[handler][c]);
    if (counter == NULL) {
        /* First request of this kind: create the series (locked, idempotent), then publish it. */
        char labels[96];
        char code[16];
        snprintf(code, sizeof(code), "%u", status);
        snprintf(labels, sizeof(labels), "handler=\"%s\",code=\"%s\"", handler_names[handler],
                 c == TH_HTTP_CODES - 1 ? "other" : code);
        counter = th_metrics_counter(srv->metrics, "trailhook_http_requests_total", REQUESTS_HELP,
                                     labels);
        atomic_store(&srv->sm.requests[handler][c], counter);
    }
    th_counter_add(counter, 1);
    th_histogram_observe(srv->sm.duration[handler], seconds);
}

void th_server_metrics_rejected(struct th_server *srv, unsigned status, bool evaluated)
{
    /* A 503 after evaluation means the store refused the commit; before, a full queue or a
     * drain. */
    size_t i = status == 503 ? (evaluated ? 5 : 4) : reject_index(status);
    th_counter_add(srv->sm.rejected[i], 1);
}

void th_server_metrics_ingest(struct th_server *srv, const struct th_ingest_result *r)
{
    if (r->status == 202) {
        th_counter_add(srv->sm.received[r->form], r->accepted);
    }
    for (size_t k = 0; r->rules != NULL && k < srv->specs->nspecs; k++) {
        th_counter_add(srv->sm.evaluations[k * 3], r->rules[k].match);
        th_counter_add(srv->sm.evaluations[k * 3 + 1], r->rules[k].nomatch);
        th_counter_add(srv->sm.evaluations[k * 3 + 2], r->rules[k].error);
        th_counter_add(srv->sm.alerts[k], r->rules[k].new_alerts);
        th_counter_add(srv->sm.deduplicated[k], r->rules[k].deduplicated);
    }
}
