/* SPDX-License-Identifier: MIT */
/*
 * reload.c -- SIGHUP and POST /-/reload: read the configuration and rule specs again and put
 * them in effect between requests, or keep the running ones and say why.
 */
#include <stdlib.h>
#include <string.h>

#include "server_int.h"
#include "trailhook/auth.h"
#include "trailhook/clock.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

#define RELOAD_DELIVERY_GRACE_MS 5000

extern char **environ;

static void set_reload_gauges(struct th_server *srv, bool ok)
{
    th_gauge_set(th_metrics_gauge(srv->metrics, "trailhook_config_last_reload_successful",
                                  "1 when the last configuration load succeeded.", ""),
                 ok ? 1 : 0);
    if (ok) {
        th_gauge_set(th_metrics_gauge(srv->metrics,
                                      "trailhook_config_last_reload_success_timestamp_seconds",
                                      "When the configuration was last loaded successfully.", ""),
                     (double)th_clock_now_ms() / 1000.0);
    }
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Keeps a running value the new configuration wants to change, with a warning. */
static void keep_text(char **next, const char *running, const char *key)
{
    if (!same(*next, running)) {
        th_log(TH_LOG_WARN, "reload", "%s changes only after a restart; keeping the running value",
               key);
        free(*next);
        *next = th_xstrdup(running);
    }
}

static void keep_restart_only(struct th_config *next, const struct th_config *run)
{
    keep_text(&next->listen, run->listen, "listen");
    keep_text(&next->admin_listen, run->admin_listen, "admin_listen");
    keep_text(&next->state_dir, run->state_dir, "state_dir");
    keep_text(&next->state_backend, run->state_backend, "state.backend");
    keep_text(&next->tls_cert_file, run->tls_cert_file, "tls_cert_file");
    keep_text(&next->tls_key_file, run->tls_key_file, "tls_key_file");
    if (next->workers != run->workers || next->queue_capacity != run->queue_capacity) {
        th_log(TH_LOG_WARN, "reload",
               "workers and queue_capacity change only after a restart; keeping them");
        next->workers = run->workers;
        next->queue_capacity = run->queue_capacity;
    }
    if (next->max_header_bytes != run->max_header_bytes ||
        next->max_connections != run->max_connections ||
        next->connection_timeout_seconds != run->connection_timeout_seconds) {
        th_log(TH_LOG_WARN, "reload",
               "max_header_bytes, max_connections and connection_timeout_seconds change only "
               "after a restart; keeping them");
        next->max_header_bytes = run->max_header_bytes;
        next->max_connections = run->max_connections;
        next->connection_timeout_seconds = run->connection_timeout_seconds;
    }
}

/* Loads what a reload would put in effect; NULL (logged) on any error. */
static bool load(struct th_server *srv, struct th_config *cfg, struct th_spec_set *specs)
{
    const struct th_cmd_overrides *ov = srv->overrides;
    const char *path =
        ov != NULL && ov->config_path != NULL ? ov->config_path : getenv("TRAILHOOK_CONFIG");
    char err[512] = "";
    if (path != NULL && path[0] == '\0') {
        path = NULL;
    }
    if (th_config_load(path, environ, cfg, err, sizeof(err)) != TH_OK) {
        th_log(TH_LOG_ERROR, "reload", "configuration: %s; keeping the running one", err);
        return false;
    }
    /* The command line still wins over the file and the environment. */
    if (ov != NULL && ov->log_level != NULL) {
        th_log_parse_level(ov->log_level, &cfg->log_level);
    }
    if (ov != NULL && ov->listen != NULL) {
        free(cfg->listen);
        cfg->listen = th_xstrdup(ov->listen);
    }
    if (ov != NULL && ov->state_dir != NULL) {
        free(cfg->state_dir);
        cfg->state_dir = th_xstrdup(ov->state_dir);
    }
    if (th_spec_set_load(cfg->rules_dir, specs, err, sizeof(err)) != TH_OK) {
        th_log(TH_LOG_ERROR, "reload", "rule specs: %s; keeping the running ones", err);
        return false;
    }
    keep_restart_only(cfg, srv->cfg);
    if (!th_auth_configured(cfg) && !srv->insecure_no_auth && th_auth_configured(srv->cfg)) {
        th_log(TH_LOG_ERROR, "reload",
               "the new configuration has no credentials; keeping the running one");
        return false;
    }
    return true;
}

/* Swaps between requests (readers hold rt_lock); frees what the previous reload had loaded and
 * the stopped deliverer. */
static void swap(struct th_server *srv, struct th_config *cfg, struct th_spec_set *specs,
                 struct th_deliverer *deliverer)
{
    struct th_config *old_cfg = srv->owned_cfg;
    struct th_spec_set *old_specs = srv->owned_specs;
    struct th_deliverer *old_deliverer = srv->deliverer;
    pthread_rwlock_wrlock(&srv->rt_lock);
    srv->cfg = cfg;
    srv->specs = specs;
    srv->owned_cfg = cfg;
    srv->owned_specs = specs;
    srv->deliverer = deliverer;
    th_server_metrics_rules(srv);
    th_log_set_level(cfg->log_level);
    pthread_rwlock_unlock(&srv->rt_lock);
    th_deliverer_free(old_deliverer);
    if (old_cfg != NULL) {
        th_config_cleanup(old_cfg);
        free(old_cfg);
    }
    if (old_specs != NULL) {
        th_spec_set_cleanup(old_specs);
        free(old_specs);
    }
}

static void discard(struct th_config *cfg, struct th_spec_set *specs)
{
    th_config_cleanup(cfg);
    th_spec_set_cleanup(specs);
    free(cfg);
    free(specs);
}

bool th_server_reload(struct th_server *srv)
{
    struct th_config *cfg = th_xcalloc(1, sizeof(*cfg));
    struct th_spec_set *specs = th_xcalloc(1, sizeof(*specs));
    struct th_deliverer *next = NULL;
    char err[256] = "";

    if (!load(srv, cfg, specs) ||
        th_deliverer_new(cfg, &srv->status, srv->metrics, &next, err, sizeof(err)) != TH_OK) {
        discard(cfg, specs);
        set_reload_gauges(srv, false);
        return false;
    }
    /* Delivery lanes hold the old destinations: they stop (rows stay pending, none is lost) and
     * lanes on the new configuration take over. A notify meanwhile reaches the stopped one. */
    th_deliverer_stop(srv->deliverer, RELOAD_DELIVERY_GRACE_MS);
    swap(srv, cfg, specs, next);
    if (th_deliverer_start(srv->deliverer) != TH_OK) {
        th_log(TH_LOG_ERROR, "reload", "cannot restart deliveries");
        set_reload_gauges(srv, false);
        return false;
    }
    th_deliverer_notify(srv->deliverer);
    if (th_http_reload_tls(srv) != TH_OK) {
        set_reload_gauges(srv, false);
        return false;
    }
    set_reload_gauges(srv, true);
    th_log(TH_LOG_INFO, "reload", "configuration reloaded: %zu rules, %zu destinations",
           srv->specs->nspecs, srv->cfg->ndestinations);
    return true;
}
